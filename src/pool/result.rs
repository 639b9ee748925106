//! `AsyncResult`: the handle of a task (or a whole map) running in a pool.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

#[cfg(feature = "async")]
use super::core::AsyncWaiting;
use super::core::{lock, Cell, Outcome, Shared, Stream};
use crate::error::{Error, Result};

/// Decodes a finished map's chunk results into the final value.
pub(crate) type MapDecode<R> = fn(&BTreeMap<usize, Outcome>) -> Result<R>;

pub(crate) enum Kind<R> {
    Cell(Arc<Cell>),
    /// A map: the chunk results concatenated in order.
    Map(Arc<Stream>, MapDecode<R>),
}

/// The pending result of [`Pool::apply_async`](super::Pool::apply_async) or
/// [`Pool::map_async`](super::Pool::map_async) (then `R` is the `Vec` of
/// results in input order), like Python's `AsyncResult`.
///
/// Waiting for it also collects other finished tasks of the pool, so results
/// arrive without a thread hop when somebody is waiting.
///
/// With the `async` cargo feature it is a [`Future`](std::future::Future)
/// of `Result<R>`, for any executor (the pool's supervisor thread wakes it;
/// no runtime is needed):
///
/// ```
/// # #[cfg(feature = "async")] {
/// use std::future::Future;
/// fn is_future<F: Future<Output = shmproc::Result<u64>>>(_: &F) {}
/// let pool = shmproc::Pool::new(1)?;
/// let r = pool.apply_async(|x: u64| x + 1, 41)?;
/// is_future(&r);
/// # }
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct AsyncResult<R> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) kind: Kind<R>,
    /// Set while polled as a future.
    #[cfg(feature = "async")]
    pub(crate) waiting: Option<AsyncWaiting>,
    pub(crate) _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        match &self.kind {
            Kind::Cell(c) => c.is_ready(),
            Kind::Map(s, _) => s.is_complete(),
        }
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<()> {
        self.shared.wait_until(deadline, || self.ready())
    }

    /// Waits until the task has finished (successfully or not: the task's
    /// own error comes from [`get`](AsyncResult::get)).
    ///
    /// # Errors
    /// What stopped the wait itself: [`Error::PoolBroken`] and the like.
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None)
    }

    /// Waits at most `timeout` for the task to finish.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it has not; as [`wait`](AsyncResult::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Cancels the task (for a map: every chunk not finished yet). A task
    /// still queued is dropped; a running one has its worker killed (and
    /// replaced; other tasks that worker held are run again, without
    /// counting against their retries). Returns once nothing of it runs any
    /// more, with `true` if the result is [`Error::Cancelled`] (or, for a map,
    /// a chunk was cancelled) and `false` if it had already finished.
    ///
    /// Like `get`, it must not be called from a callback of this pool for a
    /// task that has a callback itself: that callback queues behind the one
    /// running, and the wait never ends.
    pub fn cancel(&self) -> bool {
        const WHY: &str = "cancelled by AsyncResult::cancel";
        match &self.kind {
            Kind::Cell(c) => {
                if c.is_ready() {
                    return false;
                }
                self.shared.cancel_cell(c, WHY);
                let _ = self.shared.wait_until(None, || c.is_ready());
                matches!(&*lock(&c.value), Some(Err(Error::Cancelled(_))))
            }
            Kind::Map(s, _) => {
                if s.is_complete() {
                    return false;
                }
                self.shared.cancel_stream(s, WHY);
                let _ = self.shared.wait_until(None, || s.is_complete());
                lock(&s.state)
                    .done
                    .values()
                    .any(|o| matches!(o, Err(Error::Cancelled(_))))
            }
        }
    }

    /// How many times the task (for a map: its chunks, added up) was run again
    /// because its worker died. A retried task's side effects may have
    /// happened more than once.
    pub fn retries(&self) -> u32 {
        match &self.kind {
            // Relaxed: a statistic.
            Kind::Cell(c) => c.retries.load(std::sync::atomic::Ordering::Relaxed),
            Kind::Map(s, _) => lock(&s.state).retries,
        }
    }

    /// Whether the task finished without error.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if it has not finished (Python raises
    /// `ValueError` there).
    pub fn successful(&self) -> Result<bool> {
        if !self.ready() {
            return Err(Error::InvalidState("the result is not ready".into()));
        }
        Ok(match &self.kind {
            Kind::Cell(c) => matches!(&*lock(&c.value), Some(Ok(_))),
            Kind::Map(s, _) => lock(&s.state).done.values().all(|o| o.is_ok()),
        })
    }
}

/// Returns a copy of an error (errors are not `Clone`: the OS ones keep their
/// `io::Error`).
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::TaskPanicked(m) => Error::TaskPanicked(m.clone()),
        Error::WorkerLost { pid, signal, code } => Error::WorkerLost {
            pid: *pid,
            signal: *signal,
            code: *code,
        },
        Error::Cancelled(m) => Error::Cancelled(m.clone()),
        Error::TimeLimit { limit, pid } => Error::TimeLimit {
            limit: *limit,
            pid: *pid,
        },
        Error::PoolBroken(m) => Error::PoolBroken(m.clone()),
        Error::Codec(m) => Error::Codec(m.clone()),
        Error::InvalidState(m) => Error::InvalidState(m.clone()),
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::Timeout => Error::Timeout,
        other => Error::InvalidState(other.to_string()),
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    fn value(&self) -> Result<R> {
        match &self.kind {
            Kind::Cell(c) => match &*lock(&c.value) {
                Some(Ok(bytes)) => Ok(postcard::from_bytes(bytes)?),
                Some(Err(e)) => Err(clone_error(e)),
                None => Err(Error::InvalidState("the result is not ready".into())),
            },
            Kind::Map(s, decode) => {
                let st = lock(&s.state);
                if st.total != Some(st.delivered) {
                    return Err(Error::InvalidState("the result is not ready".into()));
                }
                if let Some(e) = &st.first_error {
                    // The failure that stopped the map, not a cancellation it caused.
                    return Err(clone_error(e));
                }
                decode(&st.done)
            }
        }
    }

    /// Waits for the result and returns it; a task that panicked returns
    /// [`Error::TaskPanicked`], one whose worker died (after its retries)
    /// [`Error::WorkerLost`].
    pub fn get(&self) -> Result<R> {
        self.wait_deadline(None)?;
        self.value()
    }

    /// Like [`get`](AsyncResult::get), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        self.wait_deadline(Instant::now().checked_add(timeout))?;
        self.value()
    }
}

/// Concatenates the decoded chunk results in chunk order; the first error wins.
pub(crate) fn decode_chunks<R: DeserializeOwned>(
    done: &BTreeMap<usize, Outcome>,
) -> Result<Vec<R>> {
    let mut out = Vec::new();
    for o in done.values() {
        match o {
            Ok(bytes) => out.extend(postcard::from_bytes::<Vec<R>>(bytes)?),
            Err(e) => return Err(clone_error(e)),
        }
    }
    Ok(out)
}

#[cfg(feature = "async")]
impl<R: DeserializeOwned> std::future::Future for AsyncResult<R> {
    type Output = Result<R>;

    /// Ready with what [`get`](AsyncResult::get) returns. Polling collects
    /// the results that are in; otherwise the waker is woken by the pool's
    /// supervisor when the result arrives.
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<R>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ready() {
            this.waiting = None;
            return Poll::Ready(this.value());
        }
        this.shared.collect(false);
        match &this.kind {
            Kind::Cell(c) => c.set_waker(cx.waker()),
            Kind::Map(s, _) => s.set_waker(cx.waker()),
        }
        if this.waiting.is_none() {
            this.waiting = Some(AsyncWaiting::new(&this.shared));
        }
        // Delivered between the first look and the waker being set.
        if this.ready() {
            this.waiting = None;
            return Poll::Ready(this.value());
        }
        Poll::Pending
    }
}
