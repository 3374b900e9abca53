//! S3's `x-amz-expiration` response header: when a lifecycle rule makes the current
//! object due, and which rule.

use std::time::Duration;

use xnode_store::ObjectInfo;

use super::{Rule, expiry_ms};

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
/// Days count as 24 hours from the write, as the worker counts them with the default
/// lifecycle day (S3 rounds up to the next midnight UTC; Xnode does not round), so the
/// header never names a time after the worker may act.
pub(crate) fn expiration_header(rules: &[Rule], key: &str, info: &ObjectInfo) -> Option<String> {
    let (at, rule) = rules
        .iter()
        .filter(|r| r.enabled && r.filter.matches(key, info))
        .filter_map(|r| {
            let at = expiry_ms(
                r.expiration.as_ref()?,
                info.created_ms,
                Duration::from_secs(86_400),
            )?;
            Some((at, r))
        })
        .min_by_key(|(at, _)| *at)?;
    Some(format!(
        "expiry-date=\"{}\", rule-id=\"{}\"",
        http_date(at)?,
        rule.id.replace('"', "")
    ))
}
