//! Alert rules: the shape users write (JSON in the API, `[[rules]]` in TOML), and their
//! validation into a typed [`Condition`]. Errors name the field at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A rule as written by a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub kind: String,
    /// Destination (queue/topic) or chain glob; `*` matches anything.
    #[serde(default = "any_scope")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    #[serde(default)]
    pub for_seconds: f64,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn any_scope() -> String {
    "*".into()
}
fn default_severity() -> String {
    "warning".into()
}
fn yes() -> bool {
    true
}

/// Every rule kind with the parameters it takes.
pub const KINDS: &[(&str, &[&str])] = &[
    ("queue_depth", &["threshold"]),
    ("backlog_growth", &["window_seconds", "min_slope_per_minute", "max_drain_seconds"]),
    ("consumer_stalled", &["seconds"]),
    ("dead_letters", &["min_count", "window_seconds"]),
    ("chain_latency", &["quantile", "budget_ms", "window_seconds"]),
];

/// The parameters a kind takes (none for an unknown kind).
pub fn params_of(kind: &str) -> &'static [&'static str] {
    KINDS.iter().find(|(k, _)| *k == kind).map_or(&[], |(_, p)| p)
}
pub const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// What a rule watches, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Queue depth above `threshold`.
    QueueDepth { threshold: f64 },
    /// Depth slope over `window` above `min_slope_per_minute`, or the drain time above
    /// `max_drain_seconds` (or not draining at all) while messages wait.
    BacklogGrowth { window: Duration, min_slope_per_minute: Option<f64>, max_drain_seconds: Option<f64> },
    /// Messages waiting and none consumed for `window`.
    ConsumerStalled { window: Duration },
    /// At least `min_count` dead letters into a matching destination within `window`.
    DeadLetters { min_count: f64, window: Duration },
    /// The chain's `quantile` of end-to-end duration over `window` above `budget_ms`.
    ChainLatency { quantile: f64, budget_ms: f64, window: Duration },
}

/// A rule that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> RuleError {
    RuleError { field: field.into(), message: message.into() }
}

/// Reads `params`, insisting on the names a kind takes.
struct Params<'a> {
    params: &'a BTreeMap<String, f64>,
    allowed: &'static [&'static str],
}

impl Params<'_> {
    fn optional(&self, name: &str, check: fn(f64) -> bool, what: &str) -> Result<Option<f64>, RuleError> {
        match self.params.get(name) {
            None => Ok(None),
            Some(v) if v.is_finite() && check(*v) => Ok(Some(*v)),
            Some(v) => Err(err(&format!("params.{name}"), format!("must be {what}, got {v}"))),
        }
    }

    fn required(&self, name: &str, check: fn(f64) -> bool, what: &str) -> Result<f64, RuleError> {
        self.optional(name, check, what)?.ok_or_else(|| err(&format!("params.{name}"), format!("is required ({what})")))
    }

    fn no_unknown(&self) -> Result<(), RuleError> {
        match self.params.keys().find(|k| !self.allowed.contains(&k.as_str())) {
            Some(k) => Err(err(
                &format!("params.{k}"),
                format!("is not a parameter of this kind; use {}", self.allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

fn non_negative(v: f64) -> bool {
    (0.0..=MAX_THRESHOLD).contains(&v)
}
fn fraction(v: f64) -> bool {
    v > 0.0 && v < 1.0
}

/// Longest window or `for` duration a rule may have: 30 days (retention is a week by
/// default; evaluation looks back a few windows).
pub const MAX_SECONDS: f64 = 30.0 * 86_400.0;
/// Largest count, depth or latency budget a rule may compare with.
pub const MAX_THRESHOLD: f64 = 1e15;

fn window_seconds(v: f64) -> bool {
    (1.0..=MAX_SECONDS).contains(&v)
}
fn positive(v: f64) -> bool {
    v > 0.0 && v <= MAX_THRESHOLD
}
const WINDOW: &str = "seconds from 1 to 2592000 (30 days)";

fn seconds(v: f64) -> Duration {
    // Validated to lie in 1..=MAX_SECONDS, so this cannot panic.
    Duration::from_secs_f64(v.clamp(0.0, MAX_SECONDS))
}

/// Most labels, and most annotations, on one rule.
pub const MAX_LABELS: usize = 32;
/// Most bytes of a label or annotation name.
pub const MAX_LABEL_NAME_BYTES: usize = 128;
/// Most bytes of a label value.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Most bytes of an annotation (a template, before and after it is filled).
pub const MAX_ANNOTATION_BYTES: usize = 4096;

/// Validates a rule and returns what it watches.
pub fn compile(spec: &RuleSpec) -> Result<Condition, RuleError> {
    if spec.name.trim().is_empty() {
        return Err(err("name", "is required"));
    }
    if spec.name.len() > 200 {
        return Err(err("name", "must be at most 200 characters"));
    }
    if spec.scope.trim().is_empty() {
        return Err(err("scope", "is required: a destination or chain glob such as orders.* or *"));
    }
    // Matched against every destination and chain in each evaluation.
    if spec.scope.len() > 500 {
        return Err(err("scope", "must be at most 500 characters"));
    }
    if !spec.for_seconds.is_finite() || !(0.0..=MAX_SECONDS).contains(&spec.for_seconds) {
        return Err(err("for_seconds", format!("must be from 0 to 2592000 (30 days), got {}", spec.for_seconds)));
    }
    if !SEVERITIES.contains(&spec.severity.as_str()) {
        return Err(err("severity", format!("must be one of {}, got {:?}", SEVERITIES.join(", "), spec.severity)));
    }
    // Copied into every alert the rule makes, stored and sent with every notification.
    for (field, map, max_value) in
        [("labels", &spec.labels, MAX_LABEL_VALUE_BYTES), ("annotations", &spec.annotations, MAX_ANNOTATION_BYTES)]
    {
        if map.len() > MAX_LABELS {
            return Err(err(field, format!("at most {MAX_LABELS}, got {}", map.len())));
        }
        for (key, value) in map {
            let shown: String = key.chars().take(40).collect();
            if key.len() > MAX_LABEL_NAME_BYTES {
                return Err(err(
                    &format!("{field}.{shown}"),
                    format!("names are at most {MAX_LABEL_NAME_BYTES} bytes"),
                ));
            }
            if value.len() > max_value {
                return Err(err(&format!("{field}.{shown}"), format!("values are at most {max_value} bytes")));
            }
        }
    }
    for key in spec.labels.keys() {
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(err(&format!("labels.{key}"), "label names are letters, digits and underscores"));
        }
    }
    let p = Params { params: &spec.params, allowed: params_of(&spec.kind) };
    let condition = match spec.kind.as_str() {
        "queue_depth" => {
            p.no_unknown()?;
            Condition::QueueDepth {
                threshold: p.required("threshold", non_negative, "a message count from 0 to 1e15")?,
            }
        }
        "backlog_growth" => {
            p.no_unknown()?;
            let window = p.required("window_seconds", window_seconds, WINDOW)?;
            let min_slope_per_minute =
                p.optional("min_slope_per_minute", positive, "messages per minute above zero")?;
            let max_drain_seconds = p.optional("max_drain_seconds", window_seconds, WINDOW)?;
            if min_slope_per_minute.is_none() && max_drain_seconds.is_none() {
                return Err(err(
                    "params.min_slope_per_minute",
                    "one of min_slope_per_minute or max_drain_seconds is required",
                ));
            }
            Condition::BacklogGrowth { window: seconds(window), min_slope_per_minute, max_drain_seconds }
        }
        "consumer_stalled" => {
            p.no_unknown()?;
            Condition::ConsumerStalled { window: seconds(p.required("seconds", window_seconds, WINDOW)?) }
        }
        "dead_letters" => {
            p.no_unknown()?;
            Condition::DeadLetters {
                min_count: p.optional("min_count", positive, "a count above zero (at most 1e15)")?.unwrap_or(1.0),
                window: seconds(p.optional("window_seconds", window_seconds, WINDOW)?.unwrap_or(300.0)),
            }
        }
        "chain_latency" => {
            p.no_unknown()?;
            Condition::ChainLatency {
                quantile: p.optional("quantile", fraction, "a fraction between 0 and 1, such as 0.99")?.unwrap_or(0.99),
                budget_ms: p.required("budget_ms", positive, "milliseconds above zero (at most 1e15)")?,
                window: seconds(p.optional("window_seconds", window_seconds, WINDOW)?.unwrap_or(300.0)),
            }
        }
        other => {
            let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            return Err(err("kind", format!("unknown kind {other:?}; use one of {}", kinds.join(", "))));
        }
    };
    Ok(condition)
}

/// What an evaluation reads for a rule. Rules that read the same share one query, so an
/// evaluation's cost grows with the different reads, not with the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Read {
    /// Queue views over a window ending now (depth, backlog and stalled-consumer rules).
    Queues { window: Duration },
    /// Dead letters per destination over a window.
    DeadLetters { window: Duration },
    /// A quantile of each chain's duration over a window (in millionths, to be a key).
    ChainQuantile { window: Duration, quantile_millionths: u32 },
}

impl Read {
    fn family(&self) -> &'static str {
        match self {
            Read::Queues { .. } => "queue_depth, backlog_growth and consumer_stalled",
            Read::DeadLetters { .. } => "dead_letters",
            Read::ChainQuantile { .. } => "chain_latency",
        }
    }
}

/// Most different reads among rules of one family (see [`Read`]): windows among queue
/// rules, windows among dead-letter rules, (window, quantile) pairs among chain rules.
/// Queue-depth rules, whose window is fixed, are never refused: they add one read at most.
pub const MAX_READS_PER_FAMILY: usize = 16;

impl Condition {
    /// The parameter that sets the window of this condition's read; None when the window
    /// is fixed (queue depth: one read, whatever the rules).
    fn window_param(&self) -> Option<&'static str> {
        match self {
            Condition::QueueDepth { .. } => None,
            Condition::ConsumerStalled { .. } => Some("params.seconds"),
            _ => Some("params.window_seconds"),
        }
    }

    /// The read this condition is judged on.
    pub fn read(&self) -> Read {
        match self {
            Condition::QueueDepth { .. } => Read::Queues { window: Duration::from_secs(600) },
            Condition::BacklogGrowth { window, .. } => Read::Queues { window: *window },
            // Rates are judged on the last sixth of the range: make that the window.
            Condition::ConsumerStalled { window } => Read::Queues { window: window.saturating_mul(6) },
            Condition::DeadLetters { window, .. } => Read::DeadLetters { window: *window },
            Condition::ChainLatency { quantile, window, .. } => Read::ChainQuantile {
                window: *window,
                quantile_millionths: (quantile * 1e6).round().clamp(0.0, 1e6) as u32,
            },
        }
    }
}

/// Refuses a condition whose read would be one too many for its family, given the reads
/// of the other rules; the error names the parameter to change and the reads in use.
pub fn check_reads<'a>(others: impl IntoIterator<Item = &'a Condition>, new: &Condition) -> Result<(), RuleError> {
    let Some(field) = new.window_param() else { return Ok(()) };
    let read = new.read();
    let mut in_use: Vec<Read> = others
        .into_iter()
        .map(Condition::read)
        .filter(|r| std::mem::discriminant(r) == std::mem::discriminant(&read))
        .collect();
    in_use.sort();
    in_use.dedup();
    if in_use.len() < MAX_READS_PER_FAMILY || in_use.contains(&read) {
        return Ok(());
    }
    let shown: Vec<String> = in_use
        .iter()
        .map(|r| match r {
            Read::Queues { window } | Read::DeadLetters { window } => format!("{}s", window.as_secs()),
            Read::ChainQuantile { window, quantile_millionths } => {
                format!("{}s at {}", window.as_secs(), f64::from(*quantile_millionths) / 1e6)
            }
        })
        .collect();
    Err(err(
        field,
        format!(
            "{} rules already read {MAX_READS_PER_FAMILY} different windows, the most evaluated; use one of {}",
            read.family(),
            shown.join(", ")
        ),
    ))
}

/// A validated rule with its id. Rules from the rules file are read-only in the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub spec: RuleSpec,
    pub condition: Condition,
    pub file_managed: bool,
}

/// The rules file: `[[rules]]` tables in the same shape as the API's JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<toml::Spanned<toml::Value>>,
}

/// Parses and validates a rules file; errors name the line and the field at fault.
pub fn parse_rules_file(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.rules.len() > super::MAX_RULES {
        return Err(format!("{} rules; the most flowscope keeps is {}", file.rules.len(), super::MAX_RULES));
    }
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut rules = Vec::new();
    for (i, spanned) in file.rules.into_iter().enumerate() {
        let line = line_of(spanned.span().start);
        let spec: RuleSpec = spanned
            .into_inner()
            .try_into()
            .map_err(|e: toml::de::Error| format!("rule {} (line {line}): {}", i + 1, e.message()))?;
        let condition = compile(&spec).map_err(|e| format!("rule {} {:?} (line {line}): {e}", i + 1, spec.name))?;
        let slug: String =
            spec.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        check_reads(rules.iter().map(|r: &Rule| &r.condition), &condition)
            .map_err(|e| format!("rule {} {:?} (line {line}): {e}", i + 1, spec.name))?;
        rules.push(Rule { id: format!("file-{}-{slug}", i + 1), spec, condition, file_managed: true });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, params: &[(&str, f64)]) -> RuleSpec {
        RuleSpec {
            name: "r".into(),
            kind: kind.into(),
            scope: "*".into(),
            system: None,
            params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            for_seconds: 0.0,
            severity: "warning".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            enabled: true,
        }
    }

    #[test]
    fn valid_rules_compile() {
        let table = vec![
            (spec("queue_depth", &[("threshold", 100.0)]), Condition::QueueDepth { threshold: 100.0 }),
            (
                spec("backlog_growth", &[("window_seconds", 120.0), ("min_slope_per_minute", 5.0)]),
                Condition::BacklogGrowth {
                    window: Duration::from_secs(120),
                    min_slope_per_minute: Some(5.0),
                    max_drain_seconds: None,
                },
            ),
            (
                spec("consumer_stalled", &[("seconds", 60.0)]),
                Condition::ConsumerStalled { window: Duration::from_secs(60) },
            ),
            (spec("dead_letters", &[]), Condition::DeadLetters { min_count: 1.0, window: Duration::from_secs(300) }),
            (
                spec("chain_latency", &[("budget_ms", 250.0)]),
                Condition::ChainLatency { quantile: 0.99, budget_ms: 250.0, window: Duration::from_secs(300) },
            ),
        ];
        for (s, want) in table {
            assert_eq!(compile(&s).unwrap(), want, "{}", s.kind);
        }
    }

    #[test]
    fn invalid_rules_name_the_field() {
        let mut bad_severity = spec("queue_depth", &[("threshold", 1.0)]);
        bad_severity.severity = "page-me".into();
        let mut no_name = spec("queue_depth", &[("threshold", 1.0)]);
        no_name.name = " ".into();
        let mut bad_for = spec("queue_depth", &[("threshold", 1.0)]);
        bad_for.for_seconds = -1.0;
        let mut bad_label = spec("queue_depth", &[("threshold", 1.0)]);
        bad_label.labels.insert("team-name".into(), "x".into());
        let mut long_scope = spec("queue_depth", &[("threshold", 1.0)]);
        long_scope.scope = "*a".repeat(251);
        let mut many_labels = spec("queue_depth", &[("threshold", 1.0)]);
        many_labels.labels = (0..=MAX_LABELS).map(|i| (format!("l{i}"), "x".into())).collect();
        let mut long_label = spec("queue_depth", &[("threshold", 1.0)]);
        long_label.labels.insert("team".into(), "x".repeat(MAX_LABEL_VALUE_BYTES + 1));
        let mut long_annotation = spec("queue_depth", &[("threshold", 1.0)]);
        long_annotation.annotations.insert("summary".into(), "{{ subject }}".repeat(1_000));
        let table = vec![
            (spec("queue_size", &[]), "kind"),
            (spec("queue_depth", &[]), "params.threshold"),
            (spec("queue_depth", &[("threshold", -1.0)]), "params.threshold"),
            (spec("queue_depth", &[("threshold", 1.0), ("treshold", 2.0)]), "params.treshold"),
            (spec("backlog_growth", &[("window_seconds", 60.0)]), "params.min_slope_per_minute"),
            (spec("chain_latency", &[("budget_ms", 10.0), ("quantile", 99.0)]), "params.quantile"),
            (bad_severity, "severity"),
            (no_name, "name"),
            (bad_for, "for_seconds"),
            (bad_label, "labels.team-name"),
            (long_scope, "scope"),
            (many_labels, "labels"),
            (long_label, "labels.team"),
            (long_annotation, "annotations.summary"),
            // Out of every documented bound: overflowing windows, absurd thresholds.
            (spec("consumer_stalled", &[("seconds", 1e19)]), "params.seconds"),
            (spec("consumer_stalled", &[("seconds", 1e20)]), "params.seconds"),
            (spec("consumer_stalled", &[("seconds", 0.5)]), "params.seconds"),
            (
                spec("backlog_growth", &[("window_seconds", 1e308), ("min_slope_per_minute", 1.0)]),
                "params.window_seconds",
            ),
            (spec("dead_letters", &[("window_seconds", f64::INFINITY)]), "params.window_seconds"),
            (spec("queue_depth", &[("threshold", 1e300)]), "params.threshold"),
            (spec("chain_latency", &[("budget_ms", 1e18)]), "params.budget_ms"),
        ];
        for (s, field) in table {
            assert_eq!(compile(&s).unwrap_err().field, field, "{s:?}");
        }
    }

    #[test]
    fn rules_file_errors_point_at_the_line() {
        let ok = "[[rules]]\nname = \"orders DLQ\"\nkind = \"dead_letters\"\nscope = \"orders.*\"\nparams = { min_count = 1, window_seconds = 60 }\n";
        let rules = parse_rules_file(ok).unwrap();
        assert_eq!(rules[0].id, "file-1-orders-dlq");
        assert!(rules[0].file_managed);
        let bad = format!("{ok}\n[[rules]]\nname = \"deep\"\nkind = \"queue_depth\"\nparams = {{ threshold = -5 }}\n");
        let e = parse_rules_file(&bad).unwrap_err();
        assert!(e.contains("rule 2") && e.contains("line 7") && e.contains("params.threshold"), "{e}");
        let typo = "[[rules]]\nname = \"x\"\nkind = \"queue_depth\"\nthreshhold = 3\n";
        let e = parse_rules_file(typo).unwrap_err();
        assert!(e.contains("threshhold") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_family_reads_at_most_its_share_of_windows() {
        let backlog = |w: u64| Condition::BacklogGrowth {
            window: Duration::from_secs(w),
            min_slope_per_minute: Some(1.0),
            max_drain_seconds: None,
        };
        let in_use: Vec<Condition> = (1..=MAX_READS_PER_FAMILY as u64).map(|i| backlog(i * 60)).collect();
        let stalled = |s: u64| Condition::ConsumerStalled { window: Duration::from_secs(s) };
        let dead = Condition::DeadLetters { min_count: 1.0, window: Duration::from_secs(7) };
        // (new condition, Ok or the field named)
        let table: Vec<(Condition, Result<(), &str>)> = vec![
            (backlog(120), Ok(())),
            (backlog(7), Err("params.window_seconds")),
            (stalled(10), Ok(())), // 6 x 10 s: the 60 s queue read already in use
            (stalled(7), Err("params.seconds")),
            (Condition::QueueDepth { threshold: 1.0 }, Ok(())),
            (dead, Ok(())),
        ];
        for (new, want) in table {
            let got = check_reads(&in_use, &new).map_err(|e| e.field);
            assert_eq!(got, want.map_err(String::from), "{new:?}");
        }
    }
}
