//! Lazy `imap` / `imap_unordered`.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(feature = "async")]
use super::core::AsyncWaiting;
use super::core::{lock, Outcome, Sink, Stream, TaskMeta};
use super::result::clone_error;
use super::Pool;
use crate::error::Result;
use crate::process::spawn::FnId;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: yields
/// `Result<R>` per input item. It pulls input items only to keep at most two
/// chunks per worker in flight.
///
/// With the `async` cargo feature, [`IMap::into_stream`] turns it into a
/// [`futures_core::Stream`](https://docs.rs/futures-core/latest/futures_core/stream/trait.Stream.html)
/// of the same items, woken by the pool's supervisor thread, so any executor
/// can drive it (a separate type, so that `Iterator` and `StreamExt`
/// methods of the same names never clash).
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    input: I,
    fn_id: FnId,
    chunksize: usize,
    /// Time limit of each chunk.
    limit: Option<std::time::Duration>,
    ordered: bool,
    stream: Arc<Stream>,
    window: usize,
    submitted: usize,
    consumed: usize,
    next_chunk: usize,
    exhausted: bool,
    buffer: VecDeque<R>,
    failed: bool,
    /// Set while polled as a stream.
    #[cfg(feature = "async")]
    waiting: Option<AsyncWaiting>,
    _r: PhantomData<fn() -> R>,
}

impl<I: Iterator, R> fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("submitted", &self.submitted)
            .field("consumed", &self.consumed)
            .finish()
    }
}

impl<'p, I, R> IMap<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(crate) fn new(
        pool: &'p Pool,
        input: I,
        fn_id: FnId,
        chunksize: usize,
        limit: Option<std::time::Duration>,
        ordered: bool,
    ) -> Self {
        IMap {
            pool,
            input,
            fn_id,
            chunksize: chunksize.max(1),
            limit,
            ordered,
            stream: Stream::new(false),
            window: 2 * pool.processes().max(1),
            submitted: 0,
            consumed: 0,
            next_chunk: 0,
            exhausted: false,
            buffer: VecDeque::new(),
            failed: false,
            #[cfg(feature = "async")]
            waiting: None,
            _r: PhantomData,
        }
    }

    /// Keeps up to `chunks` chunks in flight instead of the default two per
    /// worker: more read-ahead (and memory) for fewer stalls when each chunk
    /// is short and the consumer is slow to hand out the next one.
    ///
    /// # Panics
    /// If called after iteration has started.
    pub fn window(mut self, chunks: usize) -> Self {
        assert_eq!(self.submitted, 0, "IMap::window after iteration started");
        self.window = chunks.max(1);
        self
    }

    /// Chunks submitted and not yet taken by the consumer.
    pub fn in_flight(&self) -> usize {
        self.submitted - self.consumed
    }

    fn top_up(&mut self) -> Result<()> {
        while !self.exhausted && self.in_flight() < self.window {
            let chunk: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                self.exhausted = true;
                self.stream.set_total(self.submitted);
                break;
            }
            let bytes = postcard::to_stdvec(&chunk)?;
            let meta = TaskMeta {
                first_item: Some((self.submitted * self.chunksize) as u64),
                limit: self.limit,
                ..TaskMeta::new()
            };
            self.pool.shared.submit(
                self.fn_id,
                bytes,
                Sink::Stream(Arc::clone(&self.stream), self.submitted),
                meta,
            )?;
            self.submitted += 1;
        }
        Ok(())
    }

    /// Takes a delivered chunk's items into the buffer; its error, if any.
    fn absorb(&mut self, outcome: Outcome) -> Option<Result<R>> {
        self.consumed += 1;
        self.next_chunk += 1;
        match outcome {
            Ok(bytes) => match postcard::from_bytes::<Vec<R>>(&bytes) {
                Ok(v) => {
                    self.buffer.extend(v);
                    None
                }
                Err(e) => Some(Err(e.into())),
            },
            Err(e) => Some(Err(clone_error(&e))),
        }
    }

    /// What `next` returns without waiting: `Some(answer)`, or `None` when
    /// the next item needs a chunk that has not come yet.
    fn step(&mut self) -> Option<Option<Result<R>>> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(Some(Ok(r)));
            }
            if self.failed {
                return Some(None);
            }
            if let Err(e) = self.top_up() {
                self.failed = true;
                return Some(Some(Err(e)));
            }
            if self.exhausted && self.consumed == self.submitted {
                return Some(None);
            }
            let outcome = self.take_chunk()?;
            if let Some(err) = self.absorb(outcome) {
                return Some(Some(err));
            }
        }
    }

    fn take_chunk(&mut self) -> Option<Outcome> {
        let mut st = lock(&self.stream.state);
        let key = if self.ordered {
            st.done
                .contains_key(&self.next_chunk)
                .then_some(self.next_chunk)
        } else {
            st.done.keys().next().copied()
        }?;
        st.done.remove(&key)
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(answer) = self.step() {
                return answer;
            }
            let mut got = None;
            let shared = Arc::clone(&self.pool.shared);
            let r = shared.wait_until(None, || {
                got = self.take_chunk();
                got.is_some()
            });
            if let Err(e) = r {
                self.failed = true;
                return Some(Err(e));
            }
            if let Some(outcome) = got {
                if let Some(err) = self.absorb(outcome) {
                    return Some(err);
                }
            }
        }
    }
}

/// Nothing of an `IMap` is ever pinned in place (items are moved out of its
/// buffer), so it is `Unpin` whenever its input iterator is.
impl<I: Iterator + Unpin, R> Unpin for IMap<'_, I, R> {}

/// An [`IMap`] consumed as a [`futures_core::Stream`] (`async` feature):
/// see [`IMap::into_stream`].
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct IMapStream<'p, I: Iterator, R>(IMap<'p, I, R>);

#[cfg(feature = "async")]
impl<'p, I: Iterator, R> IMap<'p, I, R> {
    /// This map as a [`futures_core::Stream`] of the same items, in the same
    /// order (`async` feature). Polling never blocks: a pending poll leaves
    /// the waker to the pool's supervisor thread.
    ///
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// use futures_core::Stream;
    /// fn is_stream<S: Stream<Item = shmproc::Result<u64>>>(_: &S) {}
    /// let pool = shmproc::Pool::new(1)?;
    /// let s = pool.imap(|x: u64| x * 2, 0..10u64).into_stream();
    /// is_stream(&s);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_stream(self) -> IMapStream<'p, I, R> {
        IMapStream(self)
    }
}

#[cfg(feature = "async")]
impl<I, R> futures_core::Stream for IMapStream<'_, I, R>
where
    I: Iterator + Unpin,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;
        let this = &mut self.get_mut().0;
        loop {
            if let Some(answer) = this.step() {
                if answer.is_none() {
                    this.waiting = None;
                }
                return Poll::Ready(answer);
            }
            if this.pool.shared.collect(false) > 0 {
                continue;
            }
            this.stream.set_waker(cx.waker());
            if this.waiting.is_none() {
                this.waiting = Some(AsyncWaiting::new(&this.pool.shared));
            }
            // A chunk delivered between the look and the waker being set.
            if let Some(outcome) = this.take_chunk() {
                if let Some(err) = this.absorb(outcome) {
                    return Poll::Ready(Some(err));
                }
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl<I: Iterator, R> IMap<'_, I, R> {
    /// Stops the map now: queued chunks are dropped and the workers running
    /// chunks of it are killed (and replaced). Returns once nothing of it
    /// runs; the iterator then yields nothing more.
    pub fn cancel(&mut self) {
        self.exhausted = true;
        self.failed = true;
        self.pool
            .shared
            .cancel_stream(&self.stream, "cancelled by IMap::cancel");
    }
}

/// Dropping an unfinished map withdraws its queued chunks and waits for the
/// running ones to finish (use [`IMap::cancel`] to kill them instead), so no
/// chunk of it runs after the iterator is gone.
impl<I: Iterator, R> Drop for IMap<'_, I, R> {
    fn drop(&mut self) {
        let unfinished = self.submitted > lock(&self.stream.state).delivered;
        if unfinished {
            self.pool
                .shared
                .drain_stream(&self.stream, "the imap iterator was dropped");
        }
    }
}

impl<I, R> FusedIterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
}
