//! The other common worker: one that handles messages from a channel as they come.
//! [`inbox`] turns a receiver and an async handler into a [`Worker`] that is idle while the
//! channel is empty, busy while it handles a message, and done when the channel closes.

use std::future::Future;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{Progress, Step, Worker, WorkerError};

/// A channel a worker reads from.
#[async_trait::async_trait]
pub trait Source: Send + 'static {
    type Item: Send + 'static;

    /// The next message, or `None` once the channel has closed.
    async fn next(&mut self) -> Option<Self::Item>;
}

#[async_trait::async_trait]
impl<T: Send + 'static> Source for mpsc::Receiver<T> {
    type Item = T;

    async fn next(&mut self) -> Option<T> {
        self.recv().await
    }
}

/// A broadcast receiver that fell behind skips what it missed: the workers that read
/// broadcasts (registry changes, membership events) have another path (anti-entropy, the
/// next periodic pass) that covers what a lagging reader did not see.
#[async_trait::async_trait]
impl<T: Clone + Send + 'static> Source for broadcast::Receiver<T> {
    type Item = T;

    async fn next(&mut self) -> Option<T> {
        loop {
            match self.recv().await {
                Ok(item) => return Some(item),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a worker's broadcast channel lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A worker that handles each message of `source` with `handle`.
pub struct Inbox<S: Source, F> {
    name: String,
    source: S,
    pending: Option<S::Item>,
    handle: F,
    done: u64,
}

/// Builds an [`Inbox`] worker.
pub fn inbox<S, F, Fut>(name: impl Into<String>, source: S, handle: F) -> Inbox<S, F>
where
    S: Source,
    F: FnMut(S::Item) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send,
{
    Inbox {
        name: name.into(),
        source,
        pending: None,
        handle,
        done: 0,
    }
}

#[async_trait::async_trait]
impl<S, F, Fut> Worker for Inbox<S, F>
where
    S: Source,
    F: FnMut(S::Item) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn progress(&self) -> Progress {
        Progress {
            items_done: self.done,
            ..Progress::default()
        }
    }

    async fn work(&mut self, _shutdown: &CancellationToken) -> Result<Step, WorkerError> {
        let Some(item) = self.pending.take() else {
            return Ok(Step::Idle);
        };
        self.done = self.done.saturating_add(1);
        (self.handle)(item).await?;
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) -> Step {
        match self.source.next().await {
            Some(item) => {
                self.pending = Some(item);
                Step::Busy
            }
            None => Step::Done,
        }
    }
}

impl<S: Source, F> std::fmt::Debug for Inbox<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("name", &self.name)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
