//! Helpers for black-box tests: start the real `xnode` binary as processes and query them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub fn xnode() -> &'static str {
    env!("CARGO_BIN_EXE_xnode")
}

/// A port that is free now, picked at random below Linux's ephemeral range (32768+), so
/// that ports other tests get from `bind(0)` never collide with ports we reuse on restart.
pub fn free_port(udp_too: bool) -> u16 {
    loop {
        let port = 20_000 + (rand_u32() % 12_000) as u16;
        let tcp_ok = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp_ok && (!udp_too || std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()) {
            return port;
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

/// A node process. Killed when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub api_url: String,
    pub p2p_port: u16,
    pub api_port: u16,
    pub data_dir: PathBuf,
    pub bootstrap: Vec<String>,
    /// Extra arguments for `xnode start` (a zone, say).
    pub extra_args: Vec<String>,
}

impl Proc {
    pub fn p2p_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    pub fn new(root: &Path, name: &str, bootstrap: Vec<String>) -> Proc {
        let p2p_port = free_port(true);
        let api_port = free_port(false);
        Proc {
            child: None,
            api_url: format!("http://127.0.0.1:{api_port}"),
            p2p_port,
            api_port,
            data_dir: root.join(name),
            bootstrap,
            extra_args: Vec::new(),
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root_log(&self.data_dir))
            .unwrap();
        let mut cmd = Command::new(xnode());
        cmd.arg("start")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)])
            .args([
                "--listen",
                &format!("/ip4/127.0.0.1/udp/{}/quic-v1", self.p2p_port),
            ])
            .args(["--api", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--no-mdns", "--network", "blackbox", "--exit-with-parent"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for b in &self.bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.args(&self.extra_args);
        self.child = Some(cmd.spawn().expect("spawn xnode"));
    }

    pub fn signal(&mut self, signal: Signal) {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        }
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop_with(&mut self, signal: Signal) -> std::process::ExitStatus {
        self.signal(signal);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process did not exit after {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(root_log(&self.data_dir)).unwrap_or_default()
    }
}

fn root_log(data_dir: &Path) -> PathBuf {
    let mut p = data_dir.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

pub fn get(api: &str, path: &str) -> Option<Value> {
    http().get(format!("{api}{path}")).send().ok()?.json().ok()
}

/// `observer`'s view: node id -> state.
pub fn states(api: &str) -> Option<Vec<(String, String)>> {
    let list = get(api, "/v1/nodes")?;
    Some(
        list.as_array()?
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or("").to_string(),
                    n["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

pub fn state_of(api: &str, id: &str) -> Option<String> {
    states(api)?
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, s)| s)
}

pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `n` nodes that bootstrap from each other; returns them once every API answers.
pub fn start_cluster(root: &Path, n: usize) -> Vec<Proc> {
    let mut procs: Vec<Proc> = (0..n)
        .map(|i| Proc::new(root, &format!("n{i}"), Vec::new()))
        .collect();
    let addrs: Vec<String> = procs.iter().map(|p| p.p2p_addr()).collect();
    for (i, p) in procs.iter_mut().enumerate() {
        p.bootstrap = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        p.start();
    }
    procs
}

pub fn node_id(api: &str) -> String {
    answering_id(api).unwrap_or_else(|| panic!("timed out waiting for {api} to answer"))
}

/// Waits for a started node's API, as [`node_id`] does; on a timeout the end of the
/// node's log says why it did not answer.
pub fn wait_api(p: &Proc) -> String {
    answering_id(&p.api_url).unwrap_or_else(|| {
        eprintln!("--- the end of {}'s log:\n{}", p.api_url, log_tail(p, 40));
        panic!("timed out waiting for {} to answer", p.api_url)
    })
}

/// The node's id once its API answers, or `None` after a minute. Generous, for tests that
/// do not time the start: a debug build starting beside other tests' clusters on a loaded
/// two-core machine can take tens of seconds.
fn answering_id(api: &str) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(id) = get(api, "/v1/node").and_then(|v| v["id"].as_str().map(String::from)) {
            return Some(id);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn log_tail(p: &Proc, lines: usize) -> String {
    let log = std::fs::read_to_string(root_log(&p.data_dir)).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until every running node answers and sees `expected` alive members, for tests
/// that need a converged network but do not time it. On a timeout it prints what each
/// node sees and the end of its log, so a failure on a loaded machine can be read.
pub fn wait_converged(procs: &[Proc], expected: usize) {
    for p in procs.iter().filter(|p| p.child.is_some()) {
        wait_api(p);
    }
    let timeout = Duration::from_secs(30);
    let start = Instant::now();
    while !all_alive(procs, expected) {
        if start.elapsed() > timeout {
            for p in procs.iter().filter(|p| p.child.is_some()) {
                eprintln!(
                    "--- {} sees {:?}; the end of its log:\n{}",
                    p.api_url,
                    states(&p.api_url),
                    log_tail(p, 40)
                );
            }
            panic!("timed out after {timeout:?} waiting for {expected} nodes to converge");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn all_alive(procs: &[Proc], expected: usize) -> bool {
    procs.iter().filter(|p| p.child.is_some()).all(|p| {
        states(&p.api_url)
            .is_some_and(|s| s.len() == expected && s.iter().all(|(_, st)| st == "alive"))
    })
}
