//! WASI preview-1 commands (jobs and workers): args, env, stdin, read-only input mounts,
//! a writable output directory, captured stdout and stderr, and cancellation.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::ComputeError;
use crate::engine::{CommandModule, Engine};
use crate::limits::{Guard, Limits, Usage};
use crate::output::OutputCapture;

/// A host directory shown to the guest at `guest_path`.
#[derive(Debug, Clone)]
pub struct Mount {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub writable: bool,
}

/// One run of a command.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// argv, including the program name in `args[0]`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Bytes,
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    pub stdout: OutputCapture,
    pub stderr: OutputCapture,
    /// If set, the fuel the run has burnt so far, kept current while it runs (at each of
    /// the engine's epoch ticks that finds the guest executing) and set to the final
    /// total when it ends. A long-running worker is metered from it, and so is a run that
    /// is cancelled, whose [`Usage`] cannot say what it burnt.
    pub fuel_gauge: Option<Arc<AtomicU64>>,
}

/// How a command ended.
#[derive(Debug)]
pub enum ExitReason {
    /// The program exited (or returned from `_start`, which is exit code 0).
    Exited(i32),
    /// The sandbox stopped it: a limit, a trap, or a set-up failure.
    Failed(ComputeError),
    /// The host cancelled it (undeploy, shutdown, or the run moved elsewhere).
    Cancelled,
}

#[derive(Debug)]
pub struct CommandOutcome {
    pub exit: ExitReason,
    pub usage: Usage,
}

pub(crate) struct CmdState {
    pub wasi: WasiP1Ctx,
    guard: Guard,
}

impl Engine {
    /// Runs a command to completion, until its limits stop it, or until `cancel` fires.
    pub async fn run_command(
        &self,
        module: &CommandModule,
        spec: CommandSpec,
        cancel: CancellationToken,
    ) -> CommandOutcome {
        let started = Instant::now();
        let bytes_in = spec.stdin.len() as u64;
        let (stdout, stderr) = (spec.stdout.clone(), spec.stderr.clone());
        let mut usage = Usage {
            bytes_in,
            ..Usage::default()
        };
        let exit = match self
            .run_command_inner(module, spec, cancel, &mut usage)
            .await
        {
            Ok(exit) => exit,
            Err(e) => ExitReason::Failed(e),
        };
        usage.wall = started.elapsed();
        usage.bytes_out = stdout.total() + stderr.total();
        let exit = match exit {
            // A program that could not write its output usually fails in its own way;
            // the real reason is the limit.
            ExitReason::Exited(code)
                if code != 0 && (stdout.overflowed() || stderr.overflowed()) =>
            {
                ExitReason::Failed(ComputeError::OutputTooLarge(spec_limit(&stdout, &stderr)))
            }
            ExitReason::Failed(ComputeError::Trap(_))
                if stdout.overflowed() || stderr.overflowed() =>
            {
                ExitReason::Failed(ComputeError::OutputTooLarge(spec_limit(&stdout, &stderr)))
            }
            other => other,
        };
        CommandOutcome { exit, usage }
    }

    async fn run_command_inner(
        &self,
        module: &CommandModule,
        spec: CommandSpec,
        cancel: CancellationToken,
        usage: &mut Usage,
    ) -> Result<ExitReason, ComputeError> {
        let limits = spec.limits;
        // A command holds its slot for as long as it runs (a worker, for days): it takes
        // a command permit first, so commands never hold every slot.
        let _command = self.command_permit(Duration::from_secs(30)).await?;
        let _permit = self.slot(Duration::from_secs(30)).await?;
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(&spec.args)
            .envs(&spec.env)
            .stdin(MemoryInputPipe::new(spec.stdin))
            .stdout(spec.stdout)
            .stderr(spec.stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for mount in &spec.mounts {
            let perms = if mount.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&mount.host_path, &mount.guest_path, perms)
                .map_err(|e| {
                    ComputeError::Setup(format!(
                        "cannot mount {} at {}: {e:#}",
                        mount.host_path.display(),
                        mount.guest_path
                    ))
                })?;
        }
        let mut store = Store::new(
            &self.inner.engine,
            CmdState {
                wasi: wasi.build_p1(),
                guard: Guard::new(limits),
            },
        );
        store.limiter(|s| &mut s.guard);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| ComputeError::Setup(format!("fuel: {e:#}")))?;
        store.set_epoch_deadline(1);
        let gauge = spec.fuel_gauge.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            if let (Some(gauge), Ok(left)) = (&gauge, ctx.get_fuel()) {
                gauge.store(limits.fuel.saturating_sub(left), Ordering::Relaxed);
            }
            Ok(ctx.data_mut().guard.on_epoch())
        });

        let run = async {
            let instance = module
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| ComputeError::Trap(format!("instantiation failed: {e:#}")))?;
            let start = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(|e| ComputeError::InvalidModule(format!("`_start`: {e:#}")))?;
            let result = start.call_async(&mut store, ()).await;
            let fuel_left = store.get_fuel().unwrap_or(0);
            usage.fuel = limits.fuel.saturating_sub(fuel_left);
            if let Some(gauge) = &spec.fuel_gauge {
                gauge.store(usage.fuel, Ordering::Relaxed);
            }
            usage.peak_memory_bytes = store.data().guard.peak_memory;
            Ok::<_, ComputeError>(match result {
                Ok(()) => ExitReason::Exited(0),
                Err(e) => match e.downcast_ref::<I32Exit>() {
                    Some(exit) => ExitReason::Exited(exit.0),
                    None => ExitReason::Failed(store.data().guard.explain(&e)),
                },
            })
        };
        tokio::select! {
            result = run => result,
            _ = cancel.cancelled() => Ok(ExitReason::Cancelled),
        }
    }
}

fn spec_limit(stdout: &OutputCapture, stderr: &OutputCapture) -> u64 {
    stdout.total().max(stderr.total())
}
