//! The node-to-node protocol version: what a node advertises to its peers on connect, and
//! which peers it accepts.
//!
//! Every node speaks a range of protocol versions, `oldest..=current`, and advertises both
//! ends in its libp2p Identify agent string (`xnode/<software> proto/1.1 oldest/1.0`),
//! which peers receive right after the Noise handshake, so it comes authenticated by the
//! peer's key. Minor versions of one major are compatible by rule: a minor release may
//! add messages and optional fields, never change or remove one, so a node of `1.3` and a
//! node of `1.1` talk at `1.1` (the *negotiated* version, the lower current of the two),
//! and code that sends something new checks the peer's negotiated version first. A new
//! major marks a break: two nodes are compatible only if each one's current version is at
//! least the other's oldest, and nodes outside that range refuse each other, visibly
//! (a warning, `mesh_peers_refused_total`, and the peer listed as refused by the nodes
//! API) rather than misreading each other's messages.
//!
//! This module is pure: parsing, formatting and the compatibility rule.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocol this release speaks. 1.0 is every release before versions were
/// advertised; 1.1 added the advertisement itself and the `draining` node status; 1.2 the
/// network coordinate in SWIM acks (`SwimResponse::CoordinatedAck`); 1.3 push-pull by
/// digest (`SwimRequest::SyncDigest` and what follows it); 1.4 the registry's root-first
/// anti-entropy round (`SyncRequest::Root`, answered `InSync` or `Differs`).
pub const CURRENT: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
/// The first version whose nodes understand `SwimResponse::CoordinatedAck`.
pub const COORDINATES: ProtocolVersion = ProtocolVersion { major: 1, minor: 2 };
/// The first version whose nodes understand a push-pull by digest
/// (`SwimRequest::SyncDigest`, `SwimResponse::SyncDiff`, `SwimRequest::SyncEntries`,
/// `SwimResponse::Merged`).
pub const DIGEST_SYNC: ProtocolVersion = ProtocolVersion { major: 1, minor: 3 };
/// The first version whose nodes understand the registry's `SyncRequest::Root`.
pub const REGISTRY_ROOT: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };
/// The oldest protocol this release still speaks.
pub const OLDEST: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };
/// What a peer whose agent string carries no version speaks: a release from before
/// versions were advertised.
pub const UNVERSIONED: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };
/// Longest agent string parsed; a longer one is read as unversioned garbage.
const MAX_AGENT_LEN: usize = 256;

/// A protocol version, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for ProtocolVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (major, minor) = text
            .split_once('.')
            .ok_or_else(|| format!("{text:?} is not a protocol version MAJOR.MINOR"))?;
        let number = |part: &str| {
            part.parse::<u16>()
                .map_err(|_| format!("{text:?} is not a protocol version MAJOR.MINOR"))
        };
        Ok(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

/// The versions a node speaks: `oldest..=current`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolRange {
    pub current: ProtocolVersion,
    pub oldest: ProtocolVersion,
}

impl Default for ProtocolRange {
    fn default() -> Self {
        Self {
            current: CURRENT,
            oldest: OLDEST,
        }
    }
}

impl fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (oldest {})", self.current, self.oldest)
    }
}

/// Why a peer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incompatibility {
    /// The peer's newest version is older than the oldest this node speaks.
    PeerTooOld {
        peer: ProtocolRange,
        ours: ProtocolRange,
    },
    /// This node's newest version is older than the oldest the peer speaks.
    PeerTooNew {
        peer: ProtocolRange,
        ours: ProtocolRange,
    },
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatibility::PeerTooOld { peer, ours } => write!(
                f,
                "the peer speaks protocol {peer}, older than the oldest this node speaks \
                 ({}); upgrade the peer",
                ours.oldest
            ),
            Incompatibility::PeerTooNew { peer, ours } => write!(
                f,
                "the peer speaks protocol {peer} and no longer speaks this node's {}; \
                 upgrade this node",
                ours.current
            ),
        }
    }
}

impl ProtocolRange {
    /// The Identify agent string that advertises this range after `software`.
    pub fn agent(&self, software: &str) -> String {
        format!(
            "xnode/{software} proto/{} oldest/{}",
            self.current, self.oldest
        )
    }

    /// The range a peer's agent string advertises: unversioned (1.0) when it names none,
    /// as releases before versions were advertised did. `None` when the string is too
    /// long or names a malformed or inverted range, which a peer refuses.
    pub fn from_agent(agent: &str) -> Option<ProtocolRange> {
        if agent.len() > MAX_AGENT_LEN {
            return None;
        }
        let mut current = None;
        let mut oldest = None;
        for word in agent.split_whitespace() {
            if let Some(v) = word.strip_prefix("proto/") {
                current = Some(v.parse::<ProtocolVersion>().ok()?);
            } else if let Some(v) = word.strip_prefix("oldest/") {
                oldest = Some(v.parse::<ProtocolVersion>().ok()?);
            }
        }
        let range = match (current, oldest) {
            (None, None) => ProtocolRange {
                current: UNVERSIONED,
                oldest: UNVERSIONED,
            },
            (Some(current), Some(oldest)) => ProtocolRange { current, oldest },
            (Some(current), None) => ProtocolRange {
                current,
                oldest: current,
            },
            (None, Some(_)) => return None,
        };
        (range.oldest <= range.current).then_some(range)
    }

    /// The version two nodes talk at (the lower current of the two), or why they cannot.
    pub fn negotiate(&self, peer: &ProtocolRange) -> Result<ProtocolVersion, Incompatibility> {
        if peer.current < self.oldest {
            return Err(Incompatibility::PeerTooOld {
                peer: *peer,
                ours: *self,
            });
        }
        if self.current < peer.oldest {
            return Err(Incompatibility::PeerTooNew {
                peer: *peer,
                ours: *self,
            });
        }
        Ok(self.current.min(peer.current))
    }

    /// This release's range with `current` advertised instead (upgrade drills and tests):
    /// within this release's major, the oldest stays this release's; in another major, it
    /// is that major's `.0`, as a release of that major would advertise.
    pub fn advertising(current: ProtocolVersion) -> ProtocolRange {
        let oldest = if current.major == OLDEST.major {
            OLDEST.min(current)
        } else {
            ProtocolVersion {
                major: current.major,
                minor: 0,
            }
        };
        ProtocolRange { current, oldest }
    }
}

/// What this node knows of a peer's protocol, from its last Identify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProtocol {
    /// The peer's agent string, as it sent it (at most 256 bytes are kept).
    pub agent: String,
    /// The range it advertises, if its agent string could be read.
    pub range: Option<ProtocolRange>,
    /// The version the two talk at; `None` when refused.
    pub negotiated: Option<ProtocolVersion>,
    /// Why this node refuses the peer, if it does.
    pub refused: Option<String>,
    /// When this was learned, Unix milliseconds.
    pub at_ms: u64,
}

impl PeerProtocol {
    /// Judges a peer by its agent string against this node's range.
    pub fn judge(ours: &ProtocolRange, agent: &str, at_ms: u64) -> PeerProtocol {
        let kept: String = agent.chars().take(MAX_AGENT_LEN).collect();
        let range = ProtocolRange::from_agent(agent);
        let (negotiated, refused) = match &range {
            None => (
                None,
                Some(format!(
                    "the peer advertises an unreadable protocol version ({kept:?})"
                )),
            ),
            Some(peer) => match ours.negotiate(peer) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        PeerProtocol {
            agent: kept,
            range,
            negotiated,
            refused,
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16) -> ProtocolVersion {
        ProtocolVersion { major, minor }
    }

    fn range(current: ProtocolVersion, oldest: ProtocolVersion) -> ProtocolRange {
        ProtocolRange { current, oldest }
    }

    #[test]
    fn the_agent_string_round_trips_and_old_agents_read_as_unversioned() {
        let ours = ProtocolRange::default();
        assert_eq!(ProtocolRange::from_agent(&ours.agent("0.1.0")), Some(ours));
        assert_eq!(
            ProtocolRange::from_agent("xnode/0.1.0"),
            Some(range(UNVERSIONED, UNVERSIONED))
        );
        assert_eq!(
            ProtocolRange::from_agent("xnode/9 proto/1.4"),
            Some(range(v(1, 4), v(1, 4)))
        );
        // Garbage and inverted ranges are refused, not guessed at.
        assert_eq!(ProtocolRange::from_agent("xnode/1 proto/one.two"), None);
        assert_eq!(ProtocolRange::from_agent("xnode/1 proto/1.99999"), None);
        assert_eq!(
            ProtocolRange::from_agent("xnode/1 proto/1.0 oldest/1.3"),
            None
        );
        assert_eq!(ProtocolRange::from_agent("xnode/1 oldest/1.0"), None);
        assert_eq!(ProtocolRange::from_agent(&"x".repeat(300)), None);
    }

    #[test]
    fn minors_of_one_major_talk_at_the_lower_minor() {
        let ours = range(v(1, 1), v(1, 0));
        assert_eq!(ours.negotiate(&range(v(1, 3), v(1, 0))), Ok(v(1, 1)));
        assert_eq!(ours.negotiate(&range(v(1, 0), v(1, 0))), Ok(v(1, 0)));
        assert_eq!(ours.negotiate(&ours), Ok(v(1, 1)));
        // Symmetric.
        assert_eq!(range(v(1, 3), v(1, 0)).negotiate(&ours), Ok(v(1, 1)));
    }

    #[test]
    fn ranges_that_do_not_overlap_are_refused_with_the_side_to_upgrade() {
        let ours = range(v(1, 1), v(1, 0));
        let newer = range(v(2, 0), v(2, 0));
        assert!(matches!(
            ours.negotiate(&newer),
            Err(Incompatibility::PeerTooNew { .. })
        ));
        assert!(matches!(
            newer.negotiate(&ours),
            Err(Incompatibility::PeerTooOld { .. })
        ));
        // A 2.x release that still speaks 1.1 talks to us at 1.1.
        assert_eq!(ours.negotiate(&range(v(2, 0), v(1, 1))), Ok(v(1, 1)));
        let refused = PeerProtocol::judge(&ours, &newer.agent("9.0.0"), 5);
        assert_eq!(refused.negotiated, None);
        assert!(refused.refused.unwrap().contains("upgrade this node"));
        let accepted = PeerProtocol::judge(&ours, "xnode/0.1.0", 5);
        assert_eq!(accepted.negotiated, Some(v(1, 0)));
        assert_eq!(accepted.refused, None);
    }

    #[test]
    fn an_advertised_override_keeps_a_sensible_oldest() {
        assert_eq!(ProtocolRange::advertising(v(1, 2)), range(v(1, 2), OLDEST));
        assert_eq!(ProtocolRange::advertising(v(2, 0)), range(v(2, 0), v(2, 0)));
    }
}
