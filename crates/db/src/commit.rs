//! Group commit: write batches that wait at the same time share one transaction, and so
//! one fsync.
//!
//! redb runs one write transaction at a time and makes each durable with its own fsync,
//! so sixteen concurrent writers (sixteen clients' PUTs reaching a replica) used to queue
//! sixteen commits. Here the first writer to find no commit running becomes the *leader*:
//! it takes every batch waiting at that moment (its own first), applies them in order in
//! one transaction and commits it; the writers that arrived meanwhile wait, and the oldest
//! of them leads the next commit. Every writer returns only after the commit that holds
//! its batch, so [`crate::Db::write`] keeps its promise (atomic, durable on return). If the
//! shared transaction fails, each batch is retried alone, so one writer's bad batch never
//! fails another's.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::{DbError, WriteOp};

/// One writer's batch and what became of it.
#[derive(Debug, Default)]
struct Slot {
    ops: Vec<WriteOp>,
    outcome: Option<Result<(), DbError>>,
    /// Handed the lead by the previous leader: commit the batches waiting now.
    lead: bool,
}

#[derive(Debug, Default)]
struct Waiter {
    slot: Mutex<Slot>,
    ready: Condvar,
}

impl Waiter {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A writer never panics while it holds the lock (no code in the lock can), so a
        // poisoned one still holds consistent data.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, outcome: Result<(), DbError>) {
        self.slot().outcome = Some(outcome);
        self.ready.notify_one();
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Writers not yet taken into a commit, oldest first.
    waiting: Vec<Arc<Waiter>>,
    /// A leader is committing (or has been handed the lead and is about to).
    leading: bool,
}

/// The writers of one database, queued for group commits.
#[derive(Debug, Default)]
pub(crate) struct CommitQueue {
    queue: Mutex<Queue>,
}

impl CommitQueue {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `ops` with whatever other batches wait at the same time; `commit` applies
    /// the batches it is given, in order, and returns one outcome per batch.
    pub(crate) fn write(
        &self,
        ops: Vec<WriteOp>,
        commit: impl Fn(&[&[WriteOp]]) -> Vec<Result<(), DbError>>,
    ) -> Result<(), DbError> {
        let me = Arc::new(Waiter {
            slot: Mutex::new(Slot {
                ops,
                ..Slot::default()
            }),
            ready: Condvar::new(),
        });
        let leads_now = {
            let mut queue = self.queue();
            queue.waiting.push(Arc::clone(&me));
            !std::mem::replace(&mut queue.leading, true)
        };
        if !leads_now {
            let mut slot = me.slot();
            loop {
                if let Some(outcome) = slot.outcome.take() {
                    return outcome;
                }
                if std::mem::take(&mut slot.lead) {
                    break;
                }
                slot = me.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
            }
        }
        self.lead(&me, commit)
    }

    /// Commits every batch waiting now (`me`'s among them), hands the lead to the oldest
    /// writer that arrived since, and answers the others.
    fn lead(
        &self,
        me: &Arc<Waiter>,
        commit: impl Fn(&[&[WriteOp]]) -> Vec<Result<(), DbError>>,
    ) -> Result<(), DbError> {
        let batch = std::mem::take(&mut self.queue().waiting);
        // If `commit` panics, the guard still answers every writer of the batch and
        // passes the lead on, so no writer waits forever.
        let mut guard = Handoff {
            queue: self,
            batch: &batch,
            outcomes: None,
        };
        let ops: Vec<Vec<WriteOp>> = batch
            .iter()
            .map(|w| std::mem::take(&mut w.slot().ops))
            .collect();
        let views: Vec<&[WriteOp]> = ops.iter().map(Vec::as_slice).collect();
        guard.outcomes = Some(commit(&views));
        drop(guard);
        me.slot().outcome.take().unwrap_or_else(|| {
            Err(DbError::Engine(
                "the group commit returned no outcome for a batch".into(),
            ))
        })
    }
}

/// Answers a commit's writers and passes the lead on when dropped, whether the commit
/// returned or panicked.
struct Handoff<'a> {
    queue: &'a CommitQueue,
    batch: &'a [Arc<Waiter>],
    outcomes: Option<Vec<Result<(), DbError>>>,
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        {
            let mut queue = self.queue.queue();
            match queue.waiting.first() {
                Some(next) => {
                    next.slot().lead = true;
                    next.ready.notify_one();
                }
                None => queue.leading = false,
            }
        }
        let mut outcomes = self.outcomes.take().unwrap_or_default().into_iter();
        for waiter in self.batch {
            let outcome = outcomes.next().unwrap_or_else(|| {
                Err(DbError::Engine(
                    "the group commit ended before this batch was committed".into(),
                ))
            });
            waiter.finish(outcome);
        }
    }
}
