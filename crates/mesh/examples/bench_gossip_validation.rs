//! Benchmark: what validating a membership gossip message costs, against decoding it alone.
//!
//! ```text
//! cargo run --release -p xnode-mesh --example bench_gossip_validation [MESSAGES]
//! ```
//!
//! Every membership message a node receives is a signed liveness record (or a rumour
//! about one). Before it is forwarded, the mesh decodes it, checks its bounds and verifies
//! its Ed25519 signature against the key embedded in the subject's node id, then merges it
//! into the table. This times, on one core and in the same run:
//!
//! - the baseline: decoding the message, which any node must do to read it at all;
//! - decoding and verifying the signature alone;
//! - decoding and applying it to a table that does not know the subject yet (what a node
//!   pays for news: the admission checks, verification and insertion);
//! - decoding and applying it again (a duplicate, the common case in gossip);
//! - signing a record (what a node pays to announce itself).
//!
//! Absolute times depend on the machine, so it reports each step as a multiple of the
//! baseline measured in the same run.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use xnode_mesh::liveness::SelfStatus;
use xnode_mesh::proto::MAX_SWIM_BYTES;
use xnode_mesh::swim::Membership;
use xnode_mesh::{LivenessRecord, MembershipUpdate, SwimConfig};
use xnode_types::SecretKey;

const NETWORK: &str = "benchnet";
/// Below the membership table's cap (4,096 members), so every record is news once.
const DEFAULT_MESSAGES: usize = 2_000;

fn main() -> Result<(), Box<dyn Error>> {
    let messages = match std::env::args().nth(1) {
        Some(n) => n.parse::<usize>()?.clamp(1, 4_000),
        None => DEFAULT_MESSAGES,
    };
    let addresses = vec![
        "/ip4/203.0.113.7/tcp/7000".to_owned(),
        "/ip4/203.0.113.7/udp/7000/quic-v1".to_owned(),
    ];
    let keys: Vec<SecretKey> = (0..messages).map(|_| SecretKey::generate()).collect();

    let started = Instant::now();
    let records: Vec<LivenessRecord> = keys
        .iter()
        .map(|key| LivenessRecord::sign(key, NETWORK, 1, SelfStatus::Alive, &addresses))
        .collect();
    let sign = started.elapsed();

    let encoded: Vec<Vec<u8>> = records
        .iter()
        .map(|record| xnode_wire::encode(&MembershipUpdate::Signed(record.clone())))
        .collect::<Result<_, _>>()?;
    let message_bytes = encoded.first().map_or(0, Vec::len);

    let decode = time(|| {
        for bytes in &encoded {
            black_box(xnode_wire::decode::<MembershipUpdate>(
                bytes,
                MAX_SWIM_BYTES,
            )?);
        }
        Ok(())
    })?;

    let verify = time(|| {
        for bytes in &encoded {
            if let MembershipUpdate::Signed(record) =
                xnode_wire::decode::<MembershipUpdate>(bytes, MAX_SWIM_BYTES)?
            {
                record.verify(NETWORK)?;
            }
        }
        Ok(())
    })?;

    let mut table = Membership::new(SecretKey::generate(), NETWORK, 1, SwimConfig::default());
    let now = tokio::time::Instant::now();
    let apply_news = time(|| {
        for (bytes, record) in encoded.iter().zip(&records) {
            let update = xnode_wire::decode::<MembershipUpdate>(bytes, MAX_SWIM_BYTES)?;
            black_box(table.apply(&update, record.node, now));
            // As if the member had answered a probe: a table admits at most 256 members it
            // has not heard from directly, and a real node hears from them within a round.
            table.heard_from(&record.node, now);
        }
        Ok(())
    })?;
    if table.member_count() < messages {
        return Err(format!(
            "only {} of {messages} records were admitted; the benchmark measured refusals",
            table.member_count()
        )
        .into());
    }
    let apply_duplicate = time(|| {
        for (bytes, record) in encoded.iter().zip(&records) {
            let update = xnode_wire::decode::<MembershipUpdate>(bytes, MAX_SWIM_BYTES)?;
            black_box(table.apply(&update, record.node, now));
        }
        Ok(())
    })?;

    println!(
        "membership gossip: {messages} signed liveness records of {message_bytes} bytes, one core"
    );
    println!("| step | per message | x decode |");
    println!("|---|---:|---:|");
    for (step, total) in [
        ("decode (baseline)", decode),
        ("decode + verify the signature", verify),
        ("decode + apply, news (verify, insert)", apply_news),
        ("decode + apply, a duplicate", apply_duplicate),
        ("sign a record", sign),
    ] {
        println!(
            "| {step} | {:.1} µs | {:.1} |",
            micros_per(total, messages),
            total.as_secs_f64() / decode.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// Times one pass of `step`.
fn time(mut step: impl FnMut() -> Result<(), Box<dyn Error>>) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    step()?;
    Ok(started.elapsed())
}

fn micros_per(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1e6 / count as f64
}
