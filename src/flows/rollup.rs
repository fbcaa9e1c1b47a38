//! Flow metrics for Prometheus: settled flows rolled up into counters and histograms kept
//! in DuckDB (`export_counters`), so they only ever grow: a scrape, a restart, the
//! stitcher's replay or a retention sweep never lowers them.
//!
//! A flow is rolled up once its last span's commit is older than the quiet period (it
//! is settled) and stitched. The roll-up goes by `flows.last_commit_seq`, which a
//! replay does not change; a settled flow that a very late span reopens is counted again
//! when it settles again (rare, and documented).
//!
//! Cardinality: the first `cap` chains and the first `cap` destinations get their own
//! label value; later ones are exported as `other`. Fixed once given, so no series ever
//! moves and none decreases. Only own labels are stored: past the cap every new name is
//! `other`, so what is remembered stays bounded by the cap whatever the names seen.

use std::collections::BTreeMap;

use duckdb::{params, Connection};

use super::{HashMap, HashSet};
use crate::store::{execute_statements, in_transaction, StoreError};

/// Bucket bounds (seconds) of every latency histogram: 5 ms to 10 minutes.
pub const LATENCY_BUCKETS: &[f64; LATENCY_BUCKET_COUNT] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The label value of names past the cardinality cap.
pub const OTHER: &str = "other";

/// Prometheus label-value escaping: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `a="x",b="y"`: a label set as the exposition format writes it.
pub fn render_labels(labels: &[(&str, &str)]) -> String {
    labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect::<Vec<_>>().join(",")
}

/// What one roll-up adds, by (metric, rendered labels).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Increments {
    counters: BTreeMap<(String, String), f64>,
    /// Histograms by (base name, rendered labels), added up before they become counters:
    /// a first scrape over a full file observes hundreds of thousands of values.
    histograms: BTreeMap<(String, String), Observed>,
}

/// Observations of one histogram: how many fit first in each of [`LATENCY_BUCKETS`] (the
/// last slot: only in `+Inf`), and their sum.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    first_fit: [u64; LATENCY_BUCKET_COUNT + 1],
    sum: f64,
}

const LATENCY_BUCKET_COUNT: usize = 16;

impl Increments {
    pub fn add(&mut self, metric: &str, labels: &[(&str, &str)], by: f64) {
        *self.counters.entry((metric.to_owned(), render_labels(labels))).or_default() += by;
    }

    /// One observation of a histogram `base` (cumulative `_bucket`s, `_sum`, `_count`).
    pub fn observe(&mut self, base: &str, labels: &[(&str, &str)], seconds: f64) {
        let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        let observed = self
            .histograms
            .entry((base.to_owned(), render_labels(labels)))
            .or_insert(Observed { first_fit: [0; LATENCY_BUCKET_COUNT + 1], sum: 0.0 });
        let fit = LATENCY_BUCKETS.iter().position(|le| seconds <= *le).unwrap_or(LATENCY_BUCKETS.len());
        observed.first_fit[fit] += 1;
        observed.sum += seconds;
    }

    /// Every counter increment, the histograms' cumulative buckets, sums and counts among
    /// them; buckets nothing fell in are left out, as the counters start at zero.
    pub fn into_counters(self) -> BTreeMap<(String, String), f64> {
        let mut counters = self.counters;
        for ((base, labels), observed) in self.histograms {
            let with = |extra: String| if labels.is_empty() { extra } else { format!("{labels},{extra}") };
            let mut below = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(observed.first_fit) {
                below += n;
                if below > 0 {
                    let key = (format!("{base}_bucket"), with(render_labels(&[("le", &le.to_string())])));
                    *counters.entry(key).or_default() += below as f64;
                }
            }
            let count = (below + observed.first_fit[LATENCY_BUCKET_COUNT]) as f64;
            *counters.entry((format!("{base}_bucket"), with(render_labels(&[("le", "+Inf")])))).or_default() += count;
            *counters.entry((format!("{base}_sum"), labels.clone())).or_default() += observed.sum;
            *counters.entry((format!("{base}_count"), labels)).or_default() += count;
        }
        counters
    }
}

/// A settled flow as the roll-up reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledFlow {
    pub chain: String,
    pub duration_ms: f64,
    pub error: bool,
    pub dead_lettered: bool,
    pub queue_wait_ms: f64,
    pub retry_delay_ms: f64,
}

/// What settled flows add; `chain` maps a chain to its label value.
pub fn flow_increments(flows: &[SettledFlow], mut chain: impl FnMut(&str) -> String) -> Increments {
    let mut inc = Increments::default();
    for f in flows {
        let label = chain(&f.chain);
        let c: &[(&str, &str)] = &[("chain", &label)];
        let outcome = if f.dead_lettered {
            "dead_lettered"
        } else if f.error {
            "error"
        } else {
            "ok"
        };
        inc.add("flowscope_chain_flows_total", &[("chain", &label), ("outcome", outcome)], 1.0);
        inc.observe("flowscope_chain_duration_seconds", c, f.duration_ms / 1000.0);
        inc.observe("flowscope_chain_queue_wait_seconds", c, f.queue_wait_ms / 1000.0);
        inc.observe("flowscope_chain_retry_delay_seconds", c, f.retry_delay_ms / 1000.0);
    }
    inc
}

/// Gives names their label value under the cardinality cap: their own for the first
/// `cap` of each kind (remembered), `other` after.
struct Labels {
    cap: usize,
    /// Names with a label of their own, by kind.
    own: HashMap<String, HashSet<String>>,
    /// Own labels given in this roll-up, to be stored: (kind, name).
    new: Vec<(String, String)>,
}

impl Labels {
    fn load(conn: &Connection, cap: usize) -> Result<Labels, StoreError> {
        let mut labels = Labels { cap, own: HashMap::default(), new: Vec::new() };
        for (kind, name) in own_labels(conn)? {
            labels.own.entry(kind).or_default().insert(name);
        }
        Ok(labels)
    }

    fn of(&mut self, kind: &str, name: &str) -> String {
        let own = self.own.entry(kind.to_owned()).or_default();
        if own.contains(name) {
            return name.to_owned();
        }
        if own.len() >= self.cap || name == OTHER {
            return OTHER.to_owned();
        }
        own.insert(name.to_owned());
        self.new.push((kind.to_owned(), name.to_owned()));
        name.to_owned()
    }
}

/// Every (kind, name) exported under a label of its own.
fn own_labels(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare(include_str!("../../queries/export_labels.sql"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Most flows rolled up per call, so one scrape after a long pause stays bounded.
const FLOWS_PER_ROLLUP: i64 = 200_000;

/// Rolls up what settled since the last call: flows whose last span was committed at or
/// before `settled_before` (unix ns) and stitched (`stitched_seq`), and queue counts the
/// stitcher has made. Returns how many flows were added.
pub fn roll_up(conn: &Connection, settled_before: i64, stitched_seq: i64, cap: usize) -> Result<usize, StoreError> {
    in_transaction(conn, || {
        let progress = |name: &str| -> Result<i64, StoreError> {
            Ok(conn.query_row(include_str!("../../queries/rollup_progress.sql"), [name], |r| r.get(0))?)
        };
        let (flows_from, counts_from) = (progress("flows")?, progress("queue_counts")?);
        let settled: i64 =
            conn.query_row(include_str!("../../queries/rollup_settled_through.sql"), [settled_before], |r| r.get(0))?;
        let ready = settled.min(stitched_seq).max(flows_from);
        let flows_to: i64 = conn.query_row(
            include_str!("../../queries/rollup_flows_cap.sql"),
            params![flows_from, ready, FLOWS_PER_ROLLUP],
            |r| r.get(0),
        )?;
        let counts_to = stitched_seq.max(counts_from);
        let mut labels = Labels::load(conn, cap)?;
        let range = params![flows_from, flows_to];

        let mut stmt = conn.prepare(include_str!("../../queries/rollup_flows.sql"))?;
        let flows: Vec<SettledFlow> = stmt
            .query_map(range, |r| {
                Ok(SettledFlow {
                    chain: r.get(0)?,
                    duration_ms: r.get(1)?,
                    error: r.get(2)?,
                    dead_lettered: r.get(3)?,
                    queue_wait_ms: r.get(4)?,
                    retry_delay_ms: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut inc = flow_increments(&flows, |c| labels.of("chain", c));

        let strings = |sql: &str| -> Result<Vec<String>, StoreError> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map(params![flows_from, flows_to], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        for d in strings(include_str!("../../queries/rollup_dead_letters.sql"))? {
            let d = labels.of("destination", &d);
            inc.add("flowscope_dead_letters_total", &[("destination", &d)], 1.0);
        }
        for d in strings(include_str!("../../queries/rollup_retries.sql"))? {
            let d = if d.is_empty() { "(none)".to_owned() } else { labels.of("destination", &d) };
            inc.add("flowscope_retries_total", &[("destination", &d)], 1.0);
        }
        let mut stmt = conn.prepare(include_str!("../../queries/rollup_hops.sql"))?;
        let hops = stmt.query_map(range, |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
        for hop in hops {
            let (d, wait_ms) = hop?;
            let d = labels.of("destination", &d);
            inc.observe("flowscope_queue_wait_seconds", &[("destination", &d)], wait_ms / 1000.0);
        }
        let mut stmt = conn.prepare(include_str!("../../queries/rollup_queue_counts.sql"))?;
        let counts = stmt.query_map(params![counts_from, counts_to], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in counts {
            let (system, d, sent, consumed) = row?;
            let d = labels.of("destination", &d);
            let l: &[(&str, &str)] = &[("destination", &d), ("system", &system)];
            inc.add("flowscope_queue_published_total", l, sent as f64);
            inc.add("flowscope_queue_consumed_total", l, consumed as f64);
        }

        execute_statements(conn, include_str!("../../queries/export_increments.sql"), &[])?;
        {
            let mut increments = conn.appender("export_increments")?;
            for ((metric, labels), by) in &inc.into_counters() {
                increments.append_row(params![metric, labels, by])?;
            }
            increments.flush()?;
        }
        conn.execute(include_str!("../../queries/export_counter_add.sql"), [])?;
        let mut insert = conn.prepare(include_str!("../../queries/export_label_insert.sql"))?;
        for (kind, name) in &labels.new {
            insert.execute(params![kind, name])?;
        }
        let mut set = conn.prepare(include_str!("../../queries/rollup_progress_set.sql"))?;
        set.execute(params!["flows", flows_to])?;
        set.execute(params!["queue_counts", counts_to])?;
        Ok(flows.len())
    })
}

/// Every rolled-up series: (metric, rendered labels, value).
pub fn counters(conn: &Connection) -> Result<Vec<(String, String, f64)>, StoreError> {
    let mut stmt = conn.prepare(include_str!("../../queries/export_counters.sql"))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Destinations exported under a label of their own (for the queue-depth gauge).
pub fn own_destinations(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    Ok(own_labels(conn)?.into_iter().filter(|(kind, _)| kind == "destination").map(|(_, name)| name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_label_values_are_escaped() {
        for (value, want) in [
            ("plain", "plain"),
            ("say \"hi\"", "say \\\"hi\\\""),
            ("a\\b", "a\\\\b"),
            ("two\nlines", "two\\nlines"),
            ("} evil{x=\"1", "} evil{x=\\\"1"),
        ] {
            assert_eq!(escape_label(value), want, "{value}");
        }
        assert_eq!(render_labels(&[("chain", "a\"b"), ("le", "0.5")]), "chain=\"a\\\"b\",le=\"0.5\"");
    }

    #[test]
    fn settled_flows_become_outcomes_and_cumulative_buckets() {
        let flow = |chain: &str, ms: f64, error, dead| SettledFlow {
            chain: chain.into(),
            duration_ms: ms,
            error,
            dead_lettered: dead,
            queue_wait_ms: ms / 2.0,
            retry_delay_ms: 0.0,
        };
        let inc = flow_increments(
            &[flow("c", 40.0, false, false), flow("c", 700.0, true, false), flow("c", 3000.0, true, true)],
            |c| c.to_owned(),
        )
        .into_counters();
        let get = |m: &str, l: &str| inc.get(&(m.to_owned(), l.to_owned())).copied().unwrap_or(0.0);
        assert_eq!(get("flowscope_chain_flows_total", "chain=\"c\",outcome=\"ok\""), 1.0);
        assert_eq!(get("flowscope_chain_flows_total", "chain=\"c\",outcome=\"error\""), 1.0);
        assert_eq!(get("flowscope_chain_flows_total", "chain=\"c\",outcome=\"dead_lettered\""), 1.0);
        let bucket = |le: &str| get("flowscope_chain_duration_seconds_bucket", &format!("chain=\"c\",le=\"{le}\""));
        assert_eq!(
            (bucket("0.025"), bucket("0.05"), bucket("1"), bucket("5"), bucket("+Inf")),
            (0.0, 1.0, 2.0, 3.0, 3.0)
        );
        assert_eq!(get("flowscope_chain_duration_seconds_count", "chain=\"c\""), 3.0);
        assert!((get("flowscope_chain_duration_seconds_sum", "chain=\"c\"") - 3.74).abs() < 1e-9);
    }

    #[test]
    fn the_cardinality_cap_sends_later_names_to_other_for_good() {
        let mut labels = Labels { cap: 2, own: HashMap::default(), new: Vec::new() };
        assert_eq!(labels.of("chain", "a"), "a");
        assert_eq!(labels.of("chain", "b"), "b");
        assert_eq!(labels.of("chain", "c"), OTHER);
        assert_eq!(labels.of("chain", "a"), "a");
        assert_eq!(labels.of("destination", "q"), "q", "each kind has its own cap");
        assert_eq!(labels.of("chain", "c"), OTHER);
        assert_eq!(labels.new.len(), 3, "only own labels are remembered");
    }
}
