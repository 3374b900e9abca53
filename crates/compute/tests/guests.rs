//! Runs the example and hostile guests from `guests/dist` under the engine's limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use xnode_compute::{
    CommandSpec, ComputeError, Engine, EngineConfig, ExitReason, FnRequest, HttpInvocation, Limits,
    Mount, NoStorage, OutputCapture,
};

fn guest(name: &str) -> Bytes {
    let path = format!(
        "{}/../../guests/dist/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_instances: 16,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn invocation(limits: Limits) -> HttpInvocation {
    HttpInvocation {
        limits,
        env: vec![],
        allowed_hosts: vec![],
        outbound: Arc::new(NoStorage),
    }
}

fn get(path: &str) -> FnRequest {
    FnRequest {
        method: http::Method::GET,
        path_and_query: path.into(),
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_answers_and_usage_is_measured() {
    let engine = engine();
    let module = engine.http_module(guest("hello")).await.unwrap();
    let out = engine
        .invoke_http(&module, &invocation(Limits::default()), get("/fn/hello/x"))
        .await;
    let response = out.result.unwrap();
    assert_eq!(response.status, 200);
    assert!(String::from_utf8_lossy(&response.body).contains("hello from xnode"));
    assert!(out.usage.fuel > 0);
    assert!(out.usage.peak_memory_bytes > 0);
    assert_eq!(out.usage.bytes_out, response.body.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_json_sees_the_body() {
    let engine = engine();
    let module = engine.http_module(guest("echo-json")).await.unwrap();
    let mut request = get("/fn/echo-json/a?b=c");
    request.method = http::Method::POST;
    request.body = Bytes::from_static(br#"{"x":1}"#);
    let out = engine
        .invoke_http(&module, &invocation(Limits::default()), request)
        .await;
    let response = out.result.unwrap();
    assert_eq!(response.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(v["body"]["x"], 1);
    assert_eq!(v["method"], "POST");
}

/// Long-running functions take turns on the CPU lanes: with one lane, three spinning
/// guests never hold more than one at once, short calls need none and go on answering
/// meanwhile, and every spinner still ends with its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_functions_take_turns_on_the_cpu_lanes() {
    let engine = Engine::new(EngineConfig {
        max_instances: 16,
        cpu_lanes: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let spin = engine.http_module(guest("spin")).await.unwrap();
    let hello = engine.http_module(guest("hello")).await.unwrap();
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout: Some(Duration::from_millis(3000)),
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
    };
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let engine = engine.clone();
            let spin = spin.clone();
            tokio::spawn(async move {
                engine
                    .invoke_http(&spin, &invocation(limits), get("/"))
                    .await
            })
        })
        .collect();
    // Short calls go on while the spinners run (each for its 3 s timeout, one lane at a
    // time): counted until the last spinner ends, not in a fixed window, so a loaded
    // machine that runs every call slowly still shows them answered in between.
    let mut most_busy = 0;
    let mut hellos = 0;
    let give_up = Instant::now() + Duration::from_secs(60);
    while !spinners.iter().all(|s| s.is_finished()) && Instant::now() < give_up {
        most_busy = most_busy.max(engine.cpu_lanes_busy());
        let out = engine
            .invoke_http(&hello, &invocation(Limits::default()), get("/"))
            .await;
        assert_eq!(out.result.unwrap().status, 200);
        hellos += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most_busy, 1, "the spinners used the one lane");
    assert!(
        hellos >= 5,
        "short calls answered while spinners ran: {hellos}"
    );
    for spinner in spinners {
        let out = spinner.await.unwrap();
        assert!(
            matches!(out.result, Err(ComputeError::Timeout(3000))),
            "{:?}",
            out.result
        );
    }
    assert_eq!(engine.cpu_lanes_busy(), 0, "lanes are given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_stopped_with_a_reason() {
    let engine = engine();
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout: Some(Duration::from_millis(500)),
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
    };
    let spin = engine.http_module(guest("spin")).await.unwrap();
    // Timed from the call, not from compiling the module (which takes seconds in a debug
    // build on a busy machine): a guest that spins is cut at its deadline, not let run.
    let started = Instant::now();
    let out = engine
        .invoke_http(&spin, &invocation(limits), get("/"))
        .await;
    assert!(
        matches!(out.result, Err(ComputeError::Timeout(500))),
        "{:?}",
        out.result
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let fuel_limited = Limits {
        fuel: 10_000_000,
        ..limits
    };
    let out = engine
        .invoke_http(&spin, &invocation(fuel_limited), get("/"))
        .await;
    assert!(
        matches!(out.result, Err(ComputeError::OutOfFuel(_))),
        "{:?}",
        out.result
    );

    let bomb = engine.http_module(guest("membomb")).await.unwrap();
    let out = engine
        .invoke_http(&bomb, &invocation(limits), get("/"))
        .await;
    assert!(
        matches!(out.result, Err(ComputeError::OutOfMemory(32))),
        "{:?}",
        out.result
    );

    let recurse = engine.http_module(guest("recurse")).await.unwrap();
    let out = engine
        .invoke_http(&recurse, &invocation(limits), get("/"))
        .await;
    assert!(
        matches!(out.result, Err(ComputeError::StackOverflow)),
        "{:?}",
        out.result
    );

    let bigout = engine.http_module(guest("bigout")).await.unwrap();
    let out = engine
        .invoke_http(&bigout, &invocation(limits), get("/"))
        .await;
    assert!(
        matches!(out.result, Err(ComputeError::OutputTooLarge(_))),
        "{:?}",
        out.result
    );

    let fetch = engine.http_module(guest("forbidden-fetch")).await.unwrap();
    let out = engine
        .invoke_http(&fetch, &invocation(limits), get("/"))
        .await;
    let response = out.result.unwrap();
    assert_eq!(response.status, 502);
    assert!(
        String::from_utf8_lossy(&response.body).contains("HttpRequestDenied"),
        "{:?}",
        response.body
    );

    // The engine still serves ordinary functions afterwards.
    let hello = engine.http_module(guest("hello")).await.unwrap();
    let out = engine
        .invoke_http(&hello, &invocation(limits), get("/"))
        .await;
    assert_eq!(out.result.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_transforms_its_input_into_output_files() {
    let engine = engine();
    let module = engine.command_module(guest("transform")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(input.join("input"), "hello\nworld\n").unwrap();
    let stdout = OutputCapture::new(1 << 20, 1 << 20);
    let spec = CommandSpec {
        args: vec!["transform".into()],
        env: vec![],
        stdin: Bytes::new(),
        mounts: vec![
            Mount {
                host_path: input,
                guest_path: "/in".into(),
                writable: false,
            },
            Mount {
                host_path: output.clone(),
                guest_path: "/out".into(),
                writable: true,
            },
        ],
        limits: Limits::default(),
        stdout: stdout.clone(),
        stderr: OutputCapture::new(1 << 20, 1 << 20),
        fuel_gauge: None,
    };
    let outcome = engine
        .run_command(&module, spec, CancellationToken::new())
        .await;
    assert!(
        matches!(outcome.exit, ExitReason::Exited(0)),
        "{:?}",
        outcome.exit
    );
    assert_eq!(
        std::fs::read_to_string(output.join("output.txt")).unwrap(),
        "HELLO\nWORLD\n"
    );
    assert!(!stdout.contents().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuel_gauge_follows_a_run_and_survives_its_cancellation() {
    let engine = engine();
    let module = engine.command_module(guest("heartbeat")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = |env: Vec<(String, String)>, gauge: Arc<AtomicU64>| CommandSpec {
        args: vec!["heartbeat".into()],
        env,
        stdin: Bytes::new(),
        mounts: vec![Mount {
            host_path: dir.path().to_owned(),
            guest_path: "/out".into(),
            writable: true,
        }],
        limits: Limits::default(),
        stdout: OutputCapture::new(1 << 20, 1 << 20),
        stderr: OutputCapture::new(1 << 20, 1 << 20),
        fuel_gauge: Some(gauge),
    };
    // A run that ends: the gauge holds its final fuel.
    let gauge = Arc::new(AtomicU64::new(0));
    let env = vec![
        ("INTERVAL_SECS".to_owned(), "0.05".to_owned()),
        ("EXIT_AFTER".to_owned(), "3".to_owned()),
    ];
    let outcome = engine
        .run_command(&module, spec(env, gauge.clone()), CancellationToken::new())
        .await;
    assert!(
        matches!(outcome.exit, ExitReason::Exited(0)),
        "{:?}",
        outcome.exit
    );
    assert!(outcome.usage.fuel > 0);
    assert_eq!(gauge.load(Ordering::Relaxed), outcome.usage.fuel);

    // A run cancelled mid-way: its usage cannot say what it burnt, the gauge does.
    let gauge = Arc::new(AtomicU64::new(0));
    let env = vec![("INTERVAL_SECS".to_owned(), "0.05".to_owned())];
    let cancel = CancellationToken::new();
    let run = engine.run_command(&module, spec(env, gauge.clone()), cancel.clone());
    let stop = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(run, stop);
    assert!(
        matches!(outcome.exit, ExitReason::Cancelled),
        "{:?}",
        outcome.exit
    );
    assert!(
        gauge.load(Ordering::Relaxed) > 0,
        "the gauge of a cancelled run stayed at zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jobs_fail_with_a_reason() {
    let engine = engine();
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout: Some(Duration::from_millis(500)),
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
    };
    let spec = |limits: Limits| CommandSpec {
        args: vec!["job".into()],
        env: vec![],
        stdin: Bytes::new(),
        mounts: vec![],
        limits,
        stdout: OutputCapture::new(limits.max_output_bytes, 64 << 10),
        stderr: OutputCapture::new(limits.max_output_bytes, 64 << 10),
        fuel_gauge: None,
    };
    let spin = engine.command_module(guest("job-spin")).await.unwrap();
    let outcome = engine
        .run_command(&spin, spec(limits), CancellationToken::new())
        .await;
    assert!(
        matches!(outcome.exit, ExitReason::Failed(ComputeError::Timeout(500))),
        "{:?}",
        outcome.exit
    );

    let big = engine.command_module(guest("job-bigout")).await.unwrap();
    let outcome = engine
        .run_command(&big, spec(limits), CancellationToken::new())
        .await;
    assert!(
        matches!(
            outcome.exit,
            ExitReason::Failed(ComputeError::OutputTooLarge(_))
                | ExitReason::Failed(ComputeError::Timeout(_))
        ),
        "{:?}",
        outcome.exit
    );

    let cancel = CancellationToken::new();
    let no_timeout = Limits {
        timeout: None,
        ..limits
    };
    let run = engine.run_command(&spin, spec(no_timeout), cancel.clone());
    let (outcome, ()) = tokio::join!(run, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    assert!(
        matches!(outcome.exit, ExitReason::Cancelled),
        "{:?}",
        outcome.exit
    );
}
