//! Lazy `imap` / `imap_unordered`.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{lock, Sink, Stream, TaskMeta};
use super::result::clone_error;
use super::Pool;
use crate::error::Result;
use crate::process::spawn::FnId;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: yields
/// `Result<R>` per input item. It pulls input items only to keep at most two
/// chunks per worker in flight.
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    input: I,
    fn_id: FnId,
    chunksize: usize,
    ordered: bool,
    stream: Arc<Stream>,
    window: usize,
    submitted: usize,
    consumed: usize,
    next_chunk: usize,
    exhausted: bool,
    buffer: VecDeque<R>,
    failed: bool,
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
        ordered: bool,
    ) -> Self {
        IMap {
            pool,
            input,
            fn_id,
            chunksize: chunksize.max(1),
            ordered,
            stream: Stream::new(false),
            window: 2 * pool.processes().max(1),
            submitted: 0,
            consumed: 0,
            next_chunk: 0,
            exhausted: false,
            buffer: VecDeque::new(),
            failed: false,
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

    fn take_chunk(&mut self) -> Option<super::core::Outcome> {
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
            if let Some(r) = self.buffer.pop_front() {
                return Some(Ok(r));
            }
            if self.failed {
                return None;
            }
            if let Err(e) = self.top_up() {
                self.failed = true;
                return Some(Err(e));
            }
            if self.exhausted && self.consumed == self.submitted {
                return None;
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
            let Some(outcome) = got else { continue };
            self.consumed += 1;
            self.next_chunk += 1;
            match outcome {
                Ok(bytes) => match postcard::from_bytes::<Vec<R>>(&bytes) {
                    Ok(v) => self.buffer.extend(v),
                    Err(e) => return Some(Err(e.into())),
                },
                Err(e) => return Some(Err(clone_error(&e))),
            }
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
