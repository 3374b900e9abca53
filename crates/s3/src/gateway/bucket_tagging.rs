//! Bucket tags: `PutBucketTagging`, `GetBucketTagging`, `DeleteBucketTagging`.
//!
//! A bucket's tags are labels its owner reads back (for cost reports and inventories in
//! AWS); nothing in Xnode acts on them. Like every bucket setting (`gateway::settings`),
//! they are an entry of the replicated registry signed by the bucket's owner (kind
//! `tagging`, `tenant/<owner>/bucket-tagging/<bucket>`), bound to the bucket claim they
//! were made for, so every node answers the same and the tags of a deleted bucket do not
//! reappear on a new bucket of the same name. They are checked as S3 checks them: at
//! most 50, keys of 1 to 128 characters not starting with the reserved `aws:`, values of
//! at most 256, no key twice. A tag set has no order in S3; it comes back sorted by key.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::Gateway;

/// The bucket-setting kind of a bucket's tags.
const KIND: &str = "tagging";
/// Format version of [`BucketTagsDocument`].
const DOCUMENT_VERSION: u32 = 1;
/// S3's limits for bucket tags: tags per bucket, and the lengths (in characters) of a
/// key and a value.
const MAX_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;
/// The key prefix S3 keeps for its own tags, which requesters may not set.
const RESERVED_PREFIX: &str = "aws:";

/// A bucket's tags as stored: `(key, value)` sorted by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BucketTagsDocument {
    /// Format version of this document.
    v: u32,
    tags: Vec<(String, String)>,
}

fn invalid(message: &str) -> s3s::S3Error {
    s3_error!(InvalidTag, "{message}")
}

/// Checks a requested tag set against S3's rules and returns it sorted by key.
fn validate(tag_set: TagSet) -> S3Result<Vec<(String, String)>> {
    if tag_set.len() > MAX_TAGS {
        return Err(invalid("Bucket tag count cannot be greater than 50"));
    }
    let mut tags = Vec::with_capacity(tag_set.len());
    for tag in tag_set {
        let (Some(key), value) = (tag.key, tag.value.unwrap_or_default()) else {
            return Err(s3_error!(MalformedXML, "A bucket Tag needs a Key"));
        };
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid("The TagValue you have provided is invalid"));
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(invalid("System tags cannot be added/updated by requester"));
        }
        tags.push((key, value));
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    if tags.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(invalid("Cannot provide multiple Tags with the same key"));
    }
    Ok(tags)
}

impl Gateway {
    pub(super) async fn put_bucket_tagging_impl(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        let document = BucketTagsDocument {
            v: DOCUMENT_VERSION,
            tags: validate(input.tagging.tag_set)?,
        };
        self.store_bucket_setting(&key, &input.bucket, KIND, Some(&document))
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput {}))
    }

    pub(super) async fn get_bucket_tagging_impl(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let key = self.key_of(&req)?;
        // A document of another format version (a newer gateway's) is not half-read: the
        // bucket answers as if it had no tags, as for any setting that does not decode.
        let Some(document) = self
            .load_bucket_setting::<BucketTagsDocument>(&key.tenant, &req.input.bucket, KIND)?
            .filter(|d| d.v == DOCUMENT_VERSION)
        else {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        };
        let tag_set = document
            .tags
            .into_iter()
            .map(|(k, v)| Tag {
                key: Some(k),
                value: Some(v),
            })
            .collect();
        Ok(S3Response::new(GetBucketTaggingOutput { tag_set }))
    }

    pub(super) async fn delete_bucket_tagging_impl(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let key = self.key_of(&req)?;
        self.store_bucket_setting::<BucketTagsDocument>(&key, &req.input.bucket, KIND, None)
            .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: Some(key.to_owned()),
            value: Some(value.to_owned()),
        }
    }

    fn code(tag_set: TagSet) -> Option<String> {
        validate(tag_set)
            .err()
            .map(|e| e.code().as_str().to_owned())
    }

    #[test]
    fn bucket_tags_are_checked_like_s3_and_sorted_by_key() {
        assert_eq!(
            validate(vec![tag("b", "2"), tag("a", ""), tag("é", "ü")]).unwrap(),
            vec![
                ("a".to_owned(), String::new()),
                ("b".to_owned(), "2".to_owned()),
                ("é".to_owned(), "ü".to_owned()),
            ]
        );
        assert_eq!(validate(vec![]).unwrap(), vec![]);
        let fifty: TagSet = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(validate(fifty).map(|t| t.len()).ok(), Some(50));
        let fifty_one: TagSet = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(code(fifty_one).as_deref(), Some("InvalidTag"));
        assert_eq!(code(vec![tag("", "v")]).as_deref(), Some("InvalidTag"));
        assert_eq!(
            code(vec![tag(&"k".repeat(129), "v")]).as_deref(),
            Some("InvalidTag")
        );
        assert_eq!(code(vec![tag(&"é".repeat(128), "v")]), None);
        assert_eq!(
            code(vec![tag("k", &"v".repeat(257))]).as_deref(),
            Some("InvalidTag")
        );
        assert_eq!(
            code(vec![tag("k", "1"), tag("j", "2"), tag("k", "3")]).as_deref(),
            Some("InvalidTag")
        );
        assert_eq!(
            code(vec![tag("aws:cloudformation:stack", "s")]).as_deref(),
            Some("InvalidTag")
        );
        assert_eq!(
            code(vec![Tag {
                key: None,
                value: Some("v".into())
            }])
            .as_deref(),
            Some("MalformedXML")
        );
    }
}
