//! A request body that gives up when the client stops sending.
//!
//! A client that declares a large body and then sends nothing would hold its connection,
//! its handler and whatever the handler reserved for as long as it likes. The clock only
//! runs while the handler is waiting for bytes: a handler that is busy elsewhere (a quorum
//! write of the previous chunk, say) does not use up the client's time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent nothing for the whole idle timeout.
    #[error("the client sent no request body bytes for {0:?}")]
    Idle(Duration),
    /// The connection failed or the client sent a malformed body.
    #[error("reading the request body failed")]
    Read(#[source] BoxError),
}

/// A body that fails with [`BodyError::Idle`] when no frame arrives for its idle timeout
/// while someone is waiting for one.
pub struct TimedBody<B> {
    inner: B,
    idle: Duration,
    /// Made on the first wait rather than with the body: most requests (every `GET`)
    /// have a body that is complete when read, and a timer per request would cost an
    /// allocation and a clock read for nothing.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether `deadline` counts down for the current wait. It is armed on the first
    /// `Pending` after a frame and disarmed by the next frame.
    armed: bool,
}

impl<B> std::fmt::Debug for TimedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("idle", &self.idle)
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl<B> TimedBody<B> {
    /// Wraps `inner` so that a wait for its next frame fails after `idle`.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: None,
            armed: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(|e| BodyError::Read(e.into()))))
            }
            Poll::Pending => {
                let deadline = match &mut this.deadline {
                    Some(deadline) => {
                        if !this.armed {
                            deadline.as_mut().reset(Instant::now() + this.idle);
                        }
                        deadline
                    }
                    None => this
                        .deadline
                        .insert(Box::pin(tokio::time::sleep(this.idle))),
                };
                this.armed = true;
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(this.idle)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Channel};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_its_idle_time_and_a_slow_one_does_not() {
        let (mut tx, body) = Channel::<Bytes>::new(4);
        let mut timed = TimedBody::new(body, Duration::from_secs(10));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Bytes every 6 s keep a 10 s idle timeout happy, however long the whole takes;
        // then the client stops sending but keeps the connection.
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                let _ = tx.send_data(Bytes::from_static(b"x")).await;
            }
            let _ = stop_rx.await;
            drop(tx);
        });
        for _ in 0..5 {
            let frame = timed.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let started = Instant::now();
        let err = timed.frame().await.unwrap().unwrap_err();
        assert!(matches!(err, BodyError::Idle(_)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let _ = stop_tx.send(());
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_before_the_first_read_does_not_count() {
        let (mut tx, body) = Channel::<Bytes>::new(4);
        let mut timed = TimedBody::new(body, Duration::from_secs(10));
        // The handler is busy for longer than the idle timeout before it reads.
        tokio::time::sleep(Duration::from_secs(30)).await;
        tx.send_data(Bytes::from_static(b"late")).await.unwrap();
        assert!(timed.frame().await.unwrap().is_ok());
    }
}
