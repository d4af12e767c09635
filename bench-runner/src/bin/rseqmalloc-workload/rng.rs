//! The workloads' PRNG: SplitMix64, seeded per thread, so every run of a
//! workload makes the same requests in the same order under every allocator.

/// SplitMix64 (Steele, Lea, Flood 2014): one add and a 64-bit mix per draw.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `stream` (e.g. a thread index) of the workload `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(mix(seed ^ mix(stream.wrapping_add(0x5851_f42d_4c95_7f2d))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-high (bias below 2^-32 here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// A small-object size in 8..=512 bytes, skewed small the way real
    /// programs are: 60 % up to 64 B, 30 % up to 256 B, 10 % up to 512 B.
    pub fn small_size(&mut self) -> usize {
        match self.below(100) {
            0..=59 => self.range(8, 64),
            60..=89 => self.range(65, 256),
            _ => self.range(257, 512),
        }
    }

    /// Log-uniform in `lo..=hi`: as many sizes in each power of two.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let size = lo as f64 * (hi as f64 / lo as f64).powf(unit);
        (size as usize).clamp(lo, hi)
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(1, 2), Rng::new(1, 2));
        for _ in 0..10_000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..10_000 {
            assert!((8..=512).contains(&a.small_size()));
            assert!((64..=4096).contains(&a.log_uniform(64, 4096)));
            assert!((3..=5).contains(&a.range(3, 5)));
            assert!(a.below(7) < 7);
        }
        assert_ne!(Rng::new(1, 2).next_u64(), Rng::new(1, 3).next_u64());
    }
}
