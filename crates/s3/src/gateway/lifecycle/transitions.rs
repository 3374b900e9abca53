//! The checks of a lifecycle rule's transitions. Transitions are not built (the gateway
//! has one storage class), but a malformed one is refused with the `400` any S3 gives it
//! before a well-formed one is refused as not built.

use s3s::S3Result;
use s3s::dto::{NoncurrentVersionTransition, Transition};

use super::{check_midnight, invalid, malformed};

/// Checks a `<Transition>` as S3 does: exactly one of `Days` (zero or more) and `Date`
/// (a midnight UTC), and a `StorageClass`.
pub(super) fn check_transition(transition: &Transition) -> S3Result<()> {
    match (transition.days, &transition.date) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(malformed(
                "A lifecycle Transition has exactly one of Days and Date",
            ));
        }
        (Some(days), None) if days < 0 => {
            return Err(invalid(
                "'Days' for Transition action must be a positive integer",
            ));
        }
        (Some(_), None) => {}
        (None, Some(date)) => {
            check_midnight(date)?;
        }
    }
    if transition.storage_class.is_none() {
        return Err(malformed("A lifecycle Transition needs a StorageClass"));
    }
    Ok(())
}

/// Checks a `<NoncurrentVersionTransition>` as S3 does: `NoncurrentDays` (zero or more)
/// and a `StorageClass`.
pub(super) fn check_noncurrent_transition(
    transition: &NoncurrentVersionTransition,
) -> S3Result<()> {
    match transition.noncurrent_days {
        None => {
            return Err(malformed(
                "NoncurrentVersionTransition needs NoncurrentDays",
            ));
        }
        Some(days) if days < 0 => {
            return Err(invalid(
                "'NoncurrentDays' for NoncurrentVersionTransition action must be a positive integer",
            ));
        }
        Some(_) => {}
    }
    if transition.storage_class.is_none() {
        return Err(malformed(
            "A lifecycle NoncurrentVersionTransition needs a StorageClass",
        ));
    }
    Ok(())
}
