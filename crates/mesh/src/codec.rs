//! A length-prefixed byte codec for libp2p request-response, with hard size limits.
//!
//! Messages are opaque bytes here; their versioned encoding is the business of
//! [`crate::proto`]. The limits protect a node from peers that announce huge messages:
//! a frame longer than the limit is refused before any of it is read, and a frame within
//! the limit is read into a buffer that grows with the bytes that actually arrive, never
//! allocated from the announced length (a peer that announces 24 MiB and sends one byte
//! costs this node a few kilobytes, not 24 MiB).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// Reads and writes `u32` big-endian length-prefixed byte strings.
#[derive(Clone, Debug)]
pub struct BytesCodec {
    max_request: usize,
    max_response: usize,
}

impl BytesCodec {
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
        }
    }
}

/// The buffer a frame starts with; it grows (doubling) only as bytes arrive.
const INITIAL_FRAME_BUFFER: usize = 8 * 1024;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let announced = u64::from(u32::from_be_bytes(len));
    if announced > limit as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {announced} bytes exceeds the {limit}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity(INITIAL_FRAME_BUFFER.min(limit));
    io.take(announced).read_to_end(&mut buf).await?;
    if buf.len() as u64 != announced {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the stream ended after {} of {announced} announced bytes",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
    limit: usize,
) -> io::Result<()> {
    if data.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the {limit}-byte limit",
                data.len()
            ),
        ));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await?;
    io.close().await
}

impl Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A reader that serves fixed bytes and records the largest buffer it was asked to
    /// fill: a codec that allocated from the length prefix hands it a buffer that large.
    struct SpyReader {
        data: Vec<u8>,
        at: usize,
        largest_read: usize,
        bytes_served: usize,
    }

    impl SpyReader {
        fn new(data: Vec<u8>) -> Self {
            Self {
                data,
                at: 0,
                largest_read: 0,
                bytes_served: 0,
            }
        }
    }

    impl AsyncRead for SpyReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.largest_read = self.largest_read.max(buf.len());
            let n = buf.len().min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            self.bytes_served += n;
            Poll::Ready(Ok(n))
        }
    }

    const LIMIT: usize = 24 * 1024 * 1024;

    #[test]
    fn a_huge_length_prefix_followed_by_one_byte_does_not_allocate_the_announced_size() {
        let mut data = (LIMIT as u32).to_be_bytes().to_vec();
        data.push(7);
        let mut reader = SpyReader::new(data);
        let err = futures::executor::block_on(read_frame(&mut reader, LIMIT)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            reader.largest_read <= 64 * 1024,
            "asked to fill a buffer of {} bytes for a frame of which 1 byte arrived",
            reader.largest_read
        );
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_reading_its_body() {
        let mut data = ((LIMIT + 1) as u32).to_be_bytes().to_vec();
        data.extend(vec![0u8; 1024]);
        let mut reader = SpyReader::new(data);
        let err = futures::executor::block_on(read_frame(&mut reader, LIMIT)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(reader.bytes_served, 4, "only the length prefix was read");
        // And the largest announcement a u32 can make is refused the same way.
        let mut reader = SpyReader::new(u32::MAX.to_be_bytes().to_vec());
        assert!(futures::executor::block_on(read_frame(&mut reader, LIMIT)).is_err());
    }

    #[test]
    fn frames_within_the_limit_round_trip_whatever_their_size() {
        for size in [0usize, 1, 8191, 8192, 8193, 300_000] {
            let body: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut framed = futures::io::Cursor::new(Vec::new());
            futures::executor::block_on(write_frame(&mut framed, &body, LIMIT)).unwrap();
            let mut reader = SpyReader::new(framed.into_inner());
            let read = futures::executor::block_on(read_frame(&mut reader, LIMIT)).unwrap();
            assert_eq!(read, body);
        }
    }
}
