//! Helpers shared by the seed examples (a module, not an example: cargo only
//! builds `examples/*.rs` and `examples/*/main.rs` as programs).
#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// `secs` seconds times the float in `SHMPROC_SLEEP_SCALE` (default 1), so that
/// tests run the examples fast.
pub fn scaled(secs: f64) -> Duration {
    let scale = std::env::var("SHMPROC_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs * scale)
}

/// A random float in `[0, 1)`, like Python's `random.random()` (seeded per
/// process by the standard library's `RandomState`).
pub fn random(seed: u64) -> f64 {
    (RandomState::new().hash_one(seed) >> 11) as f64 / (1u64 << 53) as f64
}
