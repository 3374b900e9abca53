//! A Jepsen-style checker for histories of object writes and reads, per key.
//!
//! Clients record every operation with the real-time interval in which it ran (from just
//! before the request was sent to just after the answer came) and what they were told.
//! Each write writes a value no other write writes, so a read names the write it saw.
//!
//! **What it checks is what the storage design promises** (`docs/design/storage.md`,
//! "Writes" and "Reads"): with `W + R > rf` quorums and versions ordered after every
//! acknowledged one, each key behaves as a *regular register*: a successful read returns
//! the value of the last write acknowledged before the read began, or of a write that
//! overlaps the read (or that overlaps that last acknowledged write); never an older one,
//! never nothing once a write was acknowledged, never a value nobody wrote. It is not
//! linearizability: two reads that both overlap a write may see it in either order.
//!
//! The model of a write's effect:
//! - [`WriteOutcome::Acknowledged`]: it took effect inside its interval.
//! - [`WriteOutcome::Failed`]: the node answered an error. It may have taken effect, but
//!   only inside its interval (a write that failed must not come back later to overwrite
//!   a newer acknowledged one), so reading its value is allowed and never required.
//! - [`WriteOutcome::Unknown`]: no answer (a timeout or a dropped connection): it may take
//!   effect at any time after it began.
//!
//! An anomaly in a read marked `final_read` (made after the network healed and every write
//! ended) is a lost acknowledged write: the data the client was promised is gone.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// What a client was told about a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Acknowledged,
    Failed,
    Unknown,
}

/// What a client was told about a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The key's value.
    Value(String),
    /// "No such key".
    Missing,
    /// An error: the read says nothing about the register.
    Failed,
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub enum Op {
    Write {
        key: String,
        value: String,
        start: Instant,
        end: Instant,
        outcome: WriteOutcome,
    },
    Read {
        key: String,
        start: Instant,
        end: Instant,
        outcome: ReadOutcome,
        final_read: bool,
    },
}

/// Something a history shows that the promised consistency forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A read returned a value no write wrote (corruption or a mix-up of keys).
    UnknownValue { key: String, value: String },
    /// A read returned the value of a write that began only after the read ended.
    FromTheFuture { key: String, value: String },
    /// A read returned `seen` (or nothing) though the write of `newer` was acknowledged
    /// after `seen`'s write and before the read began.
    StaleRead {
        key: String,
        seen: Option<String>,
        newer: String,
    },
    /// A final read, after heal, did not return the last acknowledged write `lost`.
    LostWrite {
        key: String,
        seen: Option<String>,
        lost: String,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::UnknownValue { key, value } => {
                write!(f, "{key}: read {value:?}, which no write wrote")
            }
            Anomaly::FromTheFuture { key, value } => {
                write!(f, "{key}: read {value:?} before its write began")
            }
            Anomaly::StaleRead { key, seen, newer } => write!(
                f,
                "{key}: stale read of {seen:?} after {newer:?} was acknowledged"
            ),
            Anomaly::LostWrite { key, seen, lost } => write!(
                f,
                "{key}: acknowledged write {lost:?} lost; the final read saw {seen:?}"
            ),
        }
    }
}

/// A summary of a history and what the checker found in it.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub writes_acknowledged: usize,
    pub writes_failed: usize,
    pub writes_unknown: usize,
    pub reads_ok: usize,
    pub reads_failed: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

struct Write<'a> {
    value: &'a str,
    start: Instant,
    /// The latest moment the write may take effect (`None`: any time after it began).
    effect_by: Option<Instant>,
    acknowledged_at: Option<Instant>,
}

/// Checks a history; see the module documentation for the model.
pub fn check(history: &[Op]) -> Report {
    let mut report = Report::default();
    let mut writes: BTreeMap<&str, BTreeMap<&str, Write<'_>>> = BTreeMap::new();
    for op in history {
        if let Op::Write {
            key,
            value,
            start,
            end,
            outcome,
        } = op
        {
            match outcome {
                WriteOutcome::Acknowledged => report.writes_acknowledged += 1,
                WriteOutcome::Failed => report.writes_failed += 1,
                WriteOutcome::Unknown => report.writes_unknown += 1,
            }
            writes.entry(key).or_default().insert(
                value,
                Write {
                    value,
                    start: *start,
                    effect_by: (*outcome != WriteOutcome::Unknown).then_some(*end),
                    acknowledged_at: (*outcome == WriteOutcome::Acknowledged).then_some(*end),
                },
            );
        }
    }
    let empty = BTreeMap::new();
    for op in history {
        let Op::Read {
            key,
            start,
            end,
            outcome,
            final_read,
        } = op
        else {
            continue;
        };
        let of_key = writes.get(key.as_str()).unwrap_or(&empty);
        let seen = match outcome {
            ReadOutcome::Failed => {
                report.reads_failed += 1;
                continue;
            }
            ReadOutcome::Missing => None,
            ReadOutcome::Value(v) => Some(v.as_str()),
        };
        report.reads_ok += 1;
        let seen_write = match seen {
            None => None,
            Some(value) => match of_key.get(value) {
                None => {
                    report.anomalies.push(Anomaly::UnknownValue {
                        key: key.clone(),
                        value: value.to_owned(),
                    });
                    continue;
                }
                Some(w) if w.start > *end => {
                    report.anomalies.push(Anomaly::FromTheFuture {
                        key: key.clone(),
                        value: value.to_owned(),
                    });
                    continue;
                }
                Some(w) => Some(w),
            },
        };
        // A newer acknowledged write makes the read stale if it began after the seen write
        // could last have taken effect and was acknowledged before the read began.
        let newer = of_key
            .values()
            .filter(|w| w.acknowledged_at.is_some_and(|ack| ack < *start))
            .filter(|w| match seen_write {
                None => true,
                Some(seen) => seen.effect_by.is_some_and(|by| by < w.start),
            })
            .max_by_key(|w| w.acknowledged_at);
        if let Some(newer) = newer {
            let seen = seen.map(str::to_owned);
            let newer = newer.value.to_owned();
            report.anomalies.push(if *final_read {
                Anomaly::LostWrite {
                    key: key.clone(),
                    seen,
                    lost: newer,
                }
            } else {
                Anomaly::StaleRead {
                    key: key.clone(),
                    seen,
                    newer,
                }
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Builds histories on a timeline of milliseconds from one origin.
    struct Timeline(Instant);

    impl Timeline {
        fn new() -> Self {
            Timeline(Instant::now())
        }
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
        fn write(&self, value: &str, from: u64, to: u64, outcome: WriteOutcome) -> Op {
            Op::Write {
                key: "k".into(),
                value: value.into(),
                start: self.at(from),
                end: self.at(to),
                outcome,
            }
        }
        fn read(&self, seen: Option<&str>, from: u64, to: u64) -> Op {
            Op::Read {
                key: "k".into(),
                start: self.at(from),
                end: self.at(to),
                outcome: seen.map_or(ReadOutcome::Missing, |v| ReadOutcome::Value(v.into())),
                final_read: false,
            }
        }
        fn final_read(&self, seen: Option<&str>, from: u64, to: u64) -> Op {
            match self.read(seen, from, to) {
                Op::Read {
                    key,
                    start,
                    end,
                    outcome,
                    ..
                } => Op::Read {
                    key,
                    start,
                    end,
                    outcome,
                    final_read: true,
                },
                other => other,
            }
        }
    }

    use WriteOutcome::{Acknowledged, Failed, Unknown};

    #[test]
    fn a_sequential_history_is_valid() {
        let t = Timeline::new();
        let report = check(&[
            t.read(None, 0, 5),
            t.write("a", 10, 20, Acknowledged),
            t.read(Some("a"), 30, 40),
            t.write("b", 50, 60, Acknowledged),
            t.read(Some("b"), 70, 80),
            t.final_read(Some("b"), 90, 95),
        ]);
        assert!(report.is_valid(), "{:?}", report.anomalies);
        assert_eq!((report.writes_acknowledged, report.reads_ok), (2, 4));
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_stale() {
        let t = Timeline::new();
        let report = check(&[
            t.write("a", 10, 20, Acknowledged),
            t.write("b", 30, 40, Acknowledged),
            t.read(Some("a"), 50, 60),
        ]);
        assert_eq!(
            report.anomalies,
            [Anomaly::StaleRead {
                key: "k".into(),
                seen: Some("a".into()),
                newer: "b".into()
            }]
        );
    }

    #[test]
    fn nothing_after_an_acknowledged_write_is_stale() {
        let t = Timeline::new();
        let report = check(&[t.write("a", 10, 20, Acknowledged), t.read(None, 30, 40)]);
        assert!(matches!(
            report.anomalies.as_slice(),
            [Anomaly::StaleRead { seen: None, .. }]
        ));
    }

    #[test]
    fn a_final_read_without_the_last_acknowledged_write_is_a_lost_write() {
        let t = Timeline::new();
        let report = check(&[
            t.write("a", 10, 20, Acknowledged),
            t.write("b", 30, 40, Acknowledged),
            t.final_read(Some("a"), 100, 110),
        ]);
        assert_eq!(
            report.anomalies,
            [Anomaly::LostWrite {
                key: "k".into(),
                seen: Some("a".into()),
                lost: "b".into()
            }]
        );
    }

    #[test]
    fn a_failed_write_may_show_but_cannot_overwrite_a_later_acknowledged_one() {
        let t = Timeline::new();
        // "x" failed, then "b" was acknowledged: reading "x" before "b" began is fine,
        // reading it after "b" was acknowledged means "x" took effect after it failed.
        let allowed = check(&[
            t.write("x", 10, 20, Failed),
            t.read(Some("x"), 25, 28),
            t.write("b", 30, 40, Acknowledged),
            t.read(Some("b"), 50, 60),
        ]);
        assert!(allowed.is_valid(), "{:?}", allowed.anomalies);
        let resurrected = check(&[
            t.write("x", 10, 20, Failed),
            t.write("b", 30, 40, Acknowledged),
            t.read(Some("x"), 50, 60),
        ]);
        assert_eq!(resurrected.anomalies.len(), 1);
        assert_eq!(resurrected.writes_failed, 1);
    }

    #[test]
    fn an_unanswered_write_may_take_effect_at_any_time() {
        let t = Timeline::new();
        let report = check(&[
            t.write("x", 10, 20, Unknown),
            t.write("b", 30, 40, Acknowledged),
            t.read(Some("x"), 50, 60),
        ]);
        assert!(report.is_valid(), "{:?}", report.anomalies);
    }

    #[test]
    fn overlapping_writes_and_reads_may_go_either_way() {
        let t = Timeline::new();
        let report = check(&[
            t.write("a", 10, 50, Acknowledged),
            t.write("b", 20, 40, Acknowledged),
            // A read overlapping both may see either; a read after both may see either
            // too, since the writes overlapped and neither follows the other.
            t.read(Some("b"), 30, 35),
            t.read(Some("a"), 30, 45),
            t.read(Some("a"), 60, 70),
            t.read(Some("b"), 60, 70),
        ]);
        assert!(report.is_valid(), "{:?}", report.anomalies);
    }

    #[test]
    fn values_nobody_wrote_or_from_the_future_are_caught() {
        let t = Timeline::new();
        let report = check(&[
            t.read(Some("ghost"), 0, 5),
            t.read(Some("later"), 10, 20),
            t.write("later", 30, 40, Acknowledged),
        ]);
        assert_eq!(
            report.anomalies,
            [
                Anomaly::UnknownValue {
                    key: "k".into(),
                    value: "ghost".into()
                },
                Anomaly::FromTheFuture {
                    key: "k".into(),
                    value: "later".into()
                }
            ]
        );
    }

    #[test]
    fn keys_are_independent() {
        let t = Timeline::new();
        let other_key = Op::Read {
            key: "other".into(),
            start: t.at(50),
            end: t.at(60),
            outcome: ReadOutcome::Missing,
            final_read: false,
        };
        let report = check(&[t.write("a", 10, 20, Acknowledged), other_key]);
        assert!(report.is_valid(), "{:?}", report.anomalies);
    }
}
