//! Kernel parameters: one plain `Copy` struct for every kernel.

use crate::KernelError;

/// Largest histogram bin count (keeps per-chunk accumulators small).
pub const MAX_BINS: u32 = 1 << 16;

/// Description of one parameter, for `--help` and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name used in `name=value` pairs.
    pub name: &'static str,
    /// Default value, formatted as it would be typed.
    pub default: &'static str,
    /// One-line description.
    pub help: &'static str,
}

/// Every kernel's parameters, with defaults. A kernel reads only the fields its
/// [`KernelInfo::params`](crate::KernelInfo::params) lists. Being `Copy` and made
/// of plain numbers, it travels to a worker process as its bytes (or, with the
/// `serde` feature, through any serde codec).
///
/// ```
/// use shmproc_kernels::Params;
/// let mut p = Params::default();
/// assert_eq!(p.times, 4);
/// p.set_pair("times=6").unwrap();
/// p.set("lo", "-1.5").unwrap();
/// assert_eq!((p.times, p.lo), (6, -1.5));
/// assert!(p.set_pair("times").is_err()); // no '='
/// assert!(p.set("nope", "1").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Params {
    /// power: number of squarings.
    pub times: u32,
    /// saxpy: the scalar `a` in `y = a*x + y`.
    pub a: f64,
    /// histogram: lower edge of the first bin (inclusive).
    pub lo: f64,
    /// histogram: upper edge of the last bin (exclusive).
    pub hi: f64,
    /// histogram: number of bins, 1 to [`MAX_BINS`].
    pub bins: u32,
    /// mandelbrot: image width in pixels.
    pub width: u32,
    /// mandelbrot: image height in pixels.
    pub height: u32,
    /// mandelbrot: iteration cap per pixel.
    pub max_iter: u32,
    /// monte_carlo_pi: stream seed.
    pub seed: u64,
    /// count_primes: the number that index 0 stands for (index `i` is `start + i`).
    pub start: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            times: 4,
            a: 2.0,
            lo: 0.0,
            hi: 1.0,
            bins: 16,
            width: 1024,
            height: 1024,
            max_iter: 256,
            seed: 42,
            start: 0,
        }
    }
}

/// Every parameter with its default and help line (defaults equal
/// `Params::default()`, which a test checks).
pub const ALL_PARAMS: &[ParamSpec] = &[
    P_TIMES, P_A, P_LO, P_HI, P_BINS, P_WIDTH, P_HEIGHT, P_MAX_ITER, P_SEED, P_START,
];

pub(crate) const P_TIMES: ParamSpec = ParamSpec {
    name: "times",
    default: "4",
    help: "number of squarings x -> x*x",
};
pub(crate) const P_A: ParamSpec = ParamSpec {
    name: "a",
    default: "2",
    help: "scalar a in y = a*x + y",
};
pub(crate) const P_LO: ParamSpec = ParamSpec {
    name: "lo",
    default: "0",
    help: "lower edge of the first bin (inclusive)",
};
pub(crate) const P_HI: ParamSpec = ParamSpec {
    name: "hi",
    default: "1",
    help: "upper edge of the last bin (exclusive)",
};
pub(crate) const P_BINS: ParamSpec = ParamSpec {
    name: "bins",
    default: "16",
    help: "number of equal-width bins (1 to 65536)",
};
pub(crate) const P_WIDTH: ParamSpec = ParamSpec {
    name: "width",
    default: "1024",
    help: "image width in pixels",
};
pub(crate) const P_HEIGHT: ParamSpec = ParamSpec {
    name: "height",
    default: "1024",
    help: "image height in pixels",
};
pub(crate) const P_MAX_ITER: ParamSpec = ParamSpec {
    name: "max_iter",
    default: "256",
    help: "iteration cap per pixel",
};
pub(crate) const P_SEED: ParamSpec = ParamSpec {
    name: "seed",
    default: "42",
    help: "seed of the counter-based random stream",
};
pub(crate) const P_START: ParamSpec = ParamSpec {
    name: "start",
    default: "0",
    help: "number that index 0 stands for: the range is [start, start + n)",
};

fn parse_uint<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, KernelError> {
    value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| bad(name, value, "expected an unsigned integer"))
}

fn parse_float(name: &str, value: &str) -> Result<f64, KernelError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(bad(name, value, "expected a finite number")),
    }
}

pub(crate) fn bad(name: &str, value: &str, reason: &str) -> KernelError {
    KernelError::BadParam {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Params {
    /// Sets one parameter from its textual value (`_` separators allowed in
    /// integers).
    ///
    /// # Errors
    /// [`KernelError::UnknownParam`] for a name not in [`ALL_PARAMS`],
    /// [`KernelError::BadParam`] for a value that does not parse.
    ///
    /// ```
    /// let mut p = shmproc_kernels::Params::default();
    /// p.set("bins", "1_000").unwrap();
    /// assert_eq!(p.bins, 1000);
    /// assert!(p.set("a", "inf").is_err());
    /// ```
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), KernelError> {
        match name {
            "times" => self.times = parse_uint(name, value)?,
            "a" => self.a = parse_float(name, value)?,
            "lo" => self.lo = parse_float(name, value)?,
            "hi" => self.hi = parse_float(name, value)?,
            "bins" => self.bins = parse_uint(name, value)?,
            "width" => self.width = parse_uint(name, value)?,
            "height" => self.height = parse_uint(name, value)?,
            "max_iter" => self.max_iter = parse_uint(name, value)?,
            "seed" => self.seed = parse_uint(name, value)?,
            "start" => self.start = parse_uint(name, value)?,
            _ => return Err(KernelError::UnknownParam(name.to_owned())),
        }
        Ok(())
    }

    /// Sets one parameter from a `name=value` pair.
    ///
    /// # Errors
    /// As [`Params::set`], and [`KernelError::BadParam`] when there is no `=`.
    ///
    /// ```
    /// let mut p = shmproc_kernels::Params::default();
    /// p.set_pair("max_iter=1000").unwrap();
    /// assert_eq!(p.max_iter, 1000);
    /// ```
    pub fn set_pair(&mut self, pair: &str) -> Result<(), KernelError> {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(pair, pair, "expected name=value"))?;
        self.set(name.trim(), value)
    }

    /// Default parameters updated by each `name=value` pair in turn.
    ///
    /// # Errors
    /// The first pair that [`Params::set_pair`] rejects.
    ///
    /// ```
    /// let p = shmproc_kernels::Params::from_pairs(["a=0.5", "seed=7"]).unwrap();
    /// assert_eq!((p.a, p.seed), (0.5, 7));
    /// ```
    pub fn from_pairs<I, S>(pairs: I) -> Result<Self, KernelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut p = Self::default();
        for pair in pairs {
            p.set_pair(pair.as_ref())?;
        }
        Ok(p)
    }

    /// The value of a parameter, formatted as [`Params::set`] accepts it.
    ///
    /// ```
    /// let p = shmproc_kernels::Params::default();
    /// assert_eq!(p.get("times").as_deref(), Some("4"));
    /// assert_eq!(p.get("nope"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "times" => self.times.to_string(),
            "a" => self.a.to_string(),
            "lo" => self.lo.to_string(),
            "hi" => self.hi.to_string(),
            "bins" => self.bins.to_string(),
            "width" => self.width.to_string(),
            "height" => self.height.to_string(),
            "max_iter" => self.max_iter.to_string(),
            "seed" => self.seed.to_string(),
            "start" => self.start.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_equal_default_params() {
        // Scramble, then restore from the documented defaults.
        let mut p = Params {
            times: 99,
            a: -7.0,
            bins: 3,
            seed: 1,
            ..Params::default()
        };
        for spec in ALL_PARAMS {
            p.set(spec.name, spec.default).unwrap();
            assert_eq!(
                p.get(spec.name).as_deref(),
                Some(spec.default),
                "{}",
                spec.name
            );
        }
        assert_eq!(p, Params::default());
    }

    #[test]
    fn parse_errors_name_the_parameter() {
        let mut p = Params::default();
        let e = p.set("width", "-3").unwrap_err();
        assert!(e.to_string().contains("width"), "{e}");
        assert_eq!(
            p.set_pair("bogus=1"),
            Err(KernelError::UnknownParam("bogus".into()))
        );
        assert!(matches!(
            p.set_pair("lo"),
            Err(KernelError::BadParam { .. })
        ));
        assert!(p.set("lo", "nan").is_err());
        assert!(p.set("times", "4294967296").is_err()); // u32 overflow
        assert_eq!(p, Params::default(), "failed sets must not change anything");
    }
}
