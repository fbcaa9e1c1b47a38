//! Where the stitcher finds the stored flows a late span joins: the join hashes written
//! in the join window, kept in runs sorted by hash (`join_hash_runs`) plus the few
//! written since the newest run, read from the flow tables.
//!
//! Why sorted runs: a lookup used to scan every hash written in the window, one BIGINT
//! column with zone maps on the write time. That cost grows with the window: 0.22 s a
//! lookup at 20 M spans, 0.37 s at 39 M (47.5 M hashes), and past about 33 M hashes the
//! join filter ([`super::join_filter`], capped at a sixteenth of the memory budget) says
//! yes to most rounds, so most rounds paid it (ingest fell to 41% of a fresh file's rate).
//! In a table sorted by hash each row group (122,880 rows) holds a narrow range of
//! hashes, and DuckDB checks a few probes (up to 50) against every row group's min and
//! max, so a probe reads one row group of each run, where a scan of the window read
//! every hash in it (BENCHMARKS.md gives the lookup's cost on a large file). Row groups are what DuckDB prunes by; smaller
//! ones would cut the runs' part by four but are set per database file. Nothing is
//! resident: an ART index would hold an entry per stored hash in memory, which is what
//! this design avoids.
//!
//! How the runs are kept, like the levels of an LSM tree: once a million hashes have
//! been written since the newest run, they become a new run (one `INSERT ... ORDER BY`).
//! Runs of the same size tier (a factor of [`FANOUT`]) that follow each other in time are
//! merged once there are [`FANOUT`] of them, slice by slice of the hash space, so no
//! statement sorts more than a few million rows whatever the window holds. A run
//! leaves when its newest hash leaves the window, and merges drop hashes already out.
//! All of it runs as a background job on a thread and connection of its own: the
//! stitcher starts one every few rounds and takes its result in when done, and never
//! waits for it.
//!
//! Correctness rests on one invariant: every hash written before the newest run's
//! `through_unix_nano` is in a run. The stitcher is the only writer of the flow tables
//! and gives each write a time later than the last (even if the clock steps back), and a
//! job only makes runs of what was written before the round that started it. Nothing
//! depends on the runs being sorted, only their cost; and a hash of a flow rewritten
//! since points at rows that are gone, so it finds nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::{params, Connection};

use crate::store::{execute_statements, in_transaction, StoreError};

/// Runs of one size tier merged at once; runs per tier stay below it.
const FANOUT: usize = 4;

/// Most hashes one statement sorts, as a multiple of the flush size: a flush of a large
/// backlog (the first start on a file of the previous version) and each slice of a
/// merge stay within it.
const SLICE_FLUSHES: usize = 2;

/// Most slices a merge is cut into, however small the flush size (tests use one hash).
const MOST_SLICES: usize = 256;

/// One sorted run, as listed in `join_hash_run_list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    run: i64,
    hashes: i64,
    oldest: i64,
    newest: i64,
    through: i64,
}

/// The runs as they are; ordered oldest first.
fn list(conn: &Connection) -> Result<Vec<Run>, StoreError> {
    let mut stmt = conn.prepare(include_str!("../../../queries/join_runs_list.sql"))?;
    let runs = stmt
        .query_map([], |r| {
            Ok(Run { run: r.get(0)?, hashes: r.get(1)?, oldest: r.get(2)?, newest: r.get(3)?, through: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(runs)
}

/// The size tier of a run of `hashes`: 0 up to `flush` × [`FANOUT`], then one more per
/// factor of [`FANOUT`].
fn tier(hashes: i64, flush: usize) -> u32 {
    let mut bound = (flush.max(1) as i64).saturating_mul(FANOUT as i64);
    let mut tier = 0;
    while hashes >= bound && bound < i64::MAX {
        bound = bound.saturating_mul(FANOUT as i64);
        tier += 1;
    }
    tier
}

/// Which runs to merge next, given the runs oldest first: the newest stretch of runs
/// of one tier, adjacent in time, that has [`FANOUT`] of them or more. Merging only
/// neighbours keeps every run's time range apart from the others', so the oldest runs
/// are the ones that leave the window.
fn plan_merge(runs: &[Run], flush: usize) -> Option<&[Run]> {
    let mut end = runs.len();
    while end > 0 {
        let t = tier(runs[end - 1].hashes, flush);
        let start = runs[..end].iter().rposition(|r| tier(r.hashes, flush) != t).map_or(0, |i| i + 1);
        if end - start >= FANOUT {
            return Some(&runs[start..end]);
        }
        end = start;
    }
    None
}

/// The hash space cut into `slices` contiguous inclusive ranges, in order.
fn hash_slices(slices: usize) -> Vec<(i64, i64)> {
    let slices = slices.clamp(1, MOST_SLICES) as i128;
    let (lo, span) = (i64::MIN as i128, 1i128 << 64);
    (0..slices).map(|i| ((lo + span * i / slices) as i64, (lo + span * (i + 1) / slices - 1) as i64)).collect()
}

/// What one background job did, and the runs it left.
#[derive(Debug, Clone, Default)]
struct Maintained {
    /// Every hash written before this is in a run (0: no run).
    through: i64,
    runs: usize,
    hashes: i64,
    /// Hashes written since `through`, when the job looked.
    unsorted: i64,
    flushed: i64,
    merged: i64,
    expired: usize,
}

impl Maintained {
    /// The runs as listed, nothing done yet.
    fn of(runs: &[Run]) -> Maintained {
        Maintained {
            through: runs.iter().map(|r| r.through).max().unwrap_or(0),
            runs: runs.len(),
            hashes: runs.iter().map(|r| r.hashes).sum(),
            ..Maintained::default()
        }
    }
}

/// One job: drops the runs out of the window (written before `window_start`), makes
/// a run of what was written before `upto` once that is `flush` hashes or more, and
/// merges one stretch of runs when due. Each step is a transaction of its own; a merge
/// stops between slices, undone, once `cancel` is set.
fn maintain(
    conn: &Connection,
    upto: i64,
    window_start: i64,
    flush: usize,
    cancel: &AtomicBool,
) -> Result<Maintained, StoreError> {
    conn.execute_batch(include_str!("../../../queries/join_runs_temp_tables.sql"))?;
    let mut runs = list(conn)?;
    let mut done = Maintained::default();
    if runs.iter().any(|r| r.newest < window_start) {
        in_transaction(conn, || {
            execute_statements(conn, include_str!("../../../queries/join_runs_expire.sql"), &[&window_start])
        })?;
    }
    let listed = runs.len();
    runs.retain(|r| r.newest >= window_start);
    done.expired = listed - runs.len();
    let mut next_run = runs.iter().map(|r| r.run).max().unwrap_or(0) + 1;

    let from = Maintained::of(&runs).through.max(window_start);
    let most = flush.saturating_mul(SLICE_FLUSHES).max(1) as i64;
    let (unsorted, bound): (i64, Option<i64>) =
        conn.query_row(include_str!("../../../queries/join_runs_unsorted.sql"), params![from, upto, most], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    done.unsorted = unsorted;
    if unsorted >= flush.max(1) as i64 {
        // At most `most` hashes (and the rest of the last write's), oldest first.
        let through = if unsorted > most { bound.map_or(upto, |b| b.saturating_add(1)).min(upto) } else { upto };
        let run = next_run;
        next_run += 1;
        done.flushed = in_transaction(conn, || {
            let flushed =
                conn.execute(include_str!("../../../queries/join_runs_flush.sql"), params![run, from, through])?;
            conn.execute(include_str!("../../../queries/join_runs_add.sql"), params![run, from, through])?;
            Ok(flushed as i64)
        })?;
        done.unsorted -= done.flushed;
        runs = list(conn)?;
    }

    if let Some(group) = plan_merge(&runs, flush) {
        let run = next_run;
        let total: i64 = group.iter().map(|r| r.hashes).sum();
        let through = group.iter().map(|r| r.through).max().unwrap_or(0);
        let slices = hash_slices((total / most + 1) as usize);
        done.merged = in_transaction(conn, || {
            {
                let mut app = conn.appender("merging_runs")?;
                for r in group {
                    app.append_row([r.run])?;
                }
                app.flush()?;
            }
            let mut merged = 0;
            let mut slice = conn.prepare(include_str!("../../../queries/join_runs_merge.sql"))?;
            for (lo, hi) in slices {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StoreError::ShuttingDown);
                }
                merged += slice.execute(params![run, lo, hi, window_start])? as i64;
            }
            execute_statements(conn, include_str!("../../../queries/join_runs_merged.sql"), &[])?;
            conn.execute(include_str!("../../../queries/join_runs_add.sql"), params![run, window_start, through])?;
            Ok(merged)
        })?;
        runs = list(conn)?;
    }
    Ok(Maintained {
        unsorted: done.unsorted,
        flushed: done.flushed,
        merged: done.merged,
        expired: done.expired,
        ..Maintained::of(&runs)
    })
}

/// A stored flow a probed hash reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reached {
    /// The probed join hash.
    pub key: i64,
    /// The flow's id, as digits.
    pub flow_id: String,
    /// When the flow's rows were written.
    pub updated: i64,
    /// When the flow starts.
    pub flow_start: i64,
}

impl Reached {
    fn from_row(r: &duckdb::Row<'_>) -> duckdb::Result<Reached> {
        Ok(Reached { key: r.get(0)?, flow_id: r.get(1)?, updated: r.get(2)?, flow_start: r.get(3)? })
    }
}

/// The stored flows that the join hashes `probes` reach, among the rows written since
/// `window_start`; the runs hold what was written before `unsorted_from`.
pub fn look_up(
    conn: &Connection,
    probes: impl IntoIterator<Item = i64>,
    window_start: i64,
    unsorted_from: i64,
) -> Result<Vec<Reached>, StoreError> {
    conn.execute_batch(include_str!("../../../queries/stitch_lookup_clear.sql"))?;
    {
        let mut app = conn.appender("stitch_keys")?;
        for key in probes {
            app.append_row([key])?;
        }
        app.flush()?;
    }
    conn.execute(include_str!("../../../queries/stitch_lookup_runs.sql"), [window_start])?;
    let mut stmt = conn.prepare(include_str!("../../../queries/stitch_lookup.sql"))?;
    let rows = stmt.query_map([unsorted_from.max(window_start)], Reached::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stitcher's view of the runs: how far they reach, and the job keeping them.
#[derive(Debug)]
pub struct JoinRuns {
    /// The time of the last write of flow rows: each write's is later (see
    /// [`JoinRuns::write_time`]).
    last_write: i64,
    /// Hashes in a run size of the flush: a run is made once this many were written.
    flush: usize,
    job: Option<Job>,
    /// When the last job started, so jobs start at most every `every`.
    last_start: Option<Instant>,
    every: Duration,
    /// The runs as the last job left them (as stored, at start).
    last: Maintained,
    last_job: Duration,
    jobs: u64,
}

#[derive(Debug)]
struct Job {
    thread: std::thread::JoinHandle<Result<Maintained, StoreError>>,
    cancel: Arc<AtomicBool>,
    started: Instant,
}

/// What the runs look like, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub runs: usize,
    pub hashes: i64,
    pub unsorted: i64,
    pub jobs: u64,
    pub last_job_seconds: f64,
}

impl JoinRuns {
    /// The runs as stored; a job at most every `every`, a run per `flush` hashes.
    pub fn open(conn: &Connection, flush: usize, every: Duration) -> Result<JoinRuns, StoreError> {
        let last = Maintained::of(&list(conn)?);
        let last_write =
            conn.query_row(include_str!("../../../queries/join_runs_last_write.sql"), [last.through], |r| r.get(0))?;
        Ok(JoinRuns {
            last_write,
            flush: flush.max(1),
            job: None,
            last_start: None,
            every,
            last,
            last_job: Duration::ZERO,
            jobs: 0,
        })
    }

    /// Hashes written before this are in a run: lookups read the flow tables from here.
    pub fn through(&self) -> i64 {
        self.last.through
    }

    /// The time to give the flow rows written now: the clock's, or just after the last
    /// write's should the clock have stepped back, so that no hash is ever written
    /// before a run's end.
    pub fn write_time(&mut self) -> i64 {
        self.last_write = crate::text::now_nanos().max(self.last_write.saturating_add(1));
        self.last_write
    }

    /// One round's check, between writes: takes a finished job's result in, and starts
    /// the next when due, for what was written up to now. A failed job is reported; the
    /// next one starts over.
    pub fn advance(&mut self, conn: &Connection, window_start: i64) -> Result<(), StoreError> {
        let upto = self.last_write.saturating_add(1);
        if let Some(job) = self.job.take_if(|j| j.thread.is_finished()) {
            self.last_job = job.started.elapsed();
            let result = job.thread.join().unwrap_or_else(|panic| {
                Err(StoreError::Task(format!("a join runs job panicked: {}", crate::text::panic_message(&panic))))
            });
            match result {
                Ok(done) => {
                    if done.flushed > 0 || done.merged > 0 || done.expired > 0 {
                        tracing::debug!(?done, seconds = self.last_job.as_secs_f64(), "join hash runs maintained");
                    }
                    self.last = done;
                    self.jobs += 1;
                }
                Err(e) => tracing::warn!(error = %e, "keeping the join hash runs failed; the next job starts over"),
            }
        }
        if self.job.is_some() || self.last_start.is_some_and(|t| t.elapsed() < self.every) {
            return Ok(());
        }
        let conn = conn.try_clone()?;
        let (flush, cancel) = (self.flush, Arc::new(AtomicBool::new(false)));
        let stop = Arc::clone(&cancel);
        let thread = std::thread::Builder::new()
            .name("flowscope-joinruns".into())
            .spawn(move || maintain(&conn, upto, window_start, flush, &stop))
            .map_err(|e| StoreError::Task(format!("starting a join runs job: {e}")))?;
        self.job = Some(Job { thread, cancel, started: Instant::now() });
        self.last_start = Some(Instant::now());
        Ok(())
    }

    pub fn stats(&self) -> RunStats {
        RunStats {
            runs: self.last.runs,
            hashes: self.last.hashes,
            unsorted: self.last.unsorted,
            jobs: self.jobs,
            last_job_seconds: self.last_job.as_secs_f64(),
        }
    }

    /// Stops a running job (a merge is undone) and waits for it, so that the database
    /// can be closed as soon as the stitcher has stopped.
    pub fn finish(&mut self) {
        if let Some(job) = self.job.take() {
            job.cancel.store(true, Ordering::Relaxed);
            let _ = job.thread.join();
        }
    }
}

impl Drop for JoinRuns {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runs(sizes: &[i64]) -> Vec<Run> {
        let run = |(i, hashes): (usize, &i64)| {
            let i = i as i64;
            Run { run: i + 1, hashes: *hashes, oldest: i * 10, newest: i * 10 + 9, through: i * 10 + 10 }
        };
        sizes.iter().enumerate().map(run).collect()
    }

    #[test]
    fn merges_the_newest_stretch_of_fanout_runs_of_one_tier() {
        // (run sizes oldest first with a flush of 10 hashes, the runs merged by id)
        let cases: &[(&[i64], Option<&[i64]>)] = &[
            (&[], None),
            (&[10, 10, 10], None),
            (&[10, 12, 15, 39], Some(&[1, 2, 3, 4])),
            // A tier-1 run between breaks the stretch: the newest three stay.
            (&[10, 10, 40, 10, 10, 10], None),
            (&[40, 41, 160, 10, 10, 10, 11, 12], Some(&[4, 5, 6, 7, 8])),
            // Small runs left behind by a large flush wait while an older tier merges.
            (&[40, 41, 42, 43, 10], Some(&[1, 2, 3, 4])),
            (&[700, 160, 160, 160, 40, 40, 40, 10, 10, 10], None),
        ];
        for (sizes, want) in cases {
            let listed = runs(sizes);
            let got = plan_merge(&listed, 10).map(|g| g.iter().map(|r| r.run).collect::<Vec<_>>());
            assert_eq!(got.as_deref(), *want, "sizes {sizes:?}");
        }
        assert_eq!(tier(0, 10), 0);
        assert_eq!(tier(39, 10), 0);
        assert_eq!(tier(40, 10), 1);
        assert_eq!(tier(160, 10), 2);
        assert_eq!(tier(i64::MAX, 1), 31);
    }

    #[test]
    fn hash_slices_cover_every_hash_once_in_order() {
        for n in [1, 2, 3, 7, 256, 10_000] {
            let slices = hash_slices(n);
            assert_eq!(slices.len(), n.min(MOST_SLICES));
            assert_eq!(slices[0].0, i64::MIN);
            assert_eq!(slices.last().unwrap().1, i64::MAX);
            for pair in slices.windows(2) {
                assert_eq!(pair[0].1.checked_add(1), Some(pair[1].0), "{n} slices: {pair:?}");
            }
            assert!(slices.iter().all(|(lo, hi)| lo <= hi));
        }
    }

    /// What the stitcher does to the flow tables, in the model's terms.
    #[derive(Debug, Clone)]
    enum Step {
        /// A new flow with these hashes (true: a link or key row, else a trace row).
        Write(Vec<(i64, bool)>),
        /// The n-th flow still stored is rewritten: its rows deleted and written anew.
        Rewrite(usize),
        /// A job, the window moved on by this much.
        Maintain(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => prop::collection::vec((0i64..40, any::<bool>()), 1..6).prop_map(Step::Write),
            2 => (0usize..50).prop_map(Step::Rewrite),
            2 => (0i64..8).prop_map(Step::Maintain),
        ]
    }

    struct Model {
        conn: Connection,
        /// (flow id, its hashes, when written) of the flows stored.
        flows: Vec<(u128, Vec<(i64, bool)>, i64)>,
        now: i64,
        window_start: i64,
        through: i64,
    }

    impl Model {
        fn write(&mut self, flow: u128, hashes: Vec<(i64, bool)>) {
            self.now += 7;
            let (id, now) = (format!("{flow:032x}"), self.now);
            for (key, join) in &hashes {
                let sql = if *join {
                    "INSERT INTO flow_join_keys VALUES (?, ?::UUID, ?::UUID, 'message_id', 'm', 0, ?)"
                } else {
                    "INSERT INTO flow_traces VALUES (?::UUID, ?::UUID, ?, 0, ?)"
                };
                let key_first: [&dyn duckdb::ToSql; 4] = [key, &id, &id, &now];
                let id_first: [&dyn duckdb::ToSql; 4] = [&id, &id, key, &now];
                self.conn.execute(sql, if *join { &key_first[..] } else { &id_first[..] }).unwrap();
            }
            self.flows.push((flow, hashes, now));
        }

        /// Applies a step; what the job did, for a `Maintain`.
        fn apply(&mut self, step: Step) -> Option<Maintained> {
            match step {
                Step::Write(hashes) => {
                    self.write(self.flows.len() as u128 + 1, hashes);
                    None
                }
                Step::Rewrite(n) if !self.flows.is_empty() => {
                    let (flow, hashes, updated) = self.flows.remove(n % self.flows.len());
                    let id = format!("{flow:032x}");
                    for table in ["flow_traces", "flow_join_keys"] {
                        let sql = format!("DELETE FROM {table} WHERE flow_id = ?::UUID AND updated_unix_nano = ?");
                        self.conn.execute(&sql, params![id, updated]).unwrap();
                    }
                    self.write(flow, hashes);
                    None
                }
                Step::Rewrite(_) => None,
                Step::Maintain(moved) => {
                    self.window_start = (self.window_start + moved).min(self.now);
                    let done =
                        maintain(&self.conn, self.now + 1, self.window_start, 3, &AtomicBool::new(false)).unwrap();
                    self.through = done.through;
                    Some(done)
                }
            }
        }

        fn found(&self, probes: &[i64]) -> Vec<Reached> {
            let mut got = look_up(&self.conn, probes.iter().copied(), self.window_start, self.through).unwrap();
            got.sort();
            got
        }

        /// Every row in the window with a probed hash, read the slow way.
        fn expected(&self, probes: &[i64]) -> Vec<Reached> {
            let sql = "SELECT trace_key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano FROM flow_traces
                       WHERE updated_unix_nano >= ?
                       UNION SELECT key, hex_id(flow_id), updated_unix_nano, flow_start_unix_nano FROM flow_join_keys
                       WHERE updated_unix_nano >= ? ORDER BY ALL";
            let mut stmt = self.conn.prepare(sql).unwrap();
            let rows = stmt.query_map([self.window_start, self.window_start], Reached::from_row).unwrap();
            rows.map(Result::unwrap).filter(|r| probes.contains(&r.key)).collect()
        }
    }

    #[test]
    fn lookups_through_runs_find_exactly_what_a_scan_of_the_window_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("runs.duckdb")).unwrap();
        let conn = store.connect().unwrap();
        let mut runner = crate::test_support::seeded_runner(40, 21);
        let (made_runs, merged) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        runner
            .run(&prop::collection::vec(step(), 1..60), |steps| {
                conn.execute_batch(
                    "DELETE FROM flow_traces; DELETE FROM flow_join_keys;
                     DELETE FROM join_hash_runs; DELETE FROM join_hash_run_list;",
                )
                .unwrap();
                let mut model =
                    Model { conn: conn.try_clone().unwrap(), flows: Vec::new(), now: 0, window_start: 0, through: 0 };
                model.conn.execute_batch(include_str!("../../../queries/stitch_temp_tables.sql")).unwrap();
                for step in steps {
                    if let Some(done) = model.apply(step) {
                        made_runs.set(made_runs.get() + usize::from(done.flushed > 0));
                        merged.set(merged.get() + usize::from(done.merged > 0));
                    }
                    let probes: Vec<i64> = (-1..42).collect();
                    prop_assert_eq!(model.found(&probes), model.expected(&probes));
                }
                // Each run is stored sorted by hash, merged runs too.
                let mut stmt = conn.prepare("SELECT run, key FROM join_hash_runs ORDER BY rowid").unwrap();
                let rows: Vec<(i64, i64)> =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
                for pair in rows.windows(2) {
                    prop_assert!(pair[0].0 != pair[1].0 || pair[0].1 <= pair[1].1, "unsorted run: {:?}", pair);
                }
                Ok(())
            })
            .unwrap();
        let (made_runs, merged) = (made_runs.get(), merged.get());
        assert!(made_runs > 20 && merged > 5, "the cases made {made_runs} runs, {merged} with merges");
    }
}
