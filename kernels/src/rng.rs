//! Counter-based random numbers: splitmix64.
//!
//! [`keyed`] maps `(seed, index)` to a 64-bit value with no state carried from one
//! index to the next, so a kernel that draws its `i`-th sample from `keyed(seed, i)`
//! gives the same answer however the index space is cut into chunks. [`SplitMix64`]
//! is the sequential generator built on the same mixer, used for seeded test inputs.

/// The splitmix64 increment (the golden ratio in 64-bit fixed point).
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 output function: a bijective avalanche mix of one 64-bit word.
///
/// ```
/// use shmproc_kernels::rng::mix64;
/// assert_eq!(mix64(0), 0);
/// assert_ne!(mix64(1), mix64(2));
/// ```
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `index`-th output of the splitmix64 stream that starts at `seed`: equal to
/// the `index + 1`-th call of [`SplitMix64::next_u64`] on `SplitMix64::new(seed)`,
/// computed in O(1).
///
/// ```
/// use shmproc_kernels::rng::{keyed, SplitMix64};
/// let mut g = SplitMix64::new(7);
/// g.next_u64();
/// assert_eq!(keyed(7, 1), g.next_u64());
/// ```
#[inline]
pub fn keyed(seed: u64, index: u64) -> u64 {
    mix64(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Sequential splitmix64 generator (Steele, Lea and Flood, 2014).
///
/// ```
/// use shmproc_kernels::rng::SplitMix64;
/// let mut a = SplitMix64::new(1);
/// let mut b = SplitMix64::new(1);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// A uniform integer in `0..bound` (`bound > 0`), by multiply-shift; the bias
    /// is below `bound / 2^64`, irrelevant for test inputs.
    ///
    /// # Panics
    /// If `bound` is 0.
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Maps 64 random bits to a uniform `f64` in `[0, 1)` (the top 53 bits).
///
/// ```
/// assert_eq!(shmproc_kernels::rng::unit_f64(0), 0.0);
/// assert!(shmproc_kernels::rng::unit_f64(u64::MAX) < 1.0);
/// ```
#[inline]
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_splitmix_values() {
        // Reference values of splitmix64 seeded with 0 (from the original C code).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(g.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn keyed_matches_stream() {
        let mut g = SplitMix64::new(12345);
        for i in 0..100 {
            assert_eq!(keyed(12345, i), g.next_u64());
        }
    }

    #[test]
    fn below_stays_in_bounds() {
        let mut g = SplitMix64::new(3);
        for bound in [1u64, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(g.below(bound) < bound);
            }
        }
    }
}
