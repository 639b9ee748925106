//! The error type of the kernel API.

use std::fmt;

/// Why a kernel could not run (see [`run_chunk`](crate::run_chunk)).
///
/// ```
/// use shmproc_kernels::{KernelError, Params};
/// let err = Params::new().with("times", "many").uint::<u32>("times").unwrap_err();
/// assert!(matches!(err, KernelError::BadParam { .. }));
/// assert_eq!(
///     err.to_string(),
///     "bad value \"many\" for parameter times: expected an unsigned integer up to u32"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KernelError {
    /// No kernel of this name is registered.
    UnknownKernel(String),
    /// No parameter of this name exists.
    UnknownParam {
        /// The name given.
        name: String,
        /// The parameters the kernel declares, comma-separated.
        known: String,
    },
    /// A parameter the kernel reads has no value (it is not among the
    /// kernel's [`ParamSpec`](crate::ParamSpec)s).
    MissingParam(String),
    /// The kernel failed for a reason of its own.
    Failed {
        /// Kernel name.
        kernel: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A parameter value could not be parsed or is out of range.
    BadParam {
        /// Parameter name.
        name: String,
        /// The offending value, as given (or formatted).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The kernel does not take (or produce) this element type.
    WrongDtype {
        /// Kernel name.
        kernel: &'static str,
        /// What the kernel takes.
        expected: String,
        /// What it was given.
        found: String,
    },
    /// Slice lengths disagree with the chunk range or the accumulator size.
    LengthMismatch {
        /// Kernel name.
        kernel: &'static str,
        /// Which slice.
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// The index range runs past what the kernel's parameters allow (e.g. past
    /// the last pixel of the image).
    RangeTooLarge {
        /// Kernel name.
        kernel: &'static str,
        /// End of the requested range.
        end: usize,
        /// Largest allowed end.
        limit: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKernel(name) => write!(f, "unknown kernel {name:?}"),
            Self::UnknownParam { name, known } => {
                write!(f, "unknown parameter {name:?} (this kernel takes: {known})")
            }
            Self::MissingParam(name) => write!(f, "parameter {name} has no value"),
            Self::Failed { kernel, message } => write!(f, "kernel {kernel}: {message}"),
            Self::BadParam {
                name,
                value,
                reason,
            } => write!(f, "bad value {value:?} for parameter {name}: {reason}"),
            Self::WrongDtype {
                kernel,
                expected,
                found,
            } => write!(f, "kernel {kernel} takes {expected}, not {found}"),
            Self::LengthMismatch {
                kernel,
                what,
                expected,
                found,
            } => write!(
                f,
                "kernel {kernel}: {what} has {found} elements, expected {expected}"
            ),
            Self::RangeTooLarge { kernel, end, limit } => write!(
                f,
                "kernel {kernel}: index range ends at {end}, past the limit {limit} set by its parameters"
            ),
        }
    }
}

impl std::error::Error for KernelError {}
