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
        StorageError::AccessDenied(m) => s3_error!(AccessDenied, "Access Denied: {m}"),
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
        StorageError::Internal(m) => s3_error!(InternalError, "{m}"),
    }
}
