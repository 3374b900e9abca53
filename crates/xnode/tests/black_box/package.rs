//! The Debian package, installed for real (issue 17): `scripts/build-deb.sh` packages this
//! build's binary; the test installs it with dpkg, checks the unit with `systemd-analyze
//! verify`, starts the node through systemd (the machine's where it is PID 1, otherwise one
//! booted as PID 1 of its own namespaces by `scripts/systemd-sandbox.sh`; only where neither
//! works, the unit's `ExecStart` as the unit's user with a notification socket standing in
//! for systemd's), checks `/healthz`, readiness, the journal, that the node can measure its
//! machine under the unit's sandboxing and that its identity survives a restart, and purges
//! the package, leaving nothing behind. It needs root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const UNIT: &str = "/lib/systemd/system/xnode.service";

/// Purges the package when dropped, so a failing test leaves the machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "xnode"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A systemd booted as PID 1 of its own PID and mount namespaces by
/// `scripts/systemd-sandbox.sh`, for machines where systemd is not PID 1 (these CI machines):
/// it shares the host's files and network, so the installed package runs under it as it
/// would on a server. Powered off when dropped.
struct SystemdSandbox {
    script: PathBuf,
    state_dir: tempfile::TempDir,
}

impl SystemdSandbox {
    /// Boots one, or says why not and returns `None`.
    fn boot(repo: &Path) -> Option<Self> {
        let script = repo.join("scripts/systemd-sandbox.sh");
        if !Path::new("/lib/systemd/systemd").exists() {
            eprintln!("no /lib/systemd/systemd to boot in a sandbox");
            return None;
        }
        let state_dir = tempfile::Builder::new()
            .prefix("xnode-package-test-systemd")
            .tempdir_in("/run")
            .ok()?;
        let sandbox = Self { script, state_dir };
        let booted = sandbox.script_command().arg("start").output().ok()?;
        if !booted.status.success() {
            eprintln!(
                "systemd could not be booted in a sandbox: {}",
                String::from_utf8_lossy(&booted.stderr)
            );
            return None;
        }
        Some(sandbox)
    }

    fn script_command(&self) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.env("XNODE_SYSTEMD_SANDBOX_DIR", self.state_dir.path());
        cmd
    }

    /// `program` run inside the sandbox (its systemd, its journal).
    fn command(&self, program: &str) -> Command {
        let mut cmd = self.script_command();
        cmd.args(["run", program]);
        cmd
    }
}

impl Drop for SystemdSandbox {
    fn drop(&mut self) {
        let _ = self.script_command().arg("stop").status();
    }
}

/// A user id, as `id ARGS` prints it.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// `Key=value` settings of the unit's `[Service]` section.
fn unit_setting(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .trim()
        .to_string()
}

/// Starts the unit's command as its user, with its environment file and working directory,
/// telling readiness through `notify` as systemd's `NOTIFY_SOCKET` would.
fn start_as_unit(unit: &str, notify: &Path) -> Child {
    let exec: Vec<String> = unit_setting(unit, "ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let user = unit_setting(unit, "User");
    let group = unit_setting(unit, "Group");
    let env_file = unit_setting(unit, "EnvironmentFile");
    let env_file = env_file.trim_start_matches('-');
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", &user, "--regid", &group, "--init-groups", "--"])
        .args(&exec)
        .current_dir(unit_setting(unit, "WorkingDirectory"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null());
    for line in std::fs::read_to_string(env_file)
        .unwrap_or_default()
        .lines()
    {
        if let Some((name, value)) = line.split_once('=')
            && !name.trim_start().starts_with('#')
        {
            cmd.env(name.trim(), value.trim());
        }
    }
    cmd.spawn().unwrap()
}

/// Waits for a notification containing `state` from the node.
fn wait_for_state(socket: &UnixDatagram, state: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 512];
    loop {
        assert!(Instant::now() < deadline, "the node never notified {state}");
        match socket.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == state) =>
            {
                return;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Nothing queued: a node that has exited will never send it.
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the node exited with {status} before notifying {state}");
                }
            }
            Err(e) => panic!("notification socket: {e}"),
        }
    }
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_debian_package_installs_runs_as_its_unit_and_purges_cleanly() {
    if id(&["-u"]) != 0 {
        eprintln!("SKIPPED: installing a Debian package needs root (CI runs as root)");
        return;
    }
    for tool in ["dpkg", "dpkg-deb", "setpriv", "systemd-analyze"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("SKIPPED: {tool} is not installed (a Debian or Ubuntu machine has it)");
            return;
        }
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().unwrap();
    let built = Command::new(repo.join("scripts/build-deb.sh"))
        .args(["--binary", xnode(), "--out"])
        .arg(work.path())
        .env("DEB_COMPRESSION", "none")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(built.status.success(), "build-deb.sh failed");
    let out = String::from_utf8_lossy(&built.stdout);
    let deb = out.lines().last().unwrap_or_default().trim().to_string();
    assert!(deb.ends_with(".deb"), "build-deb.sh printed {out}");

    // A leftover of an interrupted run would make this a reinstall, not an install.
    drop(Installed);
    let _installed = Installed;
    run(Command::new("dpkg").args(["-i", &deb]));
    let unit = std::fs::read_to_string(UNIT).unwrap();
    // The template (several nodes on one host) is checked through an instance of it.
    let verify = run(Command::new("systemd-analyze").args([
        "verify",
        UNIT,
        "/lib/systemd/system/xnode@.service",
    ]));
    assert!(
        !verify.contains("Unknown") && !verify.contains("rror"),
        "systemd-analyze verify complained: {verify}"
    );
    assert_eq!(unit_setting(&unit, "Type"), "notify");
    assert_eq!(unit_setting(&unit, "ProtectSystem"), "strict");
    assert_eq!(unit_setting(&unit, "NoNewPrivileges"), "yes");
    // The package made the unit's user and its state directory, private to it.
    let state = std::fs::metadata("/var/lib/xnode").unwrap();
    let uid = id(&["-u", "xnode"]);
    assert_eq!(state.uid(), uid);
    assert_eq!(state.permissions().mode() & 0o777, 0o700);

    // Loopback ports of our own, through the unit's environment file.
    let api_port = free_port(false);
    let p2p_port = free_port(true);
    let s3_port = free_port(false);
    std::fs::write(
        "/etc/default/xnode",
        format!(
            "XNODE_API=127.0.0.1:{api_port}\nXNODE_S3=127.0.0.1:{s3_port}\n\
             XNODE_LISTEN=/ip4/127.0.0.1/tcp/{p2p_port}\nXNODE_NO_MDNS=true\n\
             XNODE_NETWORK=package-test\n"
        ),
    )
    .unwrap();
    let api = format!("http://127.0.0.1:{api_port}");

    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let sandbox = if pid1.trim() == "systemd" {
        None
    } else {
        SystemdSandbox::boot(&repo)
    };
    let ids: Vec<String> = if pid1.trim() == "systemd" || sandbox.is_some() {
        // A real service manager: start, check, restart through it, with every setting
        // of the unit (hardening included) applied by systemd itself.
        let systemctl = |args: &[&str]| -> String {
            match &sandbox {
                Some(sandbox) => run(sandbox.command("systemctl").args(args)),
                None => run(Command::new("systemctl").args(args)),
            }
        };
        if sandbox.is_some() {
            systemctl(&["daemon-reload"]);
        }
        let mut ids = Vec::new();
        for _ in 0..2 {
            // `Type=notify`: `restart` returns once the node has said READY=1.
            systemctl(&["restart", "xnode.service"]);
            assert_eq!(systemctl(&["is-active", "xnode.service"]).trim(), "active");
            let health = http().get(format!("{api}/healthz")).send().unwrap();
            assert!(
                health.status().is_success(),
                "/healthz: {}",
                health.status()
            );
            ids.push(node_id(&api));
        }
        // Under the unit's sandboxing the node still measures its machine: placement
        // refuses work to a node that reports no free memory or disk.
        let nodes = get(&api, "/v1/nodes").unwrap_or_default();
        let own = nodes
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["is_self"] == true))
            .unwrap_or_else(|| panic!("/v1/nodes lists no self: {nodes}"));
        for field in ["memory_free_bytes", "disk_free_bytes", "cpu_cores"] {
            assert!(
                own["capacity"][field].as_u64().unwrap_or(0) > 0,
                "under the unit, the node reports {field} = 0: {own}"
            );
        }
        // The node logs to the journal.
        let log = match &sandbox {
            Some(sandbox) => {
                run(sandbox
                    .command("journalctl")
                    .args(["-u", "xnode.service", "--no-pager"]))
            }
            None => run(Command::new("journalctl").args(["-u", "xnode.service", "--no-pager"])),
        };
        assert!(
            log.contains("starting node"),
            "the journal has no node log: {log}"
        );
        systemctl(&["stop", "xnode.service"]);
        ids
    } else {
        eprintln!(
            "systemd is not PID 1 here and could not be booted in a sandbox: running the \
             unit's ExecStart as its user"
        );
        let sockets = tempfile::tempdir().unwrap();
        std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let notify_path = sockets.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let mut child = start_as_unit(&unit, &notify_path);
            wait_for_state(&notify, "READY=1", &mut child);
            let health = http().get(format!("{api}/healthz")).send().unwrap();
            assert!(
                health.status().is_success(),
                "/healthz: {}",
                health.status()
            );
            let s3 = http()
                .get(format!("http://127.0.0.1:{s3_port}/"))
                .send()
                .unwrap();
            // An unsigned ListBuckets lists nothing (as RGW answers it, and as the S3
            // conformance suite expects): no tenant's bucket is shown to anyone.
            assert_eq!(s3.status().as_u16(), 200, "anonymous S3 ListBuckets");
            let listing = s3.text().unwrap();
            assert!(
                listing.contains("ListAllMyBucketsResult") && !listing.contains("<Bucket>"),
                "anonymous S3 ListBuckets lists no bucket: {listing}"
            );
            ids.push(node_id(&api));
            let status = stop(&mut child);
            assert!(status.success(), "the node exited with {status} on SIGTERM");
            wait_for_state(&notify, "STOPPING=1", &mut child);
        }
        ids
    };
    assert_eq!(ids[0], ids[1], "the node's identity survives a restart");
    let key = std::fs::metadata("/var/lib/xnode/node.key").unwrap();
    assert_eq!(key.uid(), uid, "the node's key belongs to the unit's user");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    // Power the sandbox's systemd off before the package goes, as a host would stop it.
    drop(sandbox);
    run(Command::new("dpkg").args(["--purge", "xnode"]));
    for gone in [
        "/usr/bin/xnode",
        UNIT,
        "/lib/systemd/system/xnode@.service",
        "/etc/xnode",
        "/etc/default/xnode",
        "/var/lib/xnode",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after a purge");
    }
    let status = Command::new("dpkg")
        .args(["-s", "xnode"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "dpkg still lists xnode after a purge");
}
