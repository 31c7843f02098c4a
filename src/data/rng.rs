//! splitmix64 (Steele, Lea & Flood, 2014; Vigna's reference constants): the one seeded mixing
//! function and tiny generator of the crate's data code.
//!
//! [`splitmix64`] orders the rows of every subset and split (see `split`), so its output must never
//! change: the same seed must give the same rows on every platform. [`SplitMix64`] is the plain
//! generator built on it (the fuzz tests draw from it).
//!
//! What it leaves out: anything statistical (ranges, floats, shuffles) and model initialisation,
//! which uses `rand_chacha`.

/// The golden-ratio increment of splitmix64's state.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output for state `x`: adds the golden-ratio increment, then mixes
/// (`z ^ z >> 30`, `× 0xBF58476D1CE4E5B9`, `z ^ z >> 27`, `× 0x94D049BB133111EB`, `z ^ z >> 31`).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded splitmix64 generator: the same seed gives the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.state);
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // Vigna's splitmix64.c from seed 0 (also `SplittableRandom` in Java).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
