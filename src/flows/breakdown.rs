//! Tail attribution: where a chain's slowest flows spend the time its typical flows do
//! not. The chain's flows split into the tail (slower than its p95) and the typical
//! (p40-p60); for every step (a service's own time, a queue wait, retry delay, a call)
//! the median time in each group, a flow without the step counting zero, and the
//! difference, largest first, with the tail flows where the step took longest.

use std::collections::BTreeMap;

use serde::Serialize;

pub use super::steps::{parse_steps, StoredStep};

/// A flow of one group with its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSteps {
    pub tail: bool,
    pub flow_id: String,
    pub steps: Vec<StoredStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepDelta {
    pub step: String,
    pub kind: String,
    pub typical_ms: f64,
    pub tail_ms: f64,
    pub delta_ms: f64,
    /// Tail flows where this step took longest.
    pub example_flow_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub chain: String,
    pub tail_flows: usize,
    pub typical_flows: usize,
    pub steps: Vec<StepDelta>,
}

/// Tail flows named per step.
const EXAMPLES: usize = 3;

/// The median of `values` padded with zeros up to `n` values.
pub fn median_with_zeros(values: &[f64], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mut all: Vec<f64> = values.to_vec();
    all.resize(n.max(values.len()), 0.0);
    all.sort_by(f64::total_cmp);
    let mid = all.len() / 2;
    if all.len() % 2 == 1 {
        all[mid]
    } else {
        (all[mid - 1] + all[mid]) / 2.0
    }
}

/// Per group (typical, tail): a step's (ms, flow id) in each flow that has it.
type Groups<'a> = [Vec<(f64, &'a str)>; 2];

pub fn tail_attribution(chain: &str, flows_of_groups: &[FlowSteps]) -> Breakdown {
    let mut flows: [std::collections::BTreeSet<&str>; 2] = Default::default();
    let mut by_step: BTreeMap<(&str, &str), Groups<'_>> = BTreeMap::new();
    for f in flows_of_groups {
        let g = usize::from(f.tail);
        flows[g].insert(&f.flow_id);
        for s in &f.steps {
            by_step.entry((&s.kind, &s.step)).or_default()[g].push((s.ms, &f.flow_id));
        }
    }
    let (typical_n, tail_n) = (flows[0].len(), flows[1].len());
    let mut steps: Vec<StepDelta> = by_step
        .into_iter()
        .map(|((kind, step), [typical, tail])| {
            let ms = |v: &[(f64, &str)]| v.iter().map(|(m, _)| *m).collect::<Vec<_>>();
            let typical_ms = median_with_zeros(&ms(&typical), typical_n);
            let tail_ms = median_with_zeros(&ms(&tail), tail_n);
            let mut slowest = tail;
            slowest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            StepDelta {
                step: step.to_owned(),
                kind: kind.to_owned(),
                typical_ms,
                tail_ms,
                delta_ms: tail_ms - typical_ms,
                example_flow_ids: slowest.iter().take(EXAMPLES).map(|(_, f)| f.to_string()).collect(),
            }
        })
        .collect();
    steps.sort_by(|a, b| b.delta_ms.total_cmp(&a.delta_ms).then_with(|| a.step.cmp(&b.step)));
    Breakdown { chain: chain.to_owned(), tail_flows: tail_n, typical_flows: typical_n, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_count_missing_steps_as_zero() {
        for (values, n, want) in [
            (vec![], 0, 0.0),
            (vec![5.0], 1, 5.0),
            (vec![5.0], 3, 0.0),
            (vec![5.0, 7.0], 3, 5.0),
            (vec![4.0, 2.0, 8.0, 6.0], 4, 5.0),
        ] {
            assert_eq!(median_with_zeros(&values, n), want, "{values:?} of {n}");
        }
    }

    #[test]
    fn the_step_that_makes_the_tail_comes_first() {
        let flow = |tail, flow: &str, json: &str| FlowSteps { tail, flow_id: flow.into(), steps: parse_steps(json) };
        let step = |k: &str, s: &str, ms: f64| format!(r#"{{"kind":"{k}","step":"{s}","ms":{ms}}}"#);
        let rows = vec![
            // Typical: a little queue wait, no retries.
            flow(false, "t1", &format!("[{},{}]", step("service", "api", 10.0), step("queue_wait", "emails", 5.0))),
            flow(false, "t2", &format!("[{},{}]", step("service", "api", 12.0), step("queue_wait", "emails", 7.0))),
            flow(false, "t3", "[]"),
            // Tail: waits in emails, one retried.
            flow(true, "s1", &format!("[{},{}]", step("service", "api", 11.0), step("queue_wait", "emails", 800.0))),
            flow(
                true,
                "s2",
                &format!(
                    "[{},{},{}]",
                    step("service", "api", 13.0),
                    step("queue_wait", "emails", 900.0),
                    step("retry_delay", "payments", 300.0)
                ),
            ),
            // Unreadable steps count as none.
            flow(false, "t4", "not json"),
        ];
        let b = tail_attribution("c", &rows);
        assert_eq!((b.tail_flows, b.typical_flows), (2, 4));
        let got: Vec<(&str, f64, f64)> = b.steps.iter().map(|s| (s.step.as_str(), s.typical_ms, s.tail_ms)).collect();
        assert_eq!(got, vec![("emails", 2.5, 850.0), ("payments", 0.0, 150.0), ("api", 5.0, 12.0)]);
        assert_eq!(b.steps[0].example_flow_ids, vec!["s2", "s1"]);
        assert_eq!(b.steps[0].delta_ms, 847.5);
    }
}
