//! The bulk link's frames (format version 1).
//!
//! A connection opens with a hello: [`MAGIC`], the format version and the one-time token
//! the replica gave the edge over the mesh. Then each frame is a big-endian `u32` length
//! and that many bytes sealed with ChaCha20-Poly1305 under the session key; a chunk's
//! frame is followed by the chunk's bytes in the clear. Those bytes are already sealed
//! with the object's own key, and the sealed header names the chunk's id, which is the
//! BLAKE3 hash of exactly those bytes and which the replica checks before it stores them,
//! so a byte changed on the way is refused like a forged chunk. The nonce is the
//! direction and a counter: a frame replayed, dropped or reordered does not open.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use xnode_store::ChunkId;
use xnode_types::PublicKeyBytes;

use crate::proto::BucketRef;

/// The first bytes of every bulk connection.
pub const MAGIC: &[u8; 4] = b"XBLK";
/// The format version a hello and every header carry.
pub const VERSION: u8 = 1;
pub const TOKEN_LEN: usize = 16;
pub const KEY_LEN: usize = 32;
/// The hello's length: magic, version, token.
pub const HELLO_LEN: usize = MAGIC.len() + 1 + TOKEN_LEN;
/// The most bytes one sealed frame may hold (a header, or an answer with its error text).
pub const MAX_SEALED: u32 = 64 * 1024;
/// Bound into every frame's tag, so a bulk frame is never taken for anything else.
const AAD: &[u8] = b"xnode-bulk/1";
const TAG_LEN: usize = 16;
/// The longest bucket name a header may carry (S3 allows 63).
const MAX_BUCKET_NAME: usize = 255;

/// Whether a bucket name fits a header.
pub fn fits_header(name: &str) -> bool {
    name.len() <= MAX_BUCKET_NAME
}

/// Which way a frame goes; part of its nonce, so the two directions never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToReplica = 0,
    ToEdge = 1,
}

/// Why a bulk frame or connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bulk link i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("a bulk frame did not open with the session key (forged, replayed or reordered)")]
    Unopened,
    #[error("a bulk frame of {0} bytes is larger than allowed")]
    TooLarge(u64),
    #[error("a malformed bulk frame: {0}")]
    Malformed(&'static str),
    #[error("bulk frame format version {0} is not supported")]
    Version(u8),
    #[error("a bulk connection sent more frames than a nonce can count")]
    Exhausted,
}

/// One direction's sealing or opening state: the session key and the next counter.
pub struct FrameKey {
    key: LessSafeKey,
    direction: Direction,
    counter: u64,
}

impl FrameKey {
    pub fn new(key: &[u8; KEY_LEN], direction: Direction) -> Result<Self, FrameError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| FrameError::Malformed("session key"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            direction,
            counter: 0,
        })
    }

    fn next_nonce(&mut self) -> Result<Nonce, FrameError> {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(self.direction as u32).to_be_bytes());
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.checked_add(1).ok_or(FrameError::Exhausted)?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals `plain` into a frame: its length, then the sealed bytes.
    pub fn seal(&mut self, mut plain: Vec<u8>) -> Result<Vec<u8>, FrameError> {
        let nonce = self.next_nonce()?;
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(AAD), &mut plain)
            .map_err(|_| FrameError::Malformed("sealing"))?;
        let len =
            u32::try_from(plain.len()).map_err(|_| FrameError::TooLarge(plain.len() as u64))?;
        if len > MAX_SEALED {
            return Err(FrameError::TooLarge(u64::from(len)));
        }
        let mut frame = Vec::with_capacity(4 + plain.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&plain);
        Ok(frame)
    }

    /// Opens the sealed bytes of the next frame (its length already read).
    pub fn open(&mut self, mut sealed: Vec<u8>) -> Result<Vec<u8>, FrameError> {
        let nonce = self.next_nonce()?;
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut sealed)
            .map_err(|_| FrameError::Unopened)?
            .len();
        sealed.truncate(plain_len);
        Ok(sealed)
    }
}

/// Checks a frame's announced length before anything is read or allocated for it.
pub fn sealed_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len > MAX_SEALED {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    if (len as usize) < TAG_LEN {
        return Err(FrameError::Malformed("a frame shorter than its tag"));
    }
    Ok(len as usize)
}

pub fn hello(token: &[u8; TOKEN_LEN]) -> [u8; HELLO_LEN] {
    let mut hello = [0u8; HELLO_LEN];
    hello[..4].copy_from_slice(MAGIC);
    hello[4] = VERSION;
    hello[5..].copy_from_slice(token);
    hello
}

/// The token of a hello, if it is one this version speaks.
pub fn parse_hello(hello: &[u8; HELLO_LEN]) -> Result<[u8; TOKEN_LEN], FrameError> {
    if &hello[..4] != MAGIC {
        return Err(FrameError::Malformed("not a bulk hello"));
    }
    if hello[4] != VERSION {
        return Err(FrameError::Version(hello[4]));
    }
    let mut token = [0u8; TOKEN_LEN];
    token.copy_from_slice(&hello[5..]);
    Ok(token)
}

/// The sealed header of one chunk sent to a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub request: u64,
    pub id: ChunkId,
    pub len: u32,
    pub bucket: Option<BucketRef>,
}

impl ChunkHeader {
    /// Refuses a bucket name longer than a header carries (the chunk then goes by the
    /// mesh, which carries any name).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(96);
        out.push(VERSION);
        out.extend_from_slice(&self.request.to_be_bytes());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.len.to_be_bytes());
        match &self.bucket {
            None => out.push(0),
            Some(bucket) => {
                out.push(1);
                out.extend_from_slice(&bucket.tenant.0);
                let name = bucket.name.as_bytes();
                let name_len = u8::try_from(name.len())
                    .ok()
                    .filter(|&n| usize::from(n) <= MAX_BUCKET_NAME)
                    .ok_or(FrameError::Malformed("a bucket name too long for a header"))?;
                out.push(name_len);
                out.extend_from_slice(name);
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let mut r = Reader(bytes);
        let version = r.byte()?;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let request = u64::from_be_bytes(r.array()?);
        let id = ChunkId(r.array()?);
        let len = u32::from_be_bytes(r.array()?);
        let bucket = match r.byte()? {
            0 => None,
            1 => {
                let tenant = PublicKeyBytes(r.array()?);
                let name_len = usize::from(r.byte()?);
                let name = std::str::from_utf8(r.take(name_len)?)
                    .map_err(|_| FrameError::Malformed("a bucket name that is not UTF-8"))?;
                Some(BucketRef {
                    tenant,
                    name: name.to_owned(),
                })
            }
            _ => return Err(FrameError::Malformed("bucket flag")),
        };
        if !r.0.is_empty() {
            return Err(FrameError::Malformed("bytes after the header"));
        }
        Ok(Self {
            request,
            id,
            len,
            bucket,
        })
    }
}

/// The body of an answer frame: the request it answers, then the encoded store response.
pub fn encode_answer(request: u64, response: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + response.len());
    out.extend_from_slice(&request.to_be_bytes());
    out.extend_from_slice(response);
    out
}

pub fn decode_answer(bytes: &[u8]) -> Result<(u64, &[u8]), FrameError> {
    let mut r = Reader(bytes);
    let request = u64::from_be_bytes(r.array()?);
    Ok((request, r.0))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed("a header cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            request: 7,
            id: ChunkId([3; 32]),
            len: 1 << 20,
            bucket: Some(BucketRef {
                tenant: PublicKeyBytes([9; 32]),
                name: "photos".into(),
            }),
        }
    }

    fn open_frame(key: &mut FrameKey, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        let len = sealed_len(frame[..4].try_into().unwrap())?;
        assert_eq!(len, frame.len() - 4);
        key.open(frame[4..].to_vec())
    }

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        for bucket in [None, header().bucket] {
            let h = ChunkHeader { bucket, ..header() };
            assert_eq!(ChunkHeader::decode(&h.encode().unwrap()).unwrap(), h);
        }
        let encoded = header().encode().unwrap();
        for cut in 0..encoded.len() {
            assert!(
                ChunkHeader::decode(&encoded[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(ChunkHeader::decode(&longer).is_err());
        let long = ChunkHeader {
            bucket: Some(BucketRef {
                tenant: PublicKeyBytes([1; 32]),
                name: "b".repeat(256),
            }),
            ..header()
        };
        assert!(long.encode().is_err());
        let mut version = encoded;
        version[0] = 2;
        assert!(matches!(
            ChunkHeader::decode(&version),
            Err(FrameError::Version(2))
        ));
    }

    #[test]
    fn frames_open_only_in_order_in_their_direction_and_unchanged() {
        let key = [5u8; KEY_LEN];
        let mut edge = FrameKey::new(&key, Direction::ToReplica).unwrap();
        let mut replica = FrameKey::new(&key, Direction::ToReplica).unwrap();
        let first = edge.seal(header().encode().unwrap()).unwrap();
        let second = edge.seal(b"second".to_vec()).unwrap();
        // Out of order: the counter does not match.
        let mut reordered = FrameKey::new(&key, Direction::ToReplica).unwrap();
        assert!(matches!(
            open_frame(&mut reordered, &second),
            Err(FrameError::Unopened)
        ));
        assert_eq!(
            open_frame(&mut replica, &first).unwrap(),
            header().encode().unwrap()
        );
        assert_eq!(open_frame(&mut replica, &second).unwrap(), b"second");
        // Replayed: the counter moved on.
        assert!(open_frame(&mut replica, &first).is_err());
        // The other direction never opens a frame sealed for this one.
        let mut back = FrameKey::new(&key, Direction::ToEdge).unwrap();
        assert!(open_frame(&mut back, &first).is_err());
        // Another key, or one flipped bit, does not open.
        let mut other = FrameKey::new(&[6u8; KEY_LEN], Direction::ToReplica).unwrap();
        assert!(open_frame(&mut other, &first).is_err());
        let mut flipped = first.clone();
        flipped[10] ^= 1;
        let mut fresh = FrameKey::new(&key, Direction::ToReplica).unwrap();
        assert!(open_frame(&mut fresh, &flipped).is_err());
    }

    #[test]
    fn lengths_and_hellos_are_checked_before_reading() {
        assert!(matches!(
            sealed_len((MAX_SEALED + 1).to_be_bytes()),
            Err(FrameError::TooLarge(_))
        ));
        assert!(sealed_len(3u32.to_be_bytes()).is_err());
        assert_eq!(sealed_len(100u32.to_be_bytes()).unwrap(), 100);
        let token = [4u8; TOKEN_LEN];
        assert_eq!(parse_hello(&hello(&token)).unwrap(), token);
        let mut wrong = hello(&token);
        wrong[0] = b'Y';
        assert!(parse_hello(&wrong).is_err());
        let mut version = hello(&token);
        version[4] = 9;
        assert!(matches!(parse_hello(&version), Err(FrameError::Version(9))));
        let answer = encode_answer(42, b"resp");
        assert_eq!(decode_answer(&answer).unwrap(), (42, &b"resp"[..]));
        assert!(decode_answer(&answer[..5]).is_err());
    }
}
