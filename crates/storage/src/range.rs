//! The sans-I/O half of range listings: checking one replica's answer to `MetaRange`
//! against the question, merging a read quorum's answers, and turning the merge into a
//! page of live objects.
//!
//! A replica answers a range of its share of the bucket's metadata table, tombstones
//! included. Merging `R` answers (the newest version of each key wins, a tombstone hides
//! its key) sees every acknowledged write, since each one is on `W` replicas and
//! `W + R > rf`. A cut answer (`truncated`) covers keys only up to its last entry, so a
//! round keeps only the keys up to the smallest such point: past it, the replica that
//! stopped could hold a newer version (a tombstone) of a key another answer shows.
//!
//! An answer is refused whole, and does not count towards the quorum, when it breaks the
//! question: more entries than asked, a key outside the range (another tenant, bucket or
//! prefix, at or before the cursor, an internal key not asked for, an invalid path), keys
//! out of order or repeated, or an answer cut short while neither the entry limit nor the
//! byte bound was reached (which would let a replica drag a listing out one key per round).
//! Entries dated further ahead than replicas accept are left out of the merge, as quorum
//! reads leave them out, so no replica can hide a key behind a tombstone dated in the future.

use std::collections::BTreeMap;

use xnode_store::{ObjectMeta, is_internal_key};
use xnode_types::PublicKeyBytes;

use crate::proto::MAX_LIST_ANSWER_BYTES;
use crate::seals::Trust;

/// An honest replica cuts an answer only when the next entry would pass
/// [`MAX_LIST_ANSWER_BYTES`]; entries are at most [`xnode_store::MAX_META_BYTES`], so a cut
/// answer short of its entry limit holds at least this many bytes (with a wide margin for
/// encodings that differ slightly in length).
const MIN_CUT_ANSWER_BYTES: usize = MAX_LIST_ANSWER_BYTES / 2;

/// What one round asks every replica.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RangeQuestion<'a> {
    pub tenant: &'a PublicKeyBytes,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub after: Option<&'a str>,
    pub limit: usize,
}

/// Why a replica's answer to a range question was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRange {
    #[error("{got} entries answer a question for at most {limit}")]
    TooMany { got: usize, limit: usize },
    #[error("an entry outside the range asked for (key {key:?})")]
    OutOfRange { key: String },
    #[error("entries out of key order or repeated (at key {key:?})")]
    OutOfOrder { key: String },
    #[error(
        "an answer cut short at {entries} entries and {bytes} bytes, with neither bound reached"
    )]
    CutShort { entries: usize, bytes: usize },
    #[error("an entry whose seal fails (key {key:?})")]
    Forged { key: String },
}

/// One replica's answer, checked against its question.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CheckedRange {
    /// Entries in the range, in strictly increasing key order, none dated too far ahead.
    pub entries: Vec<ObjectMeta>,
    /// `Some(last key)` when the answer was cut: it covers keys only up to there.
    pub until: Option<String>,
    /// Entries left out because their version is dated too far ahead.
    pub future: usize,
    /// Entries left out because the tenant revoked their writer before their date.
    pub revoked: usize,
    /// Per entry, whether its seal verified; an entry that did not (written before
    /// metadata was signed) counts only if every answer of the round holds it. All true
    /// until [`classify`] says otherwise.
    pub verified: Vec<bool>,
}

/// Marks which entries of a checked answer verify; an answer holding a forged entry is
/// refused whole, as a lying replica's. Entries of a revoked writer dated after the
/// revocation are left out (the answer then holds nothing for their keys), as quorum
/// reads leave them out: honest replicas may hold them.
pub(crate) fn classify(
    mut checked: CheckedRange,
    trust: impl Fn(&ObjectMeta) -> Trust,
) -> Result<CheckedRange, BadRange> {
    let mut entries = Vec::with_capacity(checked.entries.len());
    let mut verified = Vec::with_capacity(checked.entries.len());
    for meta in std::mem::take(&mut checked.entries) {
        match trust(&meta) {
            Trust::Verified => verified.push(true),
            Trust::Unverifiable => verified.push(false),
            Trust::Revoked => {
                checked.revoked += 1;
                continue;
            }
            Trust::Forged => {
                return Err(BadRange::Forged {
                    key: clip(&meta.path.key),
                });
            }
        }
        entries.push(meta);
    }
    checked.entries = entries;
    checked.verified = verified;
    Ok(checked)
}

/// Checks an answer against `q`; entries with a wall clock past `latest_ms` are left out.
pub(crate) fn check_range(
    q: &RangeQuestion<'_>,
    entries: Vec<ObjectMeta>,
    truncated: bool,
    latest_ms: u64,
) -> Result<CheckedRange, BadRange> {
    if entries.len() > q.limit {
        return Err(BadRange::TooMany {
            got: entries.len(),
            limit: q.limit,
        });
    }
    let internal_wanted = is_internal_key(q.prefix);
    let mut previous: Option<&str> = None;
    for meta in &entries {
        let p = &meta.path;
        let in_range = p.tenant == *q.tenant
            && p.bucket == q.bucket
            && p.key.starts_with(q.prefix)
            && q.after.is_none_or(|after| p.key.as_str() > after)
            && (internal_wanted || !is_internal_key(&p.key))
            && p.validate().is_ok();
        if !in_range {
            return Err(BadRange::OutOfRange { key: clip(&p.key) });
        }
        if previous.is_some_and(|previous| p.key.as_str() <= previous) {
            return Err(BadRange::OutOfOrder { key: clip(&p.key) });
        }
        previous = Some(&p.key);
    }
    let until = if truncated {
        if entries.len() < q.limit {
            let bytes = entries
                .iter()
                .map(|m| xnode_wire::encode(m).map(|e| e.len()).unwrap_or(0))
                .fold(0usize, usize::saturating_add);
            if entries.is_empty() || bytes < MIN_CUT_ANSWER_BYTES {
                return Err(BadRange::CutShort {
                    entries: entries.len(),
                    bytes,
                });
            }
        }
        entries.last().map(|m| m.path.key.clone())
    } else {
        None
    };
    let total = entries.len();
    let entries: Vec<ObjectMeta> = entries
        .into_iter()
        .filter(|m| m.version.wall_ms <= latest_ms)
        .collect();
    Ok(CheckedRange {
        future: total - entries.len(),
        revoked: 0,
        verified: vec![true; entries.len()],
        entries,
        until,
    })
}

/// The merge of one round's checked answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MergedRange {
    /// The newest version of every key any answer holds up to `until`, in key order,
    /// tombstones included.
    pub newest: Vec<ObjectMeta>,
    /// Every answer covers every key up to here; `None`: to the end of the range.
    pub until: Option<String>,
    /// Per answer, in the order given: the entries of `newest` it lacks or holds an older
    /// version of (what read repair sends it).
    pub behind: Vec<Vec<ObjectMeta>>,
}

/// Whether `meta` takes the place of `held` as a key's newest entry: a verified entry
/// beats one that is not; among verified entries, one that would break the other's
/// COMPLIANCE retention never wins and the locked version wins over it although older
/// (`ObjectMeta::breaks_lock_of`); otherwise the newer wins.
fn replaces(verified: bool, meta: &ObjectMeta, held_verified: bool, held: &ObjectMeta) -> bool {
    if verified != held_verified {
        return verified;
    }
    if verified && held.breaks_lock_of(meta) {
        return true;
    }
    if verified && meta.breaks_lock_of(held) {
        return false;
    }
    meta.supersedes(held)
}

/// Merges the answers of one round: per key the newest version wins, keys past the
/// smallest cut are left to the next round.
pub(crate) fn merge_ranges(answers: &[CheckedRange]) -> MergedRange {
    let until = answers.iter().filter_map(|a| a.until.clone()).min();
    let within = |key: &str| until.as_deref().is_none_or(|until| key <= until);
    let held_by_all = |meta: &ObjectMeta| {
        answers.iter().all(|a| {
            a.entries
                .binary_search_by(|m| m.path.key.as_str().cmp(&meta.path.key))
                .ok()
                .and_then(|i| a.entries.get(i))
                == Some(meta)
        })
    };
    // Per key, the newest entry, verified ones before any other.
    let mut newest: BTreeMap<&str, (bool, &ObjectMeta)> = BTreeMap::new();
    for answer in answers {
        let entries = answer.entries.iter().enumerate();
        for (i, meta) in entries.filter(|(_, m)| within(&m.path.key)) {
            let verified = answer.verified.get(i).copied().unwrap_or(false);
            if !verified && !held_by_all(meta) {
                continue;
            }
            let wins = newest
                .get(meta.path.key.as_str())
                .is_none_or(|&(held_verified, held)| replaces(verified, meta, held_verified, held));
            if wins {
                newest.insert(&meta.path.key, (verified, meta));
            }
        }
    }

    let behind = answers
        .iter()
        .map(|answer| {
            newest
                .values()
                // Only verified entries are repaired onto replicas: they refuse the rest.
                .filter(|(verified, _)| *verified)
                .map(|(_, winner)| *winner)
                .filter(|winner| {
                    let held = answer
                        .entries
                        .binary_search_by(|m| m.path.key.as_str().cmp(&winner.path.key))
                        .ok()
                        .and_then(|i| answer.entries.get(i));
                    held.is_none_or(|held| winner.supersedes(held))
                })
                .map(|m| (*m).clone())
                .collect()
        })
        .collect();
    MergedRange {
        newest: newest.into_values().map(|(_, m)| m.clone()).collect(),
        until,
        behind,
    }
}

/// What a listing does after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// The page is full or the range is exhausted.
    Done,
    /// Ask again for the keys after this one.
    After(String),
}

/// Adds the live entries of a merged round to `page` (a tombstone hides its key), up to
/// `limit` entries, and says whether the listing goes on.
pub(crate) fn absorb(merged: MergedRange, page: &mut Vec<ObjectMeta>, limit: usize) -> Next {
    for meta in merged.newest {
        if page.len() >= limit {
            return Next::Done;
        }
        if meta.info.is_some() {
            page.push(meta);
        }
    }
    match merged.until {
        Some(until) if page.len() < limit => Next::After(until),
        _ => Next::Done,
    }
}

/// Where a key falls under a delimiter: the common prefix that groups it (`prefix`, then
/// the rest of the key up to and including the first `delimiter` after `prefix`), or
/// `None` when the key is listed as itself. Listings apply it after the merge, to the
/// keys that are live there, so a key deleted on some replicas never makes up a group.
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.strip_prefix(prefix)?;
    let end = rest.find(delimiter)?;
    key.get(..prefix.len() + end + delimiter.len())
}

pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
