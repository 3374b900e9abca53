//! Fault injection for tests and drills: drop, delay and partition this node's traffic.
//!
//! Faults apply at the mesh's message layer (SWIM probes, RPCs and gossip) and, for
//! partitions, at the connection layer: a blocked peer's connections are closed and new
//! ones refused, exactly as if the network between the two nodes were cut.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

/// The faults currently in force on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRules {
    /// Probability in `[0, 1]` that any one message this node sends or receives is lost.
    pub drop_rate: f64,
    /// Extra latency added to every request this node sends.
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    /// Peers this node cannot reach nor be reached by.
    pub blocked: BTreeSet<NodeId>,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Shared, thread-safe fault rules. The mesh driver consults them on every message.
#[derive(Debug, Default)]
pub struct Faults {
    rules: RwLock<FaultRules>,
}

impl Faults {
    pub fn get(&self) -> FaultRules {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn set(&self, rules: FaultRules) {
        match self.rules.write() {
            Ok(mut r) => *r = rules,
            Err(p) => *p.into_inner() = rules,
        }
    }

    /// Decides whether to lose one message.
    pub(crate) fn should_drop(&self) -> bool {
        let rate = self.get().drop_rate;
        rate > 0.0 && rand::random::<f64>() < rate
    }

    pub(crate) fn delay(&self) -> Duration {
        self.get().delay
    }

    pub(crate) fn is_blocked(&self, peer: &NodeId) -> bool {
        self.get().blocked.contains(peer)
    }
}
