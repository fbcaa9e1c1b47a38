//! A flow's steps (service time, queue waits, retry delay, calls) as `flows.steps` stores
//! them: the stitcher writes them with each flow, the tail attribution reads them back.

use super::analysis::Step;

/// One element of `flows.steps` as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStep {
    pub kind: String,
    pub step: String,
    pub ms: f64,
}

/// A step as stored: `[kind, step, ms]`, or, as older versions wrote it, `{"kind",
/// "step", "ms"}` (half as many bytes again, in every flow row).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StepForm {
    Compact(String, String, f64),
    Named { kind: String, step: String, ms: f64 },
}

/// A flow's steps as `flows.steps` stores them (the stitcher writes, [`parse_steps`] reads).
pub fn steps_json(steps: &[Step]) -> String {
    let stored: Vec<(&str, &str, f64)> =
        steps.iter().map(|s| (s.kind.as_str(), s.name.as_str(), s.ns as f64 / 1e6)).collect();
    serde_json::to_string(&stored).expect("steps serialize")
}

/// Reads `flows.steps`; unreadable text (written by hand?) counts as no steps.
pub fn parse_steps(json: &str) -> Vec<StoredStep> {
    let forms: Vec<StepForm> = serde_json::from_str(json).unwrap_or_default();
    forms
        .into_iter()
        .map(|f| match f {
            StepForm::Compact(kind, step, ms) | StepForm::Named { kind, step, ms } => StoredStep { kind, step, ms },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::analysis::StepKind;

    #[test]
    fn stored_steps_read_back() {
        let steps = [
            Step { kind: StepKind::QueueWait, name: "emails \"q\"".into(), ns: 1_500_000 },
            Step { kind: StepKind::Call, name: "a → b".into(), ns: 2_000_000 },
        ];
        let json = steps_json(&steps);
        assert_eq!(json, r#"[["queue_wait","emails \"q\"",1.5],["call","a → b",2.0]]"#);
        let back = parse_steps(&json);
        assert_eq!(
            back,
            vec![
                StoredStep { kind: "queue_wait".into(), step: "emails \"q\"".into(), ms: 1.5 },
                StoredStep { kind: "call".into(), step: "a → b".into(), ms: 2.0 },
            ]
        );
        // As older versions stored them.
        let named = r#"[{"kind":"service","step":"api","ms":10.5}]"#;
        assert_eq!(parse_steps(named), vec![StoredStep { kind: "service".into(), step: "api".into(), ms: 10.5 }]);
        assert_eq!(parse_steps("not json"), vec![]);
    }
}
