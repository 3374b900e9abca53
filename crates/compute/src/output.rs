//! Captured stdout and stderr of a guest, bounded, with the most recent lines kept for logs.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A bounded capture of one output stream. Bytes beyond `limit` are refused, which the
/// guest sees as a failed write, and the overflow is remembered so the host can explain
/// why the run failed. Cheap to clone; clones share the buffer.
#[derive(Clone, Debug)]
pub struct OutputCapture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    /// Everything written so far, up to `keep` bytes (the oldest bytes are dropped first).
    buffer: Vec<u8>,
    keep: usize,
    total: u64,
    limit: u64,
    overflowed: bool,
}

impl OutputCapture {
    /// A capture that refuses bytes beyond `limit` in total and keeps at most the last
    /// `keep` bytes.
    pub fn new(limit: u64, keep: usize) -> OutputCapture {
        OutputCapture {
            inner: Arc::new(Mutex::new(Captured {
                keep,
                limit,
                ..Captured::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The bytes kept so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().buffer.clone()
    }

    /// Takes the bytes kept so far, leaving the buffer empty (the total is unchanged).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().buffer)
    }

    /// Bytes written in total, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Whether the guest tried to write past the limit.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.lock();
        let room = c.limit.saturating_sub(c.total);
        if room == 0 && !buf.is_empty() {
            c.overflowed = true;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "output limit reached",
            ));
        }
        let n = (buf.len() as u64).min(room) as usize;
        c.buffer.extend_from_slice(&buf[..n]);
        c.total += n as u64;
        if c.buffer.len() > c.keep {
            let excess = c.buffer.len() - c.keep;
            c.buffer.drain(..excess);
        }
        Ok(n)
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for OutputCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn refuses_bytes_past_the_limit_and_keeps_the_tail() {
        let c = OutputCapture::new(10, 4);
        assert_eq!(c.write(b"abcdef").unwrap(), 6);
        assert_eq!(c.contents(), b"cdef");
        assert_eq!(c.write(b"ghijkl").unwrap(), 4);
        assert!(c.write(b"x").is_err());
        assert!(c.overflowed());
        assert_eq!(c.total(), 10);
        assert_eq!(c.contents(), b"ghij");
    }
}
