//! The parts of a completed multipart object: `GET`/`HEAD ?partNumber=N` and
//! `GetObjectAttributes`.
//!
//! No part list is stored: completing an upload makes each part one segment of the
//! object's manifest (see `Storage::compose_object`), so the manifest's segments are the
//! parts, in order, with their sizes; the ETag's `-N` suffix says how many there were (a
//! last part of zero bytes has no segment, so missing trailing parts have size 0). An
//! object stored in one piece has one part, the whole object.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use xnode_store::ObjectInfo;

use super::integrity::{part_checksum, stored_checksums};
use super::versioning::{VERSION_ID, public_id};
use super::{Gateway, MAX_KEYS, last_modified, s3_err};

/// How many parts a multipart object's ETag (`<md5>-N`) says it has; `None` for an object
/// stored in one piece.
pub(super) fn parts_count(etag: &str) -> Option<usize> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

impl Gateway {
    /// The sizes of an object's parts, in order (one part for an object stored in one piece).
    pub(super) async fn part_sizes(&self, info: &ObjectInfo) -> S3Result<Vec<u64>> {
        let Some(count) = parts_count(&info.etag) else {
            return Ok(vec![info.size]);
        };
        let manifest = self.storage().manifest(info).await.map_err(s3_err)?;
        let mut sizes: Vec<u64> = (0..manifest.segment_count())
            .filter_map(|i| manifest.segment(i))
            .map(|s| s.chunks.iter().map(|c| u64::from(c.plain_len)).sum())
            .collect();
        // An object of empty parts has one empty segment for them all.
        if sizes.iter().sum::<u64>() == 0 {
            sizes.clear();
        }
        if sizes.len() > count {
            return Err(s3_error!(
                InternalError,
                "the object has {} segments but its ETag names {count} parts",
                sizes.len()
            ));
        }
        sizes.resize(count, 0);
        Ok(sizes)
    }

    /// The byte range `[start, end)` of part `number` of an object.
    pub(super) async fn part_range(&self, info: &ObjectInfo, number: i32) -> S3Result<(u64, u64)> {
        let sizes = self.part_sizes(info).await?;
        let index = usize::try_from(number)
            .ok()
            .filter(|n| (1..=sizes.len()).contains(n))
            .ok_or_else(|| {
                s3_error!(
                    InvalidPart,
                    "The requested partnumber is not satisfiable (the object has {} parts)",
                    sizes.len()
                )
            })?;
        let start: u64 = sizes[..index - 1].iter().sum();
        Ok((start, start + sizes[index - 1]))
    }

    pub(super) async fn get_object_attributes_impl(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let key = self.key_of(&req)?;
        let input = req.input;
        self.require_bucket(&key.tenant, &input.bucket)?;
        self.check_key(&input.key)?;
        let stored = match input.version_id.as_deref() {
            Some(id) => {
                self.readable_version(&key.tenant, &input.bucket, &input.key, id)
                    .await?
            }
            None => input.key.clone(),
        };
        let (_, info) = self
            .storage()
            .head_object(&key.tenant, &input.bucket, &stored)
            .await
            .map_err(s3_err)?;
        // An SSE-C object's attributes are shown only to a request with its key, as S3 does.
        let customer = super::sse::CustomerKey::parse(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        self.opening_key(&key, &info.user_meta, customer.as_ref())?;
        // SDKs send the attributes as one comma-separated header value, which s3s keeps
        // as a single entry.
        let wants = |a: &str| {
            input
                .object_attributes
                .iter()
                .flat_map(|x| x.as_str().split(','))
                .any(|x| x.trim() == a)
        };
        // The version id, as on GET: when the object has one or a version was asked for.
        let versioned = input.version_id.is_some() || info.user_meta.contains_key(VERSION_ID);
        let mut out = GetObjectAttributesOutput {
            last_modified: Some(last_modified(&info)),
            version_id: versioned.then(|| public_id(&info)),
            ..Default::default()
        };
        if wants(ObjectAttributes::ETAG) {
            out.e_tag = Some(ETag::Strong(info.etag.clone()));
        }
        if wants(ObjectAttributes::OBJECT_SIZE) {
            out.object_size = i64::try_from(info.size).ok();
        }
        if wants(ObjectAttributes::STORAGE_CLASS) {
            out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if wants(ObjectAttributes::CHECKSUM) {
            let checksum = stored_checksums(&info.user_meta);
            if checksum != Checksum::default() {
                out.checksum = Some(checksum);
            }
        }
        // Parts are listed for multipart objects only, as S3 does.
        if wants(ObjectAttributes::OBJECT_PARTS) && parts_count(&info.etag).is_some() {
            let sizes = self.part_sizes(&info).await?;
            let max = input
                .max_parts
                .map(|m| usize::try_from(m.max(0)).unwrap_or(0).min(MAX_KEYS))
                .unwrap_or(MAX_KEYS);
            let marker = usize::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
            let listed: Vec<ObjectPart> = sizes
                .iter()
                .enumerate()
                .skip(marker)
                .take(max)
                .map(|(i, size)| {
                    let sum = part_checksum(&info.user_meta, i + 1);
                    ObjectPart {
                        part_number: i32::try_from(i + 1).ok(),
                        size: i64::try_from(*size).ok(),
                        checksum_crc32: sum.checksum_crc32,
                        checksum_crc32c: sum.checksum_crc32c,
                        checksum_crc64nvme: sum.checksum_crc64nvme,
                        checksum_sha1: sum.checksum_sha1,
                        checksum_sha256: sum.checksum_sha256,
                    }
                })
                .collect();
            let truncated = marker + listed.len() < sizes.len();
            let next = listed.last().and_then(|p| p.part_number);
            out.object_parts = Some(GetObjectAttributesParts {
                total_parts_count: i32::try_from(sizes.len()).ok(),
                part_number_marker: input.part_number_marker,
                next_part_number_marker: truncated.then_some(next).flatten(),
                max_parts: Some(max as i32),
                is_truncated: Some(truncated),
                parts: Some(listed),
            });
        }
        Ok(S3Response::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_counts_come_from_multipart_etags() {
        assert_eq!(parts_count("0123abcd-3"), Some(3));
        assert_eq!(parts_count("0123abcd"), None);
    }
}
