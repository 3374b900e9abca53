//! The storage a guest reaches at `http://store.xnode/<bucket>/<key>`: the buckets of its
//! deployment's signed storage scope, with the bucket keys granted for it, through the same
//! distributed store as the API. Any other bucket of the owner is refused (403).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use xnode_store::ScopedKeys;
use xnode_types::PublicKeyBytes;

use xnode_storage::{Storage, StorageError};

pub struct StoreOutbound {
    pub storage: Arc<Storage>,
    pub owner: PublicKeyBytes,
    /// The keys of the deployment's buckets; the buckets it may use are these.
    pub keys: ScopedKeys,
    /// The largest object a GET returns: the node holds it in memory before the guest
    /// reads it (`compute.max_store_object_mb`).
    pub max_object_bytes: u64,
}

fn status_of(e: &StorageError) -> u16 {
    match e {
        StorageError::NoSuchBucket(_) | StorageError::NoSuchKey(_) => 404,
        StorageError::AccessDenied(_) | StorageError::EdgeRevoked(_) => 403,
        StorageError::BadRequest(_) | StorageError::InvalidRange(_) => 400,
        StorageError::Quorum(_) => 503,
        StorageError::Conflict(_) | StorageError::ConditionalConflict(_) => 409,
        StorageError::PreconditionFailed(_) => 412,
        StorageError::Integrity(_) => 502,
        _ => 500,
    }
}

impl xnode_compute::Outbound for StoreOutbound {
    fn store(
        &self,
        method: http::Method,
        path: String,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = (u16, Bytes)> + Send + 'static>> {
        let storage = self.storage.clone();
        let owner = self.owner;
        let keys = self.keys.clone();
        let max = self.max_object_bytes;
        Box::pin(async move {
            let path = path.trim_start_matches('/');
            let Some((bucket, key)) = path
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            else {
                return (
                    400,
                    Bytes::from_static(b"use http://store.xnode/<bucket>/<key>\n"),
                );
            };
            let key = percent_decode(key);
            // Deletes need no key, so the scope is checked here for every method, not
            // only by the keyring.
            if keys.get(bucket).is_none() {
                return (
                    403,
                    Bytes::from(format!(
                        "bucket {bucket:?} is not in this deployment's signed storage scope\n"
                    )),
                );
            }
            let result = match method {
                http::Method::GET => {
                    match storage.get_object(&owner, bucket, &key, &keys, None).await {
                        Ok(read) => {
                            let too_large = || {
                                (
                                    413,
                                    Bytes::from(format!(
                                        "the object is larger than this node lets a function read ({max} bytes)\n"
                                    )),
                                )
                            };
                            let (start, end) = read.range;
                            if end.saturating_sub(start) > max {
                                return too_large();
                            }
                            let mut out = Vec::new();
                            let mut stream = read.body;
                            use futures::StreamExt;
                            while let Some(chunk) = stream.next().await {
                                match chunk {
                                    // Checked again as the bytes come: the size is the
                                    // metadata's word, the bytes are what is held.
                                    Ok(c) if (out.len() + c.len()) as u64 > max => {
                                        return too_large();
                                    }
                                    Ok(c) => out.extend_from_slice(&c),
                                    Err(e) => {
                                        return (status_of(&e), Bytes::from(format!("{e}\n")));
                                    }
                                }
                            }
                            Ok((200, Bytes::from(out)))
                        }
                        Err(e) => Err(e),
                    }
                }
                http::Method::PUT => {
                    let len = body.len() as u64;
                    let stream =
                        futures::stream::iter([Ok::<Bytes, std::convert::Infallible>(body)]);
                    storage
                        .put_object(
                            &owner,
                            bucket,
                            &key,
                            &keys,
                            "application/octet-stream".into(),
                            Default::default(),
                            Some(len),
                            stream,
                        )
                        .await
                        .map(|_| (201, Bytes::new()))
                }
                http::Method::DELETE => storage
                    .delete_object(&owner, bucket, &key)
                    .await
                    .map(|_| (204, Bytes::new())),
                _ => Ok((405, Bytes::from_static(b"use GET, PUT or DELETE\n"))),
            };
            match result {
                Ok(r) => r,
                Err(e) => (status_of(&e), Bytes::from(format!("{e}\n"))),
            }
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
