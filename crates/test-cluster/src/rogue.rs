//! A rogue node: a real node of the cluster that sends what a modified binary could, on
//! every channel a peer can reach (gossip topics, SWIM, every RPC service, registry
//! entries signed by its own or freshly made keys), and a fuzzer that sends random
//! mutations of valid messages of every kind.
//!
//! The rogue node runs the real code (so it is a member, holds connections and is placed
//! like any node); the harness only adds a way to put arbitrary bytes on the wire. That is
//! exactly the power of a stranger who runs a modified `xnode`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xnode_mesh::proto::SwimRequest;
use xnode_mesh::swim::digest::ViewDigest;
use xnode_mesh::{LivenessRecord, MemberState, MembershipUpdate, SelfStatus};
use xnode_node::Node;
use xnode_registry::Entry;
use xnode_registry::sync::SyncRequest;
use xnode_storage::proto::StoreRequest;
use xnode_store::{ChunkId, ObjectInfo, ObjectMeta, ObjectPath};
use xnode_types::{Hlc, NodeId, PublicKeyBytes, SecretKey, unix_ms};

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// A gossip topic (`registry`, `membership`, `observe`).
    Gossip(&'static str),
    /// A SWIM request to one peer.
    Swim,
    /// A request to an RPC service of one peer (`store`, `compute`, `registry-sync`).
    Rpc(&'static str),
}

/// The gossip topics and RPC services a peer can reach.
pub const TOPICS: &[&str] = &["registry", "membership", "observe"];
pub const SERVICES: &[&str] = &["store", "compute", "registry-sync"];

/// A handle that sends raw messages from `node`.
#[derive(Clone, Debug)]
pub struct Rogue {
    pub node: Node,
}

impl Rogue {
    pub fn new(node: Node) -> Self {
        Self { node }
    }

    /// Sends `bytes` on `channel` (to `peer` for point-to-point channels). Errors are the
    /// peer's business: a rogue does not care whether it was heard.
    pub async fn send(&self, channel: Channel, peer: NodeId, bytes: Vec<u8>) {
        let mesh = self.node.mesh();
        let timeout = Duration::from_secs(2);
        match channel {
            Channel::Gossip(topic) => {
                let _ = mesh.publish(topic, bytes).await;
            }
            Channel::Swim => {
                let _ = mesh.send_swim_raw(peer, bytes, timeout).await;
            }
            Channel::Rpc(service) => {
                let _ = mesh.request(peer, service, bytes, timeout).await;
            }
        }
    }

    /// Publishes a registry entry (signed by any key) as the rogue's own node would: into
    /// its registry if its policy takes it, then by gossip and direct pushes.
    pub async fn push_entry(&self, entry: &Entry) {
        let _ = self.node.registry().apply_remote(entry.clone());
        if let Ok(bytes) = xnode_wire::encode(entry) {
            let _ = self.node.mesh().publish("registry", bytes).await;
        }
        let push = SyncRequest::Push {
            entries: vec![entry.clone()],
        };
        if let Ok(bytes) = xnode_wire::encode(&push) {
            for m in self.node.mesh().members() {
                let _ = self
                    .node
                    .mesh()
                    .request(m.id, "registry-sync", bytes.clone(), Duration::from_secs(2))
                    .await;
            }
        }
    }
}

/// Valid messages of every kind a peer can send, to mutate.
#[derive(Debug, Default)]
pub struct Corpus {
    pub samples: Vec<(Channel, Vec<u8>)>,
}

fn push<T: xnode_wire::Versioned + serde::Serialize>(
    out: &mut Vec<(Channel, Vec<u8>)>,
    channel: Channel,
    message: &T,
) {
    if let Ok(bytes) = xnode_wire::encode(message) {
        out.push((channel, bytes));
    }
}

impl Corpus {
    /// Builds valid (and hostile but well-formed) samples of every message kind, naming
    /// the real nodes `victims` where a message names a node.
    pub fn build(network: &str, rogue_key: &SecretKey, victims: &[NodeId]) -> Corpus {
        let mut s = Vec::new();
        let stranger = SecretKey::generate();
        let me = rogue_key.node_id();
        let victim = victims.first().copied().unwrap_or(me);
        let now = unix_ms();

        // Membership: signed records (its own and a stranger's), hearsay at every
        // extreme, and each SWIM request.
        let own = LivenessRecord::sign(
            rogue_key,
            network,
            1_000,
            SelfStatus::Alive,
            &["/ip4/127.0.0.1/tcp/1".into()],
        );
        let left = LivenessRecord::sign(&stranger, network, u64::MAX, SelfStatus::Left, &[]);
        let mut updates = vec![
            MembershipUpdate::Signed(own.clone()),
            MembershipUpdate::Signed(left.clone()),
        ];
        for &incarnation in &[0u64, 1, u64::MAX - 1, u64::MAX] {
            for &node in victims.iter().take(3) {
                updates.push(MembershipUpdate::Dead {
                    node,
                    incarnation,
                    from: me,
                });
                updates.push(MembershipUpdate::Suspect {
                    node,
                    incarnation,
                    from: node,
                });
            }
        }
        for u in &updates {
            push(&mut s, Channel::Gossip("membership"), u);
        }
        push(
            &mut s,
            Channel::Swim,
            &SwimRequest::Sync {
                updates: updates.clone(),
            },
        );
        // Push-pull by digest: a digest that differs everywhere (the whole view, once
        // per interval), the entries that follow it, and a digest with too many buckets.
        for buckets in [16, 1024, 2048] {
            push(
                &mut s,
                Channel::Swim,
                &SwimRequest::SyncDigest {
                    record: Box::new(own.clone()),
                    digest: ViewDigest {
                        buckets: vec![[0xff; 8]; buckets],
                    },
                },
            );
        }
        push(
            &mut s,
            Channel::Swim,
            &SwimRequest::SyncEntries {
                updates: updates.clone(),
            },
        );
        for state in [MemberState::Suspect, MemberState::Dead, MemberState::Left] {
            push(
                &mut s,
                Channel::Swim,
                &SwimRequest::Ping {
                    about_you: Some((state, u64::MAX)),
                },
            );
        }
        push(
            &mut s,
            Channel::Swim,
            &SwimRequest::PingReq {
                target: victim,
                record: Some(Box::new(left)),
            },
        );

        // Registry: entries under keys the rogue may and may not write, by its own key
        // and a stranger's, back-dated and from the future.
        let entries = [
            Entry::sign(
                &stranger,
                format!("tenant/{}/bucket/photos", stranger.public().to_hex()),
                Some(br#"{"v":1,"name":"photos","owner":"x","created_ms":0}"#.to_vec()),
                Hlc::new(0, 0),
            ),
            Entry::sign(
                rogue_key,
                format!("node/{victim}"),
                Some(vec![0; 64]),
                Hlc::new(now, 0),
            ),
            Entry::sign(
                &stranger,
                format!("tenant/{}/deployment/hello", stranger.public().to_hex()),
                Some(vec![b'{'; 1000]),
                Hlc::new(u64::MAX, u32::MAX),
            ),
            Entry::sign(
                rogue_key,
                format!("run/{me}/job/{}/x", stranger.public().to_hex()),
                Some(br#"{"state":"succeeded"}"#.to_vec()),
                Hlc::new(now, 0),
            ),
        ];
        let entries: Vec<Entry> = entries.into_iter().filter_map(Result::ok).collect();
        for e in &entries {
            push(&mut s, Channel::Gossip("registry"), e);
        }
        push(
            &mut s,
            Channel::Rpc("registry-sync"),
            &SyncRequest::Push {
                entries: entries.clone(),
            },
        );
        push(
            &mut s,
            Channel::Rpc("registry-sync"),
            &SyncRequest::Digest {
                buckets: vec![[0xff; 16]; 256],
            },
        );
        push(
            &mut s,
            Channel::Rpc("registry-sync"),
            &SyncRequest::Pull {
                keys: vec!["tenant/".into(); 64],
            },
        );
        push(
            &mut s,
            Channel::Rpc("registry-sync"),
            &SyncRequest::Root { root: [0xff; 16] },
        );

        // Storage: every request, with hostile but well-formed values.
        let tenant: PublicKeyBytes = stranger.public();
        let data = vec![7u8; 4096];
        let id = ChunkId::of(&data);
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::PutChunk {
                id,
                data: data.into(),
                bucket: Some(xnode_storage::proto::BucketRef {
                    tenant,
                    name: "no-such-bucket".into(),
                }),
            },
        );
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::GetChunk { id },
        );
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::HasChunks {
                ids: vec![id; 1000],
            },
        );
        if let Ok(path) = ObjectPath::new(tenant, "photos", "a") {
            let meta = ObjectMeta {
                path: path.clone(),
                version: Hlc::new(u64::MAX, u32::MAX),
                writer: me,
                info: Some(ObjectInfo {
                    manifest: id,
                    size: u64::MAX,
                    etag: "x".into(),
                    content_type: "text/plain".into(),
                    user_meta: BTreeMap::new(),
                    created_ms: now,
                }),
                seal: None,
            };
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::PutMeta { meta },
            );
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::GetMeta { path },
            );
        }
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::ListMeta {
                tenant,
                bucket: "photos".into(),
                prefix: String::new(),
                start_after: None,
                limit: u32::MAX,
            },
        );
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::MetaRange {
                bucket: xnode_storage::proto::BucketRef {
                    tenant,
                    name: "photos".into(),
                },
                prefix: String::new(),
                after: None,
                limit: u32::MAX,
            },
        );
        // The same range as encodings (store protocol v14), without bound, after a key
        // past every other.
        for after in [None, Some("\u{10FFFF}".repeat(300))] {
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::MetaRangeEncoded {
                    bucket: xnode_storage::proto::BucketRef {
                        tenant,
                        name: "photos".into(),
                    },
                    prefix: String::new(),
                    after,
                    limit: u32::MAX,
                },
            );
        }
        // A range digest (store protocol v13) counting without bound, up to a key past
        // every other, and one whose range ends before it starts.
        for (after, until) in [
            (None, "\u{10FFFF}".repeat(300)),
            (Some("z".to_owned()), "a".to_owned()),
        ] {
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::MetaRangeDigest {
                    bucket: xnode_storage::proto::BucketRef {
                        tenant,
                        name: "photos".into(),
                    },
                    prefix: String::new(),
                    after,
                    until: Some(until),
                    limit: u32::MAX,
                },
            );
        }
        // Conditional writes and audits (store protocol v5): a commit for a key the receiver
        // may not coordinate, a compare-and-set expecting a version from the far future, a
        // challenge for a slice past any chunk's end, and the audit log of an absurd epoch.
        if let Ok(path) = ObjectPath::new(tenant, "photos", "b") {
            use xnode_storage::conditional::{ETagMatch, Preconditions};
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::CommitMeta {
                    path: path.clone(),
                    info: None,
                    preconditions: Preconditions {
                        if_match: Some(ETagMatch::Any),
                        if_match_size: Some(u64::MAX),
                        ..Default::default()
                    },
                },
            );
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::PutMetaIf {
                    meta: ObjectMeta {
                        path: path.clone(),
                        version: Hlc::new(now, 0),
                        writer: me,
                        info: None,
                        seal: None,
                    },
                    expected: Some((Hlc::new(u64::MAX, u32::MAX), me)),
                },
            );
            // A sealed conditional write (store protocol v6) carrying an unsealed entry.
            push(
                &mut s,
                Channel::Rpc("store"),
                &StoreRequest::CommitSealedMeta {
                    meta: ObjectMeta {
                        path,
                        version: Hlc::new(now, 0),
                        writer: me,
                        info: None,
                        seal: None,
                    },
                    preconditions: Preconditions::default(),
                },
            );
        }
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::AuditChunk {
                id,
                offset: u64::MAX - 1,
                len: u32::MAX,
                nonce: [0xAA; 16],
            },
        );
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::AuditLog { epoch: u64::MAX },
        );
        push(
            &mut s,
            Channel::Rpc("store"),
            &StoreRequest::ScanMeta {
                after: Vec::new(),
                limit: u32::MAX,
            },
        );

        // Compute: every request, naming deployments and tenants that exist or not.
        use xnode_deploy::proto::ComputeRequest;
        push(
            &mut s,
            Channel::Rpc("compute"),
            &ComputeRequest::Invoke {
                deployment: "hello".into(),
                owner: tenant.to_hex(),
                method: "GET".into(),
                path_and_query: "/".into(),
                headers: vec![("host".into(), b"x".to_vec())],
                body: vec![0; 1024],
                trace_id: "0".repeat(32),
                parent_span: "0".repeat(16),
            },
        );
        push(
            &mut s,
            Channel::Rpc("compute"),
            &ComputeRequest::Grant {
                owner: tenant.to_hex(),
                purpose: "job:x".into(),
            },
        );
        push(
            &mut s,
            Channel::Rpc("compute"),
            &ComputeRequest::PushGrant {
                owner: tenant.to_hex(),
                purpose: "hello".into(),
                keys: br#"{"v":1,"keys":{"data":"0000000000000000000000000000000000000000000000000000000000000000"}}"#.to_vec(),
            },
        );
        push(
            &mut s,
            Channel::Rpc("compute"),
            &ComputeRequest::Logs {
                owner: tenant.to_hex(),
                deployment: "hello".into(),
            },
        );

        // Observability: a summary of the rogue itself with extreme figures.
        let recorder = xnode_observe::Recorder::new();
        recorder.record(&["api"], xnode_observe::Outcome::default(), None, now);
        let (mut scopes, _) = recorder.snapshot(now);
        for stats in scopes.values_mut() {
            stats.requests = u64::MAX;
        }
        push(
            &mut s,
            Channel::Gossip("observe"),
            &xnode_observe::NodeSummary {
                node: me,
                started_ms: now,
                seq: 1,
                at_ms: now,
                system: Default::default(),
                peers: Default::default(),
                active_tenants: u32::MAX,
                scopes,
                peer_rtts: Vec::new(),
            },
        );
        Corpus { samples: s }
    }

    /// The channels the corpus covers.
    pub fn channels(&self) -> Vec<Channel> {
        let mut c: Vec<Channel> = self.samples.iter().map(|(c, _)| *c).collect();
        c.sort();
        c.dedup();
        c
    }
}

/// Mutates `bytes` in one of several ways: flips, truncation, extension, insertion,
/// large-number windows, version bytes, splicing with another sample, or noise.
pub fn mutate(rng: &mut StdRng, bytes: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.gen_range(0..10) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                if !out.is_empty() {
                    let i = rng.gen_range(0..out.len());
                    out[i] ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => out.truncate(rng.gen_range(0..=out.len())),
        2 => out.extend((0..rng.gen_range(1..4096)).map(|_| rng.r#gen::<u8>())),
        3 => {
            let at = rng.gen_range(0..=out.len());
            let noise: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.r#gen()).collect();
            out.splice(at..at, noise);
        }
        // Varints and lengths at their largest.
        4 if !out.is_empty() => {
            let at = rng.gen_range(0..out.len());
            let end = (at + rng.gen_range(1..10)).min(out.len());
            out[at..end].fill(0xff);
        }
        // Another format version.
        5 if out.len() > 1 => out[1] = rng.r#gen(),
        6 => {
            let cut = rng.gen_range(0..=out.len());
            let from = rng.gen_range(0..=other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        7 => {
            let copy = out.clone();
            out.extend_from_slice(&copy);
        }
        8 => {
            out = (0..rng.gen_range(0..65_536)).map(|_| rng.r#gen()).collect();
        }
        _ => {
            // The valid message itself: hostile values, well-formed encoding.
        }
    }
    out
}

/// What a fuzzing run sent.
#[derive(Clone, Debug, Default)]
pub struct FuzzReport {
    pub sent: u64,
    pub by_channel: BTreeMap<String, u64>,
}

/// Sends mutated messages of every kind from `rogue` to the `targets` for `duration`, at
/// most `rate` per second, from a seeded generator (the seed is printed so a failure can
/// be replayed).
pub async fn fuzz(
    rogue: &Rogue,
    corpus: &Corpus,
    targets: &[NodeId],
    duration: Duration,
    rate: u32,
    seed: u64,
) -> FuzzReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = FuzzReport::default();
    if corpus.samples.is_empty() || targets.is_empty() {
        return report;
    }
    let started = Instant::now();
    let pause = Duration::from_secs(1) / rate.max(1);
    let mut in_flight = tokio::task::JoinSet::new();
    // Every channel gets an equal share, however many samples each has.
    let channels = corpus.channels();
    while started.elapsed() < duration {
        let channel = channels[rng.gen_range(0..channels.len())];
        let of_channel: Vec<&(Channel, Vec<u8>)> = corpus
            .samples
            .iter()
            .filter(|(c, _)| *c == channel)
            .collect();
        let (channel, sample) = of_channel[rng.gen_range(0..of_channel.len())];
        let (_, other) = &corpus.samples[rng.gen_range(0..corpus.samples.len())];
        let bytes = mutate(&mut rng, sample, other);
        let peer = targets[rng.gen_range(0..targets.len())];
        *report.by_channel.entry(format!("{channel:?}")).or_default() += 1;
        report.sent += 1;
        let (rogue, channel) = (rogue.clone(), *channel);
        in_flight.spawn(async move { rogue.send(channel, peer, bytes).await });
        // Keep a bounded number in flight: the rogue's own node must not drown itself.
        while in_flight.len() > 64 {
            in_flight.join_next().await;
        }
        tokio::time::sleep(pause).await;
    }
    while in_flight.join_next().await.is_some() {}
    report
}

/// A replica's answer to a range read with its entries changed by `change`, whether the
/// edge asked for the entries (`MetaRange`) or their encodings (`MetaRangeEncoded`, what
/// an edge without a replica reads), so a tampering replica lies to either. Any other
/// answer is returned as it is.
pub fn tamper_range(
    honest: xnode_storage::proto::StoreResponse,
    change: impl FnOnce(Vec<ObjectMeta>) -> Vec<ObjectMeta>,
) -> xnode_storage::proto::StoreResponse {
    use xnode_storage::proto::StoreResponse;
    match honest {
        StoreResponse::MetaRange { entries, truncated } => StoreResponse::MetaRange {
            entries: change(entries),
            truncated,
        },
        StoreResponse::MetaRangeEncoded { entries, truncated } => {
            let decoded = entries
                .iter()
                .filter_map(|e| xnode_wire::decode(e, xnode_store::MAX_META_BYTES).ok())
                .collect();
            StoreResponse::MetaRangeEncoded {
                entries: change(decoded)
                    .iter()
                    .filter_map(|m| xnode_wire::encode(m).ok())
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
                truncated,
            }
        }
        other => other,
    }
}
