//! How storage failures reach S3 clients: the mapping of `StorageError` onto the S3 error
//! codes and messages that SDKs and the AWS CLI expect.

use s3s::{S3Error, s3_error};
use xnode_storage::StorageError;

/// A storage failure as the S3 error a client expects.
pub(crate) fn s3_err(e: StorageError) -> S3Error {
    match e {
        StorageError::NoSuchBucket(b) => {
            s3_error!(NoSuchBucket, "The specified bucket {b:?} does not exist")
        }
        StorageError::BucketTaken(b) => s3_error!(
            BucketAlreadyExists,
            "The bucket name {b:?} is taken by another tenant"
        ),
        StorageError::BucketNotEmpty(b) => {
            s3_error!(
                BucketNotEmpty,
                "The bucket {b:?} you tried to delete is not empty"
            )
        }
        StorageError::AccessDenied(m) | StorageError::EdgeRevoked(m) => {
            s3_error!(AccessDenied, "Access Denied: {m}")
        }
        StorageError::NoSuchKey(k) => {
            s3_error!(NoSuchKey, "The specified key {k:?} does not exist")
        }
        StorageError::InvalidRange(m) => s3_error!(InvalidRange, "{m}"),
        StorageError::BadRequest(m) => s3_error!(InvalidArgument, "{m}"),
        StorageError::Quorum(m) => {
            s3_error!(ServiceUnavailable, "Not enough storage nodes answered: {m}")
        }
        StorageError::Conflict(m) => s3_error!(
            OperationAborted,
            "A newer version of the object won; retry the request: {m}"
        ),
        StorageError::PreconditionFailed(_) => s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ),
        StorageError::ConditionalConflict(m) => s3_error!(
            ConditionalRequestConflict,
            "A conflicting operation occurred during the conditional write; retry the request: {m}"
        ),
        StorageError::Integrity(m) => {
            s3_error!(
                InternalError,
                "The stored object failed its integrity check: {m}"
            )
        }
        StorageError::Interrupted(m) => s3_error!(IncompleteBody, "{m}"),
        // 403 QuotaExceeded: SDKs retry 5xx (a 507 would be retried in vain) and treat 403
        // as final, like AWS's own over-limit refusals.
        StorageError::QuotaExceeded(m) => quota_exceeded(m),
        // AWS's own answer to a bucket over the account's bucket limit.
        e @ StorageError::TooManyBuckets { .. } => s3_error!(TooManyBuckets, "{e}"),
        StorageError::Internal(m) => s3_error!(InternalError, "{m}"),
    }
}

/// `403 QuotaExceeded` (not an AWS code: S3 has no per-tenant storage quota; the name is
/// the one S3-compatible stores use, and the status makes SDKs stop rather than retry).
fn quota_exceeded(message: String) -> S3Error {
    let mut error = S3Error::with_message(
        s3s::S3ErrorCode::Custom("QuotaExceeded".into()),
        format!("The tenant's storage quota is exceeded: {message}"),
    );
    error.set_status_code(hyper::StatusCode::FORBIDDEN);
    error
}
