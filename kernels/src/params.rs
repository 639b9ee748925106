//! Kernel parameters: `name=value` pairs, declared by each kernel
//! ([`ParamSpec`]) and read by it with typed getters.

use crate::KernelError;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One parameter a kernel reads: its name, default and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name, as in `--param name=value`.
    pub name: &'static str,
    /// Default value, as text.
    pub default: &'static str,
    /// One line for `shmproc kernels`.
    pub help: &'static str,
}

impl ParamSpec {
    /// A parameter called `name` with this default and help text.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self {
            name,
            default,
            help,
        }
    }
}

/// The parameters of one run: every parameter its kernel declares, with a
/// value (the default unless set). Values are kept as text and parsed by the
/// kernel's typed getters ([`Params::uint`], [`Params::float`],
/// [`Params::parse`]), so any kernel can declare any parameter.
///
/// ```
/// use shmproc_kernels::{ParamSpec, Params};
/// const SPECS: &[ParamSpec] = &[
///     ParamSpec::new("times", "4", "squarings"),
///     ParamSpec::new("a", "2", "scale"),
/// ];
/// let p = Params::resolve(SPECS, ["times=10"])?;
/// assert_eq!(p.uint::<u32>("times")?, 10);
/// assert_eq!(p.float("a")?, 2.0);
/// assert!(Params::resolve(SPECS, ["nope=1"]).is_err());
/// # Ok::<(), shmproc_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults of `specs`, overridden by `name=value` pairs.
    ///
    /// # Errors
    /// [`KernelError::UnknownParam`] for a name not in `specs` (the message
    /// lists the known ones), [`KernelError::BadParam`] for a pair without `=`
    /// or a name given twice.
    pub fn resolve<I, S>(specs: &[ParamSpec], pairs: I) -> Result<Self, KernelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut p = Params::defaults(specs);
        let mut given = std::collections::HashSet::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(pair, pair, "expected name=value"))?;
            let name = name.trim();
            if !specs.iter().any(|s| s.name == name) {
                let known: Vec<_> = specs.iter().map(|s| s.name).collect();
                return Err(KernelError::UnknownParam {
                    name: name.to_owned(),
                    known: if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
            }
            if !given.insert(name.to_owned()) {
                return Err(bad(name, value.trim(), "given twice"));
            }
            p.values.insert(name.to_owned(), value.trim().to_owned());
        }
        Ok(p)
    }

    /// The defaults of `specs`.
    pub fn defaults(specs: &[ParamSpec]) -> Self {
        Params {
            values: specs
                .iter()
                .map(|s| (s.name.to_owned(), s.default.to_owned()))
                .collect(),
        }
    }

    /// Sets `name` to `value` (text, parsed when read).
    pub fn set(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        self.values.insert(name.to_owned(), value.to_string());
        self
    }

    /// `self` with `name` set to `value`.
    ///
    /// ```
    /// use shmproc_kernels::Params;
    /// let p = Params::new().with("bins", 10);
    /// assert_eq!(p.uint::<u32>("bins")?, 10);
    /// # Ok::<(), shmproc_kernels::KernelError>(())
    /// ```
    pub fn with(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.set(name, value);
        self
    }

    /// The text of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every `(name, value)` pair, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `name` parsed as `T`.
    ///
    /// # Errors
    /// [`KernelError::MissingParam`] if not set, [`KernelError::BadParam`] if
    /// it does not parse (the message names `what` was expected).
    pub fn parse<T: FromStr>(&self, name: &str, what: &str) -> Result<T, KernelError> {
        let v = self
            .get(name)
            .ok_or_else(|| KernelError::MissingParam(name.to_owned()))?;
        v.parse()
            .map_err(|_| bad(name, v, &format!("expected {what}")))
    }

    /// `name` as an unsigned integer (`_` separators allowed: `1_000`).
    ///
    /// # Errors
    /// As [`Params::parse`].
    pub fn uint<T: FromStr>(&self, name: &str) -> Result<T, KernelError> {
        let v = self
            .get(name)
            .ok_or_else(|| KernelError::MissingParam(name.to_owned()))?;
        v.replace('_', "").parse().map_err(|_| {
            bad(
                name,
                v,
                &format!(
                    "expected an unsigned integer up to {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// `name` as a finite `f64`.
    ///
    /// # Errors
    /// As [`Params::parse`]; also for `inf` and `NaN`.
    pub fn float(&self, name: &str) -> Result<f64, KernelError> {
        let v: f64 = self.parse(name, "a finite number")?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(bad(name, &v.to_string(), "expected a finite number"))
        }
    }
}

/// A [`KernelError::BadParam`].
pub fn bad(name: &str, value: &str, reason: &str) -> KernelError {
    KernelError::BadParam {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::new("times", "4", ""),
        ParamSpec::new("a", "2", ""),
    ];

    #[test]
    fn defaults_then_overrides() {
        let p = Params::resolve(SPECS, ["a=-1.5", " times = 1_000 "]).unwrap();
        assert_eq!(p.uint::<u32>("times").unwrap(), 1000);
        assert_eq!(p.float("a").unwrap(), -1.5);
        let d = Params::resolve(SPECS, [""; 0]).unwrap();
        assert_eq!(d.uint::<u32>("times").unwrap(), 4);
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = Params::resolve(SPECS, ["x=1"]).unwrap_err().to_string();
        assert!(e.contains("\"x\"") && e.contains("times, a"), "{e}");
        let p = Params::resolve(SPECS, ["times=-3", "a=inf"]).unwrap();
        let e = p.uint::<u32>("times").unwrap_err().to_string();
        assert!(e.contains("times") && e.contains("-3"), "{e}");
        assert!(p.float("a").is_err());
        assert!(matches!(
            p.uint::<u32>("nope"),
            Err(KernelError::MissingParam(_))
        ));
        assert!(Params::resolve(SPECS, ["times"]).is_err());
    }
}
