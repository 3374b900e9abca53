//! Benchmark: one epoch for 10,000 nodes and 1,000,000 verified receipts, and the rate of
//! receipt signature verification.
//!
//! Run in release mode (the `bench` feature exposes the unchecked constructors that let it
//! build a million receipts without signing them):
//!
//! ```text
//! cargo run --release -p xnode-ledger --features bench --example bench_epoch [NODES RECEIPTS]
//! ```
//!
//! Absolute times depend on the machine, so it also times a baseline in the same run:
//! sorting the same receipts by counter (the least any settlement must do), and reports
//! the epoch as a multiple of it. Single-threaded throughout.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use xnode_ledger::{
    AUDIT_VERSION, AuditBody, AuditResult, Epoch, EpochInput, LedgerParams, RECEIPT_VERSION,
    Receipt, ReceiptBody, Reputation, ReputationState, Resource, SignatureVerifier, Stake,
    TenantEscrow, VerifiedAudit, VerifiedReceipt, compute_epoch, verify_proof,
};
use xnode_types::{PublicKeyBytes, SecretKey, SignatureBytes};

const NETWORK: &str = "benchnet";
const EPOCH: u64 = 42;

/// splitmix64: a fixed, seedable sequence, so every run builds the same input.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % (bound as u64).max(1)).unwrap_or(0)
    }
}

fn key_from(index: usize) -> Result<SecretKey, Box<dyn Error>> {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
    Ok(SecretKey::from_seed(&seed)?)
}

/// Time this thread spent on a CPU (Linux `schedstat`), which unlike wall time excludes
/// waiting for a core on a busy machine; `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Wall and on-CPU time of `work`.
fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration, Option<Duration>) {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let result = work();
    let wall = started.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    (result, wall, cpu)
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()?;
    let node_count = args.first().copied().unwrap_or(10_000);
    let receipt_count = args.get(1).copied().unwrap_or(1_000_000);
    let tenant_count = (receipt_count / 50).max(1);
    let mut sequence = Sequence(7);

    let started = Instant::now();
    let keys: Vec<SecretKey> = (0..node_count).map(key_from).collect::<Result<_, _>>()?;
    let nodes: Vec<_> = keys.iter().map(SecretKey::node_id).collect();
    let tenants: Vec<PublicKeyBytes> = (0..tenant_count)
        .map(|_| {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&sequence.next().to_be_bytes());
            }
            PublicKeyBytes(bytes)
        })
        .collect();

    let mut params = LedgerParams::with_defaults(NETWORK);
    params.emission.budget_per_epoch = 1_000_000 * 10u128.pow(18);

    let receipts: Vec<VerifiedReceipt> = (0..receipt_count)
        .map(|_| {
            let provider = sequence.below(node_count);
            let cumulative = sequence.next() % 10_000_000_000;
            VerifiedReceipt::assume_verified(Receipt {
                body: ReceiptBody {
                    v: RECEIPT_VERSION,
                    network: NETWORK.into(),
                    tenant: tenants[sequence.below(tenant_count)],
                    provider: nodes[provider],
                    provider_key: keys[provider].public(),
                    resource: Resource::ALL[sequence.below(Resource::ALL.len())],
                    epoch: Epoch(EPOCH),
                    cumulative,
                    seq: cumulative,
                },
                provider_sig: SignatureBytes([1; 64]),
                tenant_sig: Some(SignatureBytes([2; 64])),
                grant: None,
            })
        })
        .collect();

    // Every node audited by 4 distinct auditors, 8 chunks each (~0.3 % failures).
    let mut audits = Vec::with_capacity(node_count * 32);
    for audited in 0..node_count {
        for offset in 1..=4 {
            let auditor = (audited + offset * 97) % node_count;
            for chunk in 0..8u8 {
                audits.push(VerifiedAudit::assume_verified(AuditResult {
                    body: AuditBody {
                        v: AUDIT_VERSION,
                        network: NETWORK.into(),
                        epoch: Epoch(EPOCH),
                        auditor: nodes[auditor],
                        auditor_key: keys[auditor].public(),
                        audited: nodes[audited],
                        chunk: [chunk; 32],
                        passed: sequence.below(300) != 0,
                        at_ms: sequence.next() % 3_600_000,
                    },
                    auditor_sig: SignatureBytes([3; 64]),
                }));
            }
        }
    }
    let stakes: Vec<Stake> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut payout_address = [0u8; 20];
            payout_address[..8].copy_from_slice(&((index / 2) as u64).to_be_bytes());
            Stake {
                operator: *node,
                payout_address,
                bonded: 10_000 * 10u128.pow(18),
                unbonding_at: None,
            }
        })
        .collect();
    let escrows: Vec<TenantEscrow> = tenants
        .iter()
        .map(|tenant| TenantEscrow {
            tenant: *tenant,
            // Some tenants cannot cover their usage and are charged pro rata.
            balance: u128::from(sequence.next() % 1_000_000) * 10u128.pow(12),
        })
        .collect();
    let reputation = ReputationState {
        nodes: nodes
            .iter()
            .map(|node| {
                let reputation = Reputation {
                    alpha_micro: 990_000_000 + u128::from(sequence.next() % 10_000_000),
                    beta_micro: u128::from(sequence.next() % 40_000_000),
                };
                (*node, reputation)
            })
            .collect(),
    };
    let input = EpochInput {
        epoch: Epoch(EPOCH),
        params,
        receipts,
        audits,
        stakes,
        escrows,
        reputation,
    };
    println!(
        "input: {} nodes, {} receipts, {} tenants, {} audits (built in {:.1} s)",
        node_count,
        input.receipts.len(),
        tenant_count,
        input.audits.len(),
        seconds(started.elapsed())
    );

    // Baseline: sort the same receipts by counter key, then cumulative.
    let (mut baseline_wall, mut baseline_cpu) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut copy = input.receipts.clone();
        let ((), wall, cpu) = timed(|| {
            copy.sort_unstable_by(|a, b| {
                (a.body().key(), a.body().cumulative).cmp(&(b.body().key(), b.body().cumulative))
            })
        });
        black_box(&copy);
        baseline_wall.push(wall);
        baseline_cpu.extend(cpu);
    }

    // Second reference: read every receipt once (the memory-bound floor of any settlement).
    let mut read_wall = Vec::new();
    for _ in 0..3 {
        let (sum, wall, _) = timed(|| {
            input.receipts.iter().fold(0u64, |sum, receipt| {
                let body = receipt.body();
                let network_ok = u64::from(body.network == NETWORK);
                sum.wrapping_add(body.cumulative ^ u64::from(body.tenant.0[0]))
                    .wrapping_add(
                        network_ok + u64::from(body.provider.peer_id().as_ref().digest()[5]),
                    )
            })
        });
        black_box(sum);
        read_wall.push(wall);
    }
    let read_wall = median(read_wall);

    let (mut epoch_wall, mut epoch_cpu) = (Vec::new(), Vec::new());
    let mut output = None;
    for _ in 0..3 {
        let (result, wall, cpu) = timed(|| compute_epoch(black_box(&input)));
        epoch_wall.push(wall);
        epoch_cpu.extend(cpu);
        output = Some(result?);
    }
    let output = output.ok_or("no epoch computed")?;
    let (epoch_wall, baseline_wall) = (median(epoch_wall), median(baseline_wall));
    println!(
        "epoch: {:.3} s wall (median of 3); baseline sort of the same receipts: {:.3} s; ratio {:.2}",
        seconds(epoch_wall),
        seconds(baseline_wall),
        seconds(epoch_wall) / seconds(baseline_wall)
    );
    println!(
        "reading every receipt once: {:.3} s; epoch / read ratio {:.2}",
        seconds(read_wall),
        seconds(epoch_wall) / seconds(read_wall)
    );
    if epoch_cpu.len() == 3 && baseline_cpu.len() == 3 {
        let (epoch_cpu, baseline_cpu) = (median(epoch_cpu), median(baseline_cpu));
        println!(
            "epoch: {:.3} s on CPU; baseline: {:.3} s on CPU; ratio {:.2}",
            seconds(epoch_cpu),
            seconds(baseline_cpu),
            seconds(epoch_cpu) / seconds(baseline_cpu)
        );
    }

    let root: String = output
        .merkle_root
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "output: {} operators paid, {} tenants charged ({} below usage), {} penalties, {} payouts, root 0x{root}",
        output.operators.len(),
        output.tenants.len(),
        output
            .tenants
            .iter()
            .filter(|t| t.charged < t.usage_value)
            .count(),
        output.penalties.len(),
        output.payouts.len(),
    );
    println!(
        "ignored: {:?}; audits below quorum: {}",
        output.ignored_receipts, output.ignored_audits.nodes_below_auditor_quorum
    );
    if let Some(first) = output.payouts.first() {
        let started = Instant::now();
        let proof = output.proof(&first.address).ok_or("no proof")?;
        let proof_time = started.elapsed();
        let leaf = xnode_ledger::leaf_hash(output.epoch, &first.address, first.amount);
        println!(
            "proof: {} siblings, built in {:.1} ms, verifies: {}",
            proof.len(),
            proof_time.as_secs_f64() * 1e3,
            verify_proof(&output.merkle_root, &leaf, &proof)
        );
    }

    bench_verification(&keys)?;
    Ok(())
}

/// Signs receipts between 100 providers and 200 tenants, then times single verification
/// (`Receipt::verify`, a fresh key cache each time) against one batch verifier.
fn bench_verification(node_keys: &[SecretKey]) -> Result<(), Box<dyn Error>> {
    const COUNT: usize = 20_000;
    let providers = &node_keys[..node_keys.len().min(100)];
    let tenants: Vec<SecretKey> = (0..200)
        .map(|i| key_from(1_000_000 + i))
        .collect::<Result<_, _>>()?;
    let mut sequence = Sequence(11);
    let receipts: Vec<Receipt> = (0..COUNT)
        .map(|n| {
            let provider = &providers[sequence.below(providers.len())];
            let tenant = &tenants[sequence.below(tenants.len())];
            ReceiptBody {
                v: RECEIPT_VERSION,
                network: NETWORK.into(),
                tenant: tenant.public(),
                provider: provider.node_id(),
                provider_key: provider.public(),
                resource: Resource::EgressBytes,
                epoch: Epoch(EPOCH),
                cumulative: n as u64,
                seq: n as u64,
            }
            .sign_as_provider(provider)
            .countersign(tenant)
        })
        .collect();

    let started = Instant::now();
    let single_ok = receipts
        .iter()
        .filter(|receipt| receipt.verify(NETWORK).is_ok())
        .count();
    let single = started.elapsed();

    let started = Instant::now();
    let mut verifier = SignatureVerifier::new(NETWORK);
    let batch_ok = verifier
        .receipts(&receipts)
        .iter()
        .filter(|result| result.is_ok())
        .count();
    let batch = started.elapsed();

    println!(
        "verification of {COUNT} receipts (2 signatures each): single {:.0} receipts/s, \
         batch {:.0} receipts/s ({:.2}x), {single_ok}/{batch_ok} valid",
        COUNT as f64 / seconds(single),
        COUNT as f64 / seconds(batch),
        seconds(single) / seconds(batch)
    );
    Ok(())
}
