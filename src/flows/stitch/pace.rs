//! How fast stitching goes: the rate a backlog clears at, which holds ingest back when
//! waiting data would be stitched too late.

use std::time::Duration;

/// Rounds with fewer spans than this say little about how fast a backlog clears.
const BUSY_ROUND_SPANS: usize = 1_000;

#[derive(Default)]
pub(super) struct Pace {
    /// Spans stitched per second of a busy round (a moving average): how fast a backlog
    /// clears.
    spans_per_second: f64,
}

impl Pace {
    /// Takes in a round that stitched `spans` in `took`.
    pub fn round(&mut self, spans: usize, took: Duration) {
        if spans >= BUSY_ROUND_SPANS {
            let rate = spans as f64 / took.as_secs_f64().max(1e-3);
            let average = self.spans_per_second;
            self.spans_per_second = if average == 0.0 { rate } else { 0.8 * average + 0.2 * rate };
        }
    }

    /// How late data waiting to be stitched will be once it is: `lag` now, plus `backlog`
    /// rows at the measured rate (not yet measured: the lag alone).
    pub fn expected_lag(&self, lag: Duration, backlog: u64) -> Duration {
        expected_lag(lag, backlog, self.spans_per_second)
    }
}

fn expected_lag(lag: Duration, backlog: u64, rows_per_second: f64) -> Duration {
    if rows_per_second <= 0.0 {
        return lag;
    }
    lag + Duration::from_secs_f64((backlog as f64 / rows_per_second).min(1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lag_adds_the_time_the_backlog_takes() {
        let s = Duration::from_secs;
        // (lag now, backlog rows, rows per second, expected)
        let cases = [
            (s(5), 200_000, 20_000.0, s(15)),
            (s(0), 600_000, 20_000.0, s(30)),
            (s(5), 0, 20_000.0, s(5)),
            (s(5), 1_000_000, 0.0, s(5)), // rate not measured yet
            (s(1), u64::MAX, 1e-9, s(1) + s(1_000_000)),
        ];
        for (lag, backlog, rate, want) in cases {
            assert_eq!(expected_lag(lag, backlog, rate), want, "{lag:?} {backlog} {rate}");
        }
    }

    #[test]
    fn only_busy_rounds_measure_the_rate() {
        let mut pace = Pace::default();
        pace.round(10, Duration::from_millis(1));
        assert_eq!(pace.spans_per_second, 0.0);
        pace.round(10_000, Duration::from_secs(1));
        assert_eq!(pace.spans_per_second, 10_000.0);
        pace.round(20_000, Duration::from_secs(1));
        assert_eq!(pace.spans_per_second, 12_000.0);
    }
}
