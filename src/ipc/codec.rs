//! How values become the bytes of a message, and back.
//!
//! [`Message`] is implemented
//! - for every `T: Serialize + DeserializeOwned`, through postcard (compact,
//!   varint integers): strings, tuples, enums, `Vec`s, and the handles of
//!   queues, pipes, locks and arrays, which serialize as segment references and
//!   re-attach on the other side;
//! - for [`Raw<T>`], a `Pod` value sent as its bytes (no encoding step);
//! - for [`Pods<T>`], a `Vec` of `Pod` values sent as one block of bytes (a
//!   memcpy each way; `Pods<u8>` is received without any copy after the ring).

use std::cell::RefCell;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A value that can travel through a [`Queue`](super::Queue) or a
/// [`Connection`](super::Connection).
///
/// ```
/// use shmproc::ipc::{Message, Pods, Raw};
///
/// let mut scratch = Vec::new();
/// let bytes = ("hi".to_string(), 7u32).encode(&mut scratch)?.to_vec();
/// assert_eq!(<(String, u32)>::decode(&mut bytes.clone())?, ("hi".into(), 7));
///
/// let v = Pods(vec![1.5f64, 2.5]);
/// let mut bytes = v.encode(&mut scratch)?.to_vec();
/// assert_eq!(bytes.len(), 16); // raw bytes, no framing
/// assert_eq!(Pods::<f64>::decode(&mut bytes)?.0, vec![1.5, 2.5]);
///
/// let mut bytes = Raw(7u64).encode(&mut scratch)?.to_vec();
/// assert_eq!(Raw::<u64>::decode(&mut bytes)?.0, 7);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub trait Message: Sized {
    /// The bytes of `self`: either borrowed from `self` (Pod types) or written
    /// into `scratch` (which the caller reuses between calls).
    ///
    /// # Errors
    /// [`Error::Codec`] if the value cannot be serialized.
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8]>;

    /// Rebuilds a value from the bytes of one message. May take the buffer
    /// (`std::mem::take`) to avoid a copy.
    ///
    /// # Errors
    /// [`Error::Codec`] if the bytes are not a valid encoding.
    fn decode(bytes: &mut Vec<u8>) -> Result<Self>;
}

impl<T: Serialize + DeserializeOwned> Message for T {
    fn encode<'a>(&'a self, scratch: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        scratch.clear();
        let v = std::mem::take(scratch);
        *scratch = postcard::to_extend(self, v)?;
        Ok(scratch)
    }

    fn decode(bytes: &mut Vec<u8>) -> Result<Self> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// A `Pod` value sent as its raw bytes.
///
/// ```
/// use shmproc::ipc::{Queue, Raw};
///
/// let q = Queue::<Raw<[u32; 4]>>::new()?;
/// q.put(&Raw([1, 2, 3, 4]))?;
/// assert_eq!(q.get()?.0, [1, 2, 3, 4]);
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Raw<T: Pod>(pub T);

impl<T: Pod> Message for Raw<T> {
    #[inline]
    fn encode<'a>(&'a self, _scratch: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        Ok(bytemuck::bytes_of(&self.0))
    }

    #[inline]
    fn decode(bytes: &mut Vec<u8>) -> Result<Self> {
        bytemuck::try_pod_read_unaligned(bytes)
            .map(Raw)
            .map_err(|e| {
                Error::Codec(format!(
                    "{} bytes are not a {}: {e}",
                    bytes.len(),
                    std::any::type_name::<T>()
                ))
            })
    }
}

/// A vector of `Pod` values sent as one block of bytes.
///
/// ```
/// use shmproc::ipc::{Queue, Pods};
///
/// let q = Queue::<Pods<f32>>::new()?;
/// q.put(&Pods(vec![0.5; 1000]))?;
/// assert_eq!(q.get()?.0, vec![0.5; 1000]);
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pods<T: Pod>(pub Vec<T>);

impl<T: Pod> Message for Pods<T> {
    #[inline]
    fn encode<'a>(&'a self, _scratch: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        Ok(bytemuck::cast_slice(&self.0))
    }

    fn decode(bytes: &mut Vec<u8>) -> Result<Self> {
        let size = std::mem::size_of::<T>();
        if size == 0 || !bytes.len().is_multiple_of(size) {
            return Err(Error::Codec(format!(
                "{} bytes are not a whole number of {}",
                bytes.len(),
                std::any::type_name::<T>()
            )));
        }
        let owned = std::mem::take(bytes);
        match bytemuck::allocation::try_cast_vec::<u8, T>(owned) {
            Ok(v) => Ok(Pods(v)),
            // Alignment differs from u8's: copy into a Vec<T>.
            Err((_, owned)) => {
                let v = bytemuck::allocation::pod_collect_to_vec::<u8, T>(&owned);
                *bytes = owned;
                Ok(Pods(v))
            }
        }
    }
}

thread_local! {
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes `v` with a per-thread scratch buffer and hands the bytes to `f`.
pub(crate) fn with_encoded<T: Message, R>(v: &T, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    ENCODE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(v.encode(&mut scratch)?),
        // Re-entered (a Serialize impl that itself sends): use a fresh buffer.
        Err(_) => f(v.encode(&mut Vec::new())?),
    })
}

/// Runs `f` with a per-thread receive buffer, then decodes what it left there.
pub(crate) fn with_decoded<T: Message>(f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<T> {
    DECODE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            f(&mut buf)?;
            let r = T::decode(&mut buf);
            // Don't keep a huge buffer alive per thread.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => {
            let mut buf = Vec::new();
            f(&mut buf)?;
            T::decode(&mut buf)
        }
    })
}
