//! S3's `x-amz-expiration` response header: when a lifecycle rule makes the current
//! object due, and which rule.

use xnode_store::ObjectInfo;

use super::{CALENDAR_DAY, Rule, expiry_ms, last_modified_ms};

/// An HTTP date (`Fri, 23 Dec 2012 00:00:00 GMT`), as `x-amz-expiration` carries it.
fn http_date(ms: u64) -> Option<String> {
    let secs = i64::try_from(ms / 1000).ok()?;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let weekday = t.weekday().to_string();
    let month = t.month().to_string();
    Some(format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        weekday.get(..3)?,
        t.day(),
        month.get(..3)?,
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// S3's `x-amz-expiration` for the current object `key` of a bucket with `rules`: when
/// the earliest enabled expiration rule that matches it makes it due, and that rule's id.
/// Days are calendar days, rounded up to the next midnight UTC, as S3 (and Ceph RGW)
/// announce them, and as the worker counts them with the default lifecycle day. A node
/// configured with a shorter test day (`s3_lifecycle_day`) still announces calendar days,
/// as RGW does with `rgw_lc_debug_interval`: the header is what clients plan by, and
/// the suite that shortens the day checks the header in calendar days.
pub(crate) fn expiration_header(rules: &[Rule], key: &str, info: &ObjectInfo) -> Option<String> {
    let (at, rule) = rules
        .iter()
        .filter(|r| r.enabled && r.filter.matches(key, info))
        .filter_map(|r| {
            let at = expiry_ms(r.expiration.as_ref()?, last_modified_ms(info), CALENDAR_DAY)?;
            Some((at, r))
        })
        .min_by_key(|(at, _)| *at)?;
    Some(format!(
        "expiry-date=\"{}\", rule-id=\"{}\"",
        http_date(at)?,
        rule.id.replace('"', "")
    ))
}
