//! Alert instances and their life: inactive -> pending -> firing -> resolved, with the
//! rule's `for` duration between pending and firing. Pure functions; the evaluator feeds
//! them observations and persists what they return.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pending,
    Firing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "pending" => Some(Phase::Pending),
            "firing" => Some(Phase::Firing),
            _ => None,
        }
    }
}

/// One rule applied to one queue or chain, while its condition holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub fingerprint: String,
    pub rule_id: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub phase: Phase,
    pub value: f64,
    pub active_since_unix_nano: i64,
    pub firing_since_unix_nano: Option<i64>,
    /// Where to look, relative to the UI root.
    pub page: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Pending,
    Firing,
    Resolved,
    /// Pending, then cleared before `for` elapsed: never notified.
    Cancelled,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Pending => "pending",
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
            Transition::Cancelled => "cancelled",
        }
    }
    /// Whether receivers hear about it.
    pub fn notifies(self) -> bool {
        matches!(self, Transition::Firing | Transition::Resolved)
    }
}

/// Identifies an alert by its labels, as Alertmanager does: stable across restarts and
/// independent of label order.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}

/// One evaluation step for an instance: `breached` is whether the condition holds now
/// (the value and new instance fields come from `fresh` when it does).
pub fn step(
    previous: Option<&Instance>,
    fresh: Option<Instance>,
    now: i64,
    for_ns: i64,
) -> (Option<Instance>, Option<Transition>) {
    match (previous, fresh) {
        (None, None) => (None, None),
        (Some(prev), None) => {
            let t = match prev.phase {
                Phase::Pending => Transition::Cancelled,
                Phase::Firing => Transition::Resolved,
            };
            (None, Some(t))
        }
        (None, Some(mut new)) => {
            new.active_since_unix_nano = now;
            if for_ns <= 0 {
                new.phase = Phase::Firing;
                new.firing_since_unix_nano = Some(now);
                (Some(new), Some(Transition::Firing))
            } else {
                new.phase = Phase::Pending;
                new.firing_since_unix_nano = None;
                (Some(new), Some(Transition::Pending))
            }
        }
        (Some(prev), Some(mut new)) => {
            new.active_since_unix_nano = prev.active_since_unix_nano;
            match prev.phase {
                Phase::Firing => {
                    new.phase = Phase::Firing;
                    new.firing_since_unix_nano = prev.firing_since_unix_nano;
                    (Some(new), None)
                }
                Phase::Pending if now - prev.active_since_unix_nano >= for_ns => {
                    new.phase = Phase::Firing;
                    new.firing_since_unix_nano = Some(now);
                    (Some(new), Some(Transition::Firing))
                }
                Phase::Pending => {
                    new.phase = Phase::Pending;
                    new.firing_since_unix_nano = None;
                    (Some(new), None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(phase: Phase, since: i64) -> Instance {
        Instance {
            fingerprint: "f".into(),
            rule_id: "r".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            phase,
            value: 1.0,
            active_since_unix_nano: since,
            firing_since_unix_nano: (phase == Phase::Firing).then_some(since),
            page: "/".into(),
        }
    }

    #[test]
    fn state_machine() {
        let fresh = || Some(inst(Phase::Pending, 0));
        let table: Vec<(Option<Instance>, Option<Instance>, i64, i64, Option<Phase>, Option<Transition>)> = vec![
            (None, None, 100, 10, None, None),
            (None, fresh(), 100, 0, Some(Phase::Firing), Some(Transition::Firing)),
            (None, fresh(), 100, 10, Some(Phase::Pending), Some(Transition::Pending)),
            (Some(inst(Phase::Pending, 95)), fresh(), 100, 10, Some(Phase::Pending), None),
            (Some(inst(Phase::Pending, 90)), fresh(), 100, 10, Some(Phase::Firing), Some(Transition::Firing)),
            (Some(inst(Phase::Firing, 50)), fresh(), 100, 10, Some(Phase::Firing), None),
            (Some(inst(Phase::Pending, 95)), None, 100, 10, None, Some(Transition::Cancelled)),
            (Some(inst(Phase::Firing, 50)), None, 100, 10, None, Some(Transition::Resolved)),
        ];
        for (n, (prev, new, now, for_ns, want_phase, want_t)) in table.into_iter().enumerate() {
            let (next, t) = step(prev.as_ref(), new, now, for_ns);
            assert_eq!(next.as_ref().map(|i| i.phase), want_phase, "case {n}");
            assert_eq!(t, want_t, "case {n}");
        }
        // Firing keeps the time it started firing; pending keeps when it became active.
        let (next, _) = step(Some(&inst(Phase::Firing, 50)), fresh(), 100, 10);
        assert_eq!(next.unwrap().firing_since_unix_nano, Some(50));
        let (next, _) = step(Some(&inst(Phase::Pending, 90)), fresh(), 100, 10);
        let next = next.unwrap();
        assert_eq!((next.active_since_unix_nano, next.firing_since_unix_nano), (90, Some(100)));
    }

    #[test]
    fn fingerprints_depend_on_labels_only() {
        let a =
            BTreeMap::from([("alertname".to_string(), "x".to_string()), ("destination".to_string(), "q".to_string())]);
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        b.insert("destination".into(), "r".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // Label boundaries matter: {ab: c} differs from {a: bc}.
        let c = BTreeMap::from([("ab".to_string(), "c".to_string())]);
        let d = BTreeMap::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }
}
