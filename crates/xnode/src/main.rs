//! `xnode`: the one binary of Xnode. It runs a node (`start`), a local multi-node network
//! (`devnet`), and the client commands that talk to a node's API.

mod admission_cmd;
mod chain_cmd;
mod cli;
mod client;
mod compute_cmd;
mod devnet;
mod devnet_chain;
mod devnet_grant;
mod drain_cmd;
mod kms_cmd;
mod ledger_cmd;
mod s3_cmd;
mod sd_notify;
mod start;
mod storage_cmd;
mod tenant;
mod top;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a function call allocates and frees many small
/// buffers on several threads, where glibc's arenas spent about a sixth of the node's
/// time (measured with both allocators against `wasmtime serve`, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    end_quietly_on_a_closed_stdout();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Background tasks (the mesh, HTTP connections) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `xnode nodes | head` must end as Unix tools do when the reader goes away, not with a
/// panic. Rust ignores SIGPIPE, so printing to a closed pipe panics in `println!`; putting
/// SIGPIPE back would need unsafe code, which the workspace forbids. So that one panic ends
/// the process with the status a shell gives a command killed by SIGPIPE (128 + 13), and
/// every other panic is reported as before.
fn end_quietly_on_a_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Start(args) => start::run(*args).await,
        cli::Command::Devnet(args) => devnet::run(args).await,
        cli::Command::Nodes(args) => client::nodes(args).await,
        cli::Command::Status(args) => client::status(args).await,
        cli::Command::Workers(args) => client::workers(args).await,
        cli::Command::Ledger {
            action:
                cli::LedgerAction::Receipts {
                    epoch,
                    tenant,
                    provider,
                    args,
                },
        } => client::receipts(args, epoch, tenant, provider).await,
        cli::Command::Stake { action } => chain_cmd::stake(action).await,
        cli::Command::Rewards(args) => chain_cmd::rewards(args).await,
        cli::Command::Escrow { action } => chain_cmd::escrow(action).await,
        cli::Command::Ledger {
            action: cli::LedgerAction::Status { args },
        } => ledger_cmd::status(args).await,
        cli::Command::Ledger {
            action: cli::LedgerAction::Epoch { n, args },
        } => ledger_cmd::epoch(args, n).await,
        cli::Command::Drain(args) => drain_cmd::drain(args).await,
        cli::Command::Leave(args) => drain_cmd::leave(args).await,
        cli::Command::Admission { action } => admission_cmd::run(action).await,
        cli::Command::Key(cli::KeyArgs {
            action: Some(cli::KeyAction::S3 { action }),
            ..
        }) => s3_cmd::run(action).await,
        cli::Command::Key(args) => client::key(args),
        cli::Command::Top { args, once } => top::run(&args.api, once, args.json).await,
        cli::Command::Bucket { action } => storage_cmd::bucket(action).await,
        cli::Command::Kms { action } => kms_cmd::run(action).await,
        cli::Command::Tenant {
            action:
                cli::TenantAction::RevokeEdge {
                    node_id,
                    s3_key,
                    args,
                },
        } => s3_cmd::revoke_edge(&node_id, s3_key.as_deref(), args).await,
        cli::Command::Deploy {
            manifest,
            replicas,
            args,
        } => compute_cmd::deploy(&manifest, replicas, args).await,
        cli::Command::Deployments { args } => compute_cmd::deployments(args).await,
        cli::Command::Undeploy { name, args } => compute_cmd::undeploy(&name, args).await,
        cli::Command::Logs { name, follow, args } => compute_cmd::logs(&name, follow, args).await,
        cli::Command::Job { action } => match action {
            cli::JobAction::Run {
                deployment,
                program_args,
                id,
                inputs,
                output_bucket,
                stdin,
                wait,
                args,
            } => {
                compute_cmd::job_run(
                    compute_cmd::JobRunOptions {
                        deployment,
                        id,
                        args: program_args,
                        inputs,
                        output_bucket,
                        stdin_file: stdin,
                        wait,
                    },
                    args,
                )
                .await
            }
            cli::JobAction::Status { id, args } => compute_cmd::job_status(&id, args).await,
            cli::JobAction::Output { id, file, args } => {
                compute_cmd::job_output(&id, &file, args).await
            }
        },
        cli::Command::Put {
            file,
            target,
            content_type,
            args,
        } => storage_cmd::put(&file, &target, content_type, args).await,
        cli::Command::Get { target, file, args } => {
            // `-` is standard output, as for every Unix tool that takes an output file.
            let file = file.filter(|f| f.as_os_str() != "-");
            storage_cmd::get(&target, file.as_deref(), args).await
        }
        cli::Command::Ls { target, args } => storage_cmd::ls(&target, args).await,
        cli::Command::Rm { target, args } => storage_cmd::rm(&target, args).await,
        cli::Command::Storage {
            action: cli::StorageAction::Health(args),
        } => storage_cmd::health(&args.api, args.json).await,
    }
}
