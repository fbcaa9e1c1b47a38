//! Which join hashes may have been written within the join window: a Bloom filter over
//! `flow_traces.trace_key` and `flow_join_keys.key`, so that the stitcher skips its file
//! lookup (a scan of every hash written in the window, 0.22 s a round at 20 M spans)
//! for the rounds whose traces and keys are all new, which is most rounds: late spans
//! of flows that have left memory are the exception.
//!
//! The filter may say yes to a hash never written (about 1% of them while it holds no
//! more than it was sized for); it never says no to one written, as long as every write
//! is inserted. It is rebuilt from the file when it holds twice what it was sized for,
//! and when the window has moved on by half since the last build, so hashes that left
//! the window stop costing lookups. Its size is capped ([`JoinFilter::sized`]): past the
//! cap it says yes more often, which costs time, never a missed join.

/// Hash functions per key: the optimum for ten bits per key.
const PROBES: usize = 7;
const BITS_PER_KEY: usize = 10;
/// The smallest filter (bits): 64 KiB.
const MIN_BITS: usize = 1 << 19;

#[derive(Debug, Clone)]
pub struct JoinFilter {
    words: Vec<u64>,
    /// Bits - 1 (the size is a power of two).
    mask: u64,
    /// Keys it was sized for, and keys inserted since it was built.
    planned: usize,
    inserted: usize,
}

/// splitmix64's finaliser: the stored hashes are FNV-1a of ids, whose bits are not
/// independent enough to be used directly as positions.
fn mix(key: i64) -> u64 {
    let mut z = key as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl JoinFilter {
    /// A filter for `keys` keys, of at most `max_bytes`.
    pub fn sized(keys: usize, max_bytes: usize) -> JoinFilter {
        let wanted = keys
            .saturating_mul(BITS_PER_KEY)
            .max(MIN_BITS)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        let cap = max_bytes.saturating_mul(8).max(MIN_BITS);
        let cap = 1usize << (usize::BITS - 1 - cap.leading_zeros());
        let bits = wanted.min(cap);
        JoinFilter { words: vec![0; bits / 64], mask: bits as u64 - 1, planned: keys, inserted: 0 }
    }

    /// The bits of a key: double hashing of one mixed hash.
    fn positions(&self, key: i64) -> [u64; PROBES] {
        let h = mix(key);
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        std::array::from_fn(|i| h1.wrapping_add((i as u64).wrapping_mul(h2)) & self.mask)
    }

    pub fn insert(&mut self, key: i64) {
        for p in self.positions(key) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.inserted += 1;
    }

    /// False only for a key never inserted.
    pub fn may_contain(&self, key: i64) -> bool {
        self.positions(key).into_iter().all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Whether it holds so much more than it was sized for that it says yes too often.
    pub fn overfull(&self) -> bool {
        self.inserted > self.planned.max(MIN_BITS / BITS_PER_KEY) * 2
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub fn keys(&self) -> usize {
        self.inserted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_misses_a_key_and_rarely_claims_one() {
        let mut f = JoinFilter::sized(100_000, usize::MAX);
        let key = |i: i64| crate::flows::joiner::trace_hash(&format!("{i:032x}"));
        for i in 0..100_000 {
            f.insert(key(i));
        }
        assert!((0..100_000).all(|i| f.may_contain(key(i))), "no false negative");
        let claimed = (100_000..200_000).filter(|i| f.may_contain(key(*i))).count();
        assert!(claimed < 2_000, "about 1% false positives, got {claimed} of 100,000");
        assert!(!f.overfull());
        assert_eq!(f.keys(), 100_000);
    }

    #[test]
    fn a_capped_filter_stays_within_its_bytes_and_still_misses_nothing() {
        let mut f = JoinFilter::sized(10_000_000, 1 << 16);
        assert_eq!(f.bytes(), 1 << 16);
        for i in 0..300_000 {
            f.insert(i * 7919);
        }
        assert!((0..300_000).all(|i| f.may_contain(i * 7919)));
        assert!(!f.overfull(), "sized for more than it holds");
        let mut small = JoinFilter::sized(0, usize::MAX);
        assert_eq!(small.bytes(), MIN_BITS / 8);
        for i in 0..(MIN_BITS / BITS_PER_KEY * 2 + 1) as i64 {
            small.insert(i);
        }
        assert!(small.overfull());
    }

    #[test]
    fn sizes() {
        // Ten bits a key, rounded up to a power of two.
        assert_eq!(JoinFilter::sized(1_000_000, usize::MAX).bytes(), (1 << 24) / 8);
        assert_eq!(JoinFilter::sized(usize::MAX, 1 << 20).bytes(), 1 << 20);
    }
}
