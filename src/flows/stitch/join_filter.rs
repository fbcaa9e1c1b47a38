//! Which join hashes may have been written within the join window: a Bloom filter over
//! `flow_traces.trace_key` and `flow_join_keys.key`, so that the stitcher skips its file
//! lookup (a scan of every hash written in the window, 0.22 s a round at 20 M spans)
//! for the rounds whose traces and keys are all new, which is most rounds: late spans
//! of flows that have left memory are the exception.
//!
//! A build reads the window on a thread and connection of its own, so a restart stitches
//! at once whatever the window holds: until the first build completes (4.5 s at 23.5 M
//! spans, BENCHMARKS.md) every round looks the file up, as without a filter, and a rebuild's
//! filter is swapped in only when complete. Hashes written meanwhile go into the filter
//! in use and are kept for the build.
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
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::store::StoreError;
use crate::text::now_nanos;

/// The `stitch_state` entry holding the token of the filter saved at the last clean stop
/// (0: none to take back).
pub const SAVED_TOKEN: &str = "join_filter_saved";

/// The file a clean stop saves the filter to: beside the database file.
pub fn saved_path(db: &Path) -> std::path::PathBuf {
    crate::text::path_with_suffix(db, ".join-filter")
}

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
    /// It holds every hash written from this time on (stitcher clock): the start of the
    /// window it was built from.
    covers_from: i64,
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
        JoinFilter { words: vec![0; bits / 64], mask: bits as u64 - 1, planned: keys, inserted: 0, covers_from: 0 }
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

/// The start of a saved filter: the format and its version.
const SAVED_MAGIC: &[u8; 8] = b"fsjoinf2";

/// Why a saved filter was not taken back (then it is built from the file).
#[derive(Debug, thiserror::Error)]
pub enum SavedFilterError {
    #[error("reading or writing the saved join filter: {0}")]
    Io(#[from] std::io::Error),
    #[error("the saved join filter is not one this version writes")]
    Format,
    #[error("the saved join filter was saved by another run (token {found}, expected {expected})")]
    Token { found: i64, expected: i64 },
    #[error("the saved join filter holds hashes written since {covers_from}, not since {needed_from} (the join window grew)")]
    Window { covers_from: i64, needed_from: i64 },
    #[error("noting the saved join filter in the database: {0}")]
    Note(String),
    #[error("the saved join filter's size ({bytes} bytes) is not a filter's or exceeds its budget")]
    Size { bytes: u64 },
}

fn read_u64(input: &mut impl Read) -> std::io::Result<u64> {
    let mut word = [0; 8];
    input.read_exact(&mut word)?;
    Ok(u64::from_le_bytes(word))
}

/// The filter in use (none until the first build completes) and the one being built.
#[derive(Debug, Default)]
pub struct JoinFilters {
    current: Option<JoinFilter>,
    building: Option<Build>,
    /// When the filter in use, or the one being built, started (stitcher clock).
    started: i64,
    /// How long the last build that completed took.
    last_build: Option<std::time::Duration>,
    /// Whether the filter in use at start was the one saved at the last clean stop.
    restored: bool,
}

/// A build running on a thread and connection of its own, so that the stitcher never
/// waits for it (read a slice a round on the stitcher's thread, a build at 20 M spans
/// took 48 rounds, and every round of the first minute after a restart looked up the
/// file). It reads what was written before it started; what the stitcher writes from
/// then on is kept in `written_since` and added when the build is taken in; a build
/// that falls so far behind that these would outgrow the filter is dropped, and the next
/// round starts another, which reads them from the file.
#[derive(Debug)]
struct Build {
    thread: Option<std::thread::JoinHandle<Result<JoinFilter, StoreError>>>,
    cancel: Arc<AtomicBool>,
    bytes: Arc<AtomicUsize>,
    written_since: Vec<i64>,
    /// Most hashes `written_since` holds: as many as the filter's bytes would.
    most_written_since: usize,
    started: std::time::Instant,
}

impl Build {
    fn start(conn: &Connection, since: i64, until: i64, max_bytes: usize) -> Result<Build, StoreError> {
        let conn = conn.try_clone()?;
        let (cancel, bytes) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stop, size) = (Arc::clone(&cancel), Arc::clone(&bytes));
        let thread = std::thread::Builder::new()
            .name("flowscope-joinfilter".into())
            .spawn(move || read_window(&conn, since, until, max_bytes, &stop, &size))
            .map_err(|e| StoreError::Task(format!("starting the join filter's build: {e}")))?;
        Ok(Build {
            thread: Some(thread),
            cancel,
            bytes,
            written_since: Vec::new(),
            most_written_since: max_bytes / 8,
            started: std::time::Instant::now(),
        })
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Waits for the thread; the filter with every hash written since it started.
    fn take(mut self) -> Result<JoinFilter, StoreError> {
        let thread = self.thread.take().expect("a build's thread is joined once");
        let mut filter = thread.join().unwrap_or_else(|panic| {
            Err(StoreError::Task(format!("the join filter's build panicked: {}", crate::text::panic_message(&panic))))
        })?;
        for key in std::mem::take(&mut self.written_since) {
            filter.insert(key);
        }
        Ok(filter)
    }
}

impl Drop for Build {
    /// A stopped stitcher does not leave a connection open behind it: the file can be
    /// opened again as soon as the stitcher has stopped.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The build's work: the window's hashes written in [`since`, `until`), into a filter
/// sized for twice their count.
fn read_window(
    conn: &Connection,
    since: i64,
    until: i64,
    max_bytes: usize,
    cancel: &AtomicBool,
    bytes: &AtomicUsize,
) -> Result<JoinFilter, StoreError> {
    let count: i64 =
        conn.query_row(include_str!("../../../queries/stitch_join_hash_count.sql"), [since], |r| r.get(0))?;
    // Room to double before it is overfull.
    let mut filter = JoinFilter::sized((count.max(0) as usize).saturating_mul(2), max_bytes);
    filter.covers_from = since;
    bytes.store(filter.bytes(), Ordering::Relaxed);
    let mut stmt = conn.prepare(include_str!("../../../queries/stitch_join_hashes.sql"))?;
    // Streamed: `query_arrow` would hold every hash of the window in DuckDB's memory
    // (230 MB at 20 M spans) before the first is read.
    for batch in stmt.stream_arrow([since, until])? {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        for hash in batch.column(0).as_primitive::<Int64Type>().iter().flatten() {
            filter.insert(hash);
        }
    }
    Ok(filter)
}

impl JoinFilters {
    /// Writes the filter in use and when it was started to `path` (through a temporary
    /// file, synced, then renamed, so `path` is whole or absent), marked with `token`.
    /// False, writing nothing, when no filter is in use yet.
    pub fn save(&self, path: &Path, token: i64) -> Result<bool, SavedFilterError> {
        let Some(filter) = &self.current else { return Ok(false) };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let file = std::fs::File::create(&temporary)?;
        let mut out = BufWriter::new(file);
        out.write_all(SAVED_MAGIC)?;
        let fields = [token, self.started, filter.covers_from, filter.planned as i64, filter.inserted as i64];
        for field in fields.map(|f| f as u64) {
            out.write_all(&field.to_le_bytes())?;
        }
        out.write_all(&(filter.words.len() as u64).to_le_bytes())?;
        for word in &filter.words {
            out.write_all(&word.to_le_bytes())?;
        }
        let file = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        Ok(true)
    }

    /// The filters as saved at `path` with `token`: the saved filter in use, nothing being
    /// built. A file of another token, format or of more than `max_bytes` is refused, and
    /// so is a filter that does not hold every hash written since `needed_from` (the join
    /// window grew since it was built).
    pub fn load(path: &Path, token: i64, max_bytes: usize, needed_from: i64) -> Result<JoinFilters, SavedFilterError> {
        let file = std::fs::File::open(path)?;
        let file_bytes = file.metadata()?.len();
        let mut input = BufReader::new(file);
        let mut magic = [0; 8];
        input.read_exact(&mut magic)?;
        if &magic != SAVED_MAGIC {
            return Err(SavedFilterError::Format);
        }
        let found = read_u64(&mut input)? as i64;
        if found != token {
            return Err(SavedFilterError::Token { found, expected: token });
        }
        let (started, covers_from) = (read_u64(&mut input)? as i64, read_u64(&mut input)? as i64);
        if covers_from > needed_from {
            return Err(SavedFilterError::Window { covers_from, needed_from });
        }
        let (planned, inserted) = (read_u64(&mut input)?, read_u64(&mut input)?);
        let words = read_u64(&mut input)?;
        let bytes = words.saturating_mul(8);
        let header = SAVED_MAGIC.len() as u64 + 6 * 8;
        let fits = bytes <= (max_bytes as u64).max(MIN_BITS as u64 / 8);
        if !words.is_power_of_two() || words < (MIN_BITS / 64) as u64 || !fits || file_bytes != header + bytes {
            return Err(SavedFilterError::Size { bytes });
        }
        let words = (0..words).map(|_| read_u64(&mut input)).collect::<Result<Vec<u64>, _>>()?;
        let mask = words.len() as u64 * 64 - 1;
        let filter = JoinFilter { words, mask, planned: planned as usize, inserted: inserted as usize, covers_from };
        Ok(JoinFilters { current: Some(filter), building: None, started, last_build: None, restored: true })
    }

    /// Saves the filter in use to `path` for the next start, then notes its token in
    /// `stitch_state`: only a whole file is ever noted. A failure is reported and leaves
    /// no file; the next start builds the filter from the database.
    pub fn save_for_next_start(&self, conn: &Connection, path: &Path) {
        let started = std::time::Instant::now();
        let token = now_nanos().max(1);
        let noted = self.save(path, token).and_then(|saved| {
            if saved {
                conn.execute(
                    include_str!("../../../queries/stitch_state_set.sql"),
                    duckdb::params![SAVED_TOKEN, token],
                )
                .map_err(|e| SavedFilterError::Note(e.to_string()))?;
            }
            Ok(saved)
        });
        match noted {
            Ok(false) => {}
            Ok(true) => tracing::info!(
                bytes = self.bytes(),
                seconds = started.elapsed().as_secs_f64(),
                "join filter saved for the next start"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "saving the join filter failed; the next start builds it");
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The filters to start with: the one saved at `path` by the last clean stop when
    /// `token` (from `stitch_state`) says it is this database's and it holds every hash
    /// written since `needed_from`; none otherwise. The token is cleared and the file
    /// removed before anything is written, so a saved filter is taken back once.
    pub fn take_saved(
        conn: &Connection,
        path: &Path,
        token: i64,
        max_bytes: usize,
        needed_from: i64,
    ) -> Result<JoinFilters, StoreError> {
        let started = std::time::Instant::now();
        let loaded = (token != 0).then(|| JoinFilters::load(path, token, max_bytes, needed_from));
        if token != 0 {
            conn.execute(include_str!("../../../queries/stitch_state_set.sql"), duckdb::params![SAVED_TOKEN, 0])?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, path = %path.display(), "removing the saved join filter failed")
            }
            _ => {}
        }
        Ok(match loaded {
            Some(Ok(filters)) => {
                tracing::info!(
                    bytes = filters.bytes(),
                    seconds = started.elapsed().as_secs_f64(),
                    "join filter taken back from the last stop"
                );
                filters
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the saved join filter was not taken back; building it from the database");
                JoinFilters::default()
            }
            None => JoinFilters::default(),
        })
    }

    /// Whether the filter in use at start was the one saved at the last clean stop.
    pub fn restored(&self) -> bool {
        self.restored
    }

    /// False only for a hash never written in the window; true for any while no filter
    /// is complete.
    pub fn may_contain(&self, key: i64) -> bool {
        self.current.as_ref().is_none_or(|f| f.may_contain(key))
    }

    /// Records a hash being written.
    pub fn insert(&mut self, key: i64) {
        if let Some(f) = &mut self.current {
            f.insert(key);
        }
        if let Some(b) = &mut self.building {
            b.written_since.push(key);
            if b.written_since.len() > b.most_written_since {
                tracing::warn!(hashes = b.written_since.len(), "the join filter's build fell behind; starting again");
                self.building = None;
            }
        }
    }

    /// Seconds the last completed build took (0 before the first completes).
    pub fn last_build_seconds(&self) -> f64 {
        self.last_build.map_or(0.0, |d| d.as_secs_f64())
    }

    pub fn bytes(&self) -> usize {
        self.current.as_ref().map_or(0, JoinFilter::bytes)
            + self.building.as_ref().map_or(0, |b| b.bytes.load(Ordering::Relaxed) + b.written_since.len() * 8)
    }

    /// One round's check: starts a build when there is no filter, when the one in use is
    /// overfull or when the window has moved on by half since it started (reading the
    /// `window` ns up to `now`), and puts a finished build in use. A failed build is
    /// reported and started again; the filter in use stays meanwhile.
    pub fn advance(&mut self, conn: &Connection, now: i64, window: i64, max_bytes: usize) -> Result<(), StoreError> {
        if let Some(build) = self.building.take_if(|b| b.finished()) {
            let took = build.started.elapsed();
            match build.take() {
                Ok(filter) => {
                    tracing::info!(
                        hashes = filter.keys(),
                        bytes = filter.bytes(),
                        seconds = took.as_secs_f64(),
                        "join filter built"
                    );
                    self.current = Some(filter);
                    self.last_build = Some(took);
                }
                Err(e) => tracing::warn!(error = %e, "building the join filter failed; starting again"),
            }
        }
        if self.building.is_some() {
            return Ok(());
        }
        let due = match &self.current {
            None => true,
            Some(f) => f.overfull() || now.saturating_sub(self.started) > window / 2,
        };
        if due {
            self.building = Some(Build::start(conn, now.saturating_sub(window), now, max_bytes)?);
            self.started = now;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
