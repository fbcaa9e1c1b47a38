//! Which join hashes may have been written within the join window: a Bloom filter over
//! `flow_traces.trace_key` and `flow_join_keys.key`, so that the stitcher skips its file
//! lookup (a scan of every hash written in the window, 0.22 s a round at 20 M spans)
//! for the rounds whose traces and keys are all new, which is most rounds: late spans
//! of flows that have left memory are the exception.
//!
//! A build reads the window a slice (about half a million hashes) a stitching round, so
//! a restart stitches at once whatever the window holds: until the first build completes
//! every round looks the file up, as without a filter, and a rebuild's filter is swapped
//! in only when complete. Hashes written meanwhile go into both.
//!
//! The filter may say yes to a hash never written (about one in 2,000 while it holds no
//! more than it was sized for); it never says no to one written, as long as every write
//! is inserted. It is sized for twice the window's hashes, and rebuilt from the file when
//! it holds more than that (so the rebuilds' cost per hash stays constant) and when the
//! window has moved on by half since the last build, so hashes that left
//! the window stop costing lookups. Its size is capped ([`JoinFilter::sized`]): past the
//! cap it says yes more often, which costs time, never a missed join.

use duckdb::arrow::array::AsArray;
use duckdb::arrow::datatypes::Int64Type;
use duckdb::Connection;

use crate::store::StoreError;

/// Most slices of the join window a build reads (one a round), and the hashes a slice
/// should hold at most, about: a window of fewer is read in one round.
const MAX_BUILD_SLICES: i64 = 48;
const HASHES_PER_SLICE: i64 = 500_000;

/// Bits per key and hash functions (the optimum for that many bits): a false positive
/// about once in 2,000 hashes. It has to be rare: a round probes a hash per new trace,
/// and one false positive among them costs the round a lookup. At ten bits (1%) the
/// 20 M catch-up of `bench growth` still looked up in 448 of 1,100 rounds.
const PROBES: usize = 11;
const BITS_PER_KEY: usize = 16;
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

    /// Whether it holds more than it was sized for, so that it says yes more often than
    /// about 1%.
    pub fn overfull(&self) -> bool {
        self.inserted > self.planned.max(MIN_BITS / BITS_PER_KEY)
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub fn keys(&self) -> usize {
        self.inserted
    }
}

/// The filter in use (none until the first build completes) and the one being built.
#[derive(Debug, Default)]
pub struct JoinFilters {
    current: Option<JoinFilter>,
    building: Option<Build>,
    /// When the filter in use, or the one being built, started (stitcher clock).
    started: i64,
}

#[derive(Debug)]
struct Build {
    filter: JoinFilter,
    /// The next slice starts here (a write time); the build is complete at `until`, the
    /// time it started, from which every hash written was inserted as it was written.
    next: i64,
    until: i64,
    slice_ns: i64,
}

impl JoinFilters {
    /// False only for a hash never written in the window; true for any while no filter
    /// is complete.
    pub fn may_contain(&self, key: i64) -> bool {
        self.current.as_ref().map_or(true, |f| f.may_contain(key))
    }

    /// Records a hash being written.
    pub fn insert(&mut self, key: i64) {
        if let Some(f) = &mut self.current {
            f.insert(key);
        }
        if let Some(b) = &mut self.building {
            b.filter.insert(key);
        }
    }

    pub fn bytes(&self) -> usize {
        self.current.as_ref().map_or(0, JoinFilter::bytes) + self.building.as_ref().map_or(0, |b| b.filter.bytes())
    }

    /// One round's work: starts a build when there is no filter, when the one in use is
    /// overfull or when the window has moved on by half since it started; reads one slice
    /// of the window (`window` ns up to `now`) into the build, and puts the build in use
    /// once it is complete.
    pub fn advance(&mut self, conn: &Connection, now: i64, window: i64, max_bytes: usize) -> Result<(), StoreError> {
        if self.building.is_none() {
            let due = match &self.current {
                None => true,
                Some(f) => f.overfull() || now.saturating_sub(self.started) > window / 2,
            };
            if !due {
                return Ok(());
            }
            let since = now.saturating_sub(window);
            let count: i64 =
                conn.query_row(include_str!("../../queries/stitch_join_hash_count.sql"), [since], |r| r.get(0))?;
            // Room to double before it is overfull.
            let filter = JoinFilter::sized((count.max(0) as usize).saturating_mul(2), max_bytes);
            let slices = (count / HASHES_PER_SLICE + 1).clamp(1, MAX_BUILD_SLICES);
            let slice_ns = (now.saturating_sub(since) / slices).saturating_add(1);
            self.building = Some(Build { filter, next: since, until: now, slice_ns });
            self.started = now;
        }
        let Some(build) = self.building.as_mut() else { return Ok(()) };
        let to = build.next.saturating_add(build.slice_ns).min(build.until);
        let mut stmt = conn.prepare(include_str!("../../queries/stitch_join_hashes.sql"))?;
        for batch in stmt.query_arrow([build.next, to])? {
            for hash in batch.column(0).as_primitive::<Int64Type>().iter().flatten() {
                build.filter.insert(hash);
            }
        }
        build.next = to;
        if to >= build.until {
            self.current = self.building.take().map(|b| b.filter);
        }
        Ok(())
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
        assert!(claimed < 200, "about 0.05% false positives, got {claimed} of 100,000");
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
    fn a_build_reads_the_window_in_slices_and_misses_nothing_written_meanwhile() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE flow_traces (trace_key BIGINT, updated_unix_nano BIGINT);
             CREATE TABLE flow_join_keys (key BIGINT, updated_unix_nano BIGINT);
             -- 1.2 M hashes written at 1,000 s, one at 1,500 s, one before the window.
             INSERT INTO flow_traces SELECT range, 1000000000000 + range * 1000 FROM range(1200000);
             INSERT INTO flow_join_keys VALUES (-7, 1500000000000), (-8, 10000000000);",
        )
        .unwrap();
        let (now, window) = (2200 * 1_000_000_000i64, 2000 * 1_000_000_000i64);
        let mut filters = JoinFilters::default();
        let mut rounds = 0;
        while filters.current.is_none() {
            assert!(filters.may_contain(-99), "no filter yet: every lookup goes to the file");
            filters.advance(&conn, now + rounds, window, usize::MAX).unwrap();
            filters.insert(-1000 - rounds);
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(rounds, 3, "1.2 M hashes in three slices");
        assert!((0..1_200_000).all(|h| filters.may_contain(h)) && filters.may_contain(-7));
        assert!((0..rounds).all(|r| filters.may_contain(-1000 - r)), "hashes written during the build");
        let claimed = (2_000_000..2_100_000).filter(|h| filters.may_contain(*h)).count();
        assert!(claimed < 2_000, "{claimed} of 100,000 never written");
        // In use, it stays until the window has moved by half; then it is rebuilt from
        // what the window still holds.
        filters.advance(&conn, now + window / 4, window, usize::MAX).unwrap();
        assert!(filters.building.is_none() && filters.started == now);
        filters.advance(&conn, now + window, window, usize::MAX).unwrap();
        assert!(filters.building.is_none() && filters.started == now + window);
        let kept = (0..100_000).filter(|h| filters.may_contain(*h)).count();
        assert!(kept < 2_000, "hashes that left the window are dropped: {kept} of 100,000 kept");
    }

    #[test]
    fn sizes() {
        // Sixteen bits a key, rounded up to a power of two.
        assert_eq!(JoinFilter::sized(1_000_000, usize::MAX).bytes(), (1 << 24) / 8);
        assert_eq!(JoinFilter::sized(1_100_000, usize::MAX).bytes(), (1 << 25) / 8);
        assert_eq!(JoinFilter::sized(usize::MAX, 1 << 20).bytes(), 1 << 20);
    }
}
