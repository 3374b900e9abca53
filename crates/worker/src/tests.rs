//! Tests of the background worker runner.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

struct Countdown {
    left: u64,
    fail_at: Option<u64>,
    rx: tokio::sync::mpsc::Receiver<u64>,
    done: u64,
}

#[async_trait::async_trait]
impl Worker for Countdown {
    fn name(&self) -> String {
        "countdown".into()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.done,
            queued: Some(self.left),
            detail: None,
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        if self.fail_at == Some(self.left) {
            self.fail_at = None;
            return Err(WorkerError::new("disk on fire"));
        }
        if self.left == 0 {
            return Ok(Step::Idle);
        }
        self.left -= 1;
        self.done += 1;
        Ok(if self.left == 0 {
            Step::Idle
        } else {
            Step::Busy
        })
    }

    async fn wait_for_work(&mut self) -> Step {
        match self.rx.recv().await {
            Some(n) => {
                self.left += n;
                Step::Busy
            }
            None => Step::Done,
        }
    }
}

async fn wait_for(runner: &Runner, check: impl Fn(&WorkerInfo) -> bool) -> WorkerInfo {
    for _ in 0..2000 {
        if let Some(info) = runner.list().into_iter().find(|i| check(i)) {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition never held: {:?}", runner.list());
}

#[tokio::test]
async fn a_worker_reports_its_steps_its_progress_and_its_end() {
    let runner = Runner::new(CancellationToken::new());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    runner.spawn(Countdown {
        left: 0,
        fail_at: None,
        rx,
        done: 0,
    });
    tx.send(3).await.unwrap();
    let info = wait_for(&runner, |i| i.progress.items_done == 3).await;
    assert_eq!(info.name, "countdown");
    assert_eq!(info.errors, 0);
    assert!(info.last_run_ms.is_some());
    wait_for(&runner, |i| i.state == WorkerState::Idle).await;
    drop(tx);
    wait_for(&runner, |i| i.state == WorkerState::Done).await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_is_recorded_and_the_worker_carries_on() {
    let runner = Runner::new(CancellationToken::new());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    runner.spawn(Countdown {
        left: 0,
        fail_at: Some(2),
        rx,
        done: 0,
    });
    tx.send(4).await.unwrap();
    let info = wait_for(&runner, |i| i.errors == 1).await;
    assert_eq!(info.last_error.as_deref(), Some("disk on fire"));
    // The worker waits for its next occasion after an error: more input.
    tx.send(0).await.unwrap();
    let info = wait_for(&runner, |i| i.progress.items_done == 4).await;
    assert_eq!(info.consecutive_errors, 0);
    runner.stop(Duration::from_secs(1)).await;
    assert!(runner.list().iter().all(|i| i.state == WorkerState::Done));
}

#[tokio::test(start_paused = true)]
async fn a_periodic_worker_runs_on_its_interval_and_stops_on_shutdown() {
    let token = CancellationToken::new();
    let runner = Runner::new(token.clone());
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    runner.spawn(periodic(
        "tick",
        Interval::AfterFirstPeriod(Duration::from_secs(10)),
        move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(2)
            }
        },
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "waits one period first");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let info = wait_for(&runner, |i| i.name == "tick").await;
    assert_eq!(info.progress.items_done, 6);
    assert_eq!(info.steps, 3);
    runner.stop(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "no run after shutdown");
}

#[tokio::test]
async fn two_workers_with_one_name_both_show() {
    let runner = Runner::new(CancellationToken::new());
    for _ in 0..2 {
        runner.spawn(periodic(
            "same",
            Interval::AfterFirstPeriod(Duration::from_secs(3600)),
            || async { Ok(0) },
        ));
    }
    let names: Vec<_> = runner.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["same", "same#2"]);
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(2), Duration::from_secs(2));
    assert_eq!(backoff(4), Duration::from_secs(8));
    assert_eq!(backoff(u64::MAX), Duration::from_secs(30));
}
