//! Alerts on what fails silently in asynchronous systems: queue depth, backlog growth,
//! stalled consumers, dead letters, chain latency budgets.
//!
//! - [`rules`]: the rule shape (API JSON and TOML alike) and its validation;
//! - [`evaluate`]: what each rule kind observes, per queue or chain;
//! - [`state`]: instances and the pending -> firing -> resolved state machine;
//! - [`notify`]: Alertmanager-format webhooks with retries;
//! - [`store`]: rules, instance state, history and deliveries in DuckDB.
//!
//! [`Alerts`] ties them together: rule CRUD for the API and pages, and the evaluator loop.

pub mod evaluate;
pub mod notify;
pub mod rules;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use rand::RngCore;
use std::panic::AssertUnwindSafe;
use tokio::sync::watch;

use crate::flows::queries::{self, Range};
use crate::stage::{StageGuard, StageState};
use crate::store::{Store, StoreError};
use crate::text::now_nanos;
use evaluate::Observation;
use notify::{Notification, Notifier, RetryPolicy, WebhookConfig};
use rules::{compile, Condition, Rule, RuleError, RuleSpec};
use state::{Instance, Phase, Transition};

#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub eval_interval: Duration,
    pub webhooks: Vec<WebhookConfig>,
    /// Base of `generatorURL` and `externalURL` in notifications.
    pub external_url: String,
    pub retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("invalid rule: {0}")]
    Invalid(#[from] RuleError),
    #[error("no alert rule with id {0:?}")]
    NotFound(String),
    #[error("rule {0:?} comes from the rules file; change it there")]
    FileManaged(String),
    #[error("there are already {0} alert rules, the most flowscope keeps; delete one first")]
    TooMany(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most alert rules kept (from the rules file and the UI together).
pub const MAX_RULES: usize = 1_000;

/// Most alerts (queues or chains breaching) one rule holds at once.
pub const MAX_ALERTS_PER_RULE: usize = 1_000;

/// When a window ending `now` starts (saturating, whatever the window).
fn window_start(now: i64, window: Duration) -> i64 {
    now.saturating_sub(window.as_nanos().min(i64::MAX as u128) as i64)
}

/// What one evaluation did: rules judged, queries read for them, and how long it took.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvaluationStats {
    pub rules: usize,
    pub reads: usize,
    pub seconds: f64,
}

/// What an evaluation has read, each [`rules::Read`] once, shared by the rules needing it.
struct Reads {
    now: i64,
    done: HashMap<rules::Read, Fetched>,
}

#[derive(Clone)]
enum Fetched {
    Queues(Arc<Vec<queries::QueueView>>),
    DeadLetters(Arc<Vec<queries::DeadLetterCount>>),
    Chains(Arc<Vec<(String, f64)>>),
}

impl Reads {
    fn new(now: i64) -> Reads {
        Reads { now, done: HashMap::new() }
    }

    async fn get(&mut self, store: &Arc<Store>, read: rules::Read) -> Result<Fetched, StoreError> {
        if let Some(f) = self.done.get(&read) {
            return Ok(f.clone());
        }
        let now = self.now;
        let fetched = match read {
            rules::Read::Queues { window } => Fetched::Queues(Arc::new(
                queries::queues(store, Range { from: window_start(now, window), to: now }).await?,
            )),
            rules::Read::DeadLetters { window } => {
                let range = Range { from: window_start(now, window), to: now + 1 };
                Fetched::DeadLetters(Arc::new(queries::dead_letter_counts(store, range).await?))
            }
            rules::Read::ChainQuantile { window, quantile_millionths } => {
                let range = Range { from: window_start(now, window), to: now + 1 };
                let quantile = f64::from(quantile_millionths) / 1e6;
                Fetched::Chains(Arc::new(queries::chain_quantiles(store, range, quantile).await?))
            }
        };
        self.done.insert(read, fetched.clone());
        Ok(fetched)
    }
}

pub struct Alerts {
    store: Arc<Store>,
    config: AlertConfig,
    file_rules: Vec<Rule>,
    rules: Mutex<Vec<Rule>>,
    instances: Mutex<BTreeMap<String, Instance>>,
    notifier: Notifier,
    evaluations: AtomicU64,
    last_evaluation: Mutex<EvaluationStats>,
    /// Rules whose last evaluation failed, by id: why. Their alerts keep their state.
    rule_errors: Mutex<BTreeMap<String, String>>,
    stage: Arc<StageState>,
}

impl Alerts {
    /// Loads stored rules and instance state, and starts the notifier.
    pub async fn start(
        store: Arc<Store>,
        file_rules: Vec<Rule>,
        config: AlertConfig,
    ) -> Result<Arc<Alerts>, AlertError> {
        let mut rules = Vec::new();
        for (id, spec) in store::load_rules(&store).await? {
            match compile(&spec) {
                Ok(condition) => rules.push(Rule { id, spec, condition, file_managed: false }),
                Err(e) => tracing::warn!(rule = %id, error = %e, "skipping an invalid stored alert rule"),
            }
        }
        let instances = store::load_instances(&store).await?.into_iter().map(|i| (i.fingerprint.clone(), i)).collect();
        let notifier = Notifier::start(
            config.webhooks.clone(),
            config.external_url.clone(),
            Arc::clone(&store),
            config.retry.clone(),
        );
        Ok(Arc::new(Alerts {
            store,
            config,
            file_rules,
            rules: Mutex::new(rules),
            instances: Mutex::new(instances),
            notifier,
            evaluations: AtomicU64::new(0),
            last_evaluation: Mutex::new(EvaluationStats::default()),
            rule_errors: Mutex::new(BTreeMap::new()),
            stage: StageState::new(),
        }))
    }

    /// Every rule, file-managed first.
    pub fn rules(&self) -> Vec<Rule> {
        self.file_rules.iter().cloned().chain(self.rules.lock().iter().cloned()).collect()
    }

    pub fn rule(&self, id: &str) -> Option<Rule> {
        self.rules().into_iter().find(|r| r.id == id)
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.instances.lock().values().cloned().collect()
    }

    /// Whether the evaluator task is alive.
    pub fn stage(&self) -> &Arc<StageState> {
        &self.stage
    }

    /// Rules whose last evaluation failed (id -> error).
    pub fn rule_errors(&self) -> BTreeMap<String, String> {
        self.rule_errors.lock().clone()
    }

    /// What the last evaluation did.
    pub fn last_evaluation(&self) -> EvaluationStats {
        self.last_evaluation.lock().clone()
    }

    /// Completed evaluations since start.
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    pub fn webhooks(&self) -> &[WebhookConfig] {
        &self.config.webhooks
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub async fn create_rule(&self, spec: RuleSpec) -> Result<Rule, AlertError> {
        let condition = compile(&spec)?;
        self.admissible(None, &condition)?;
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let rule = Rule { id: hex::encode(id), spec, condition, file_managed: false };
        store::insert_rule(&self.store, rule.id.clone(), &rule.spec).await?;
        // Checked again where it counts: creations racing past the first check.
        let refused = {
            let mut rules = self.rules.lock();
            match self.admissible_among(&rules, None, &rule.condition) {
                Ok(()) => {
                    rules.push(rule.clone());
                    return Ok(rule);
                }
                Err(e) => e,
            }
        };
        store::delete_rule(&self.store, rule.id.clone()).await?;
        Err(refused)
    }

    pub async fn update_rule(&self, id: &str, spec: RuleSpec) -> Result<Rule, AlertError> {
        self.editable(id)?;
        let condition = compile(&spec)?;
        self.admissible(Some(id), &condition)?;
        store::update_rule(&self.store, id.to_string(), &spec).await?;
        let rule = Rule { id: id.to_string(), spec, condition, file_managed: false };
        let mut rules = self.rules.lock();
        if let Some(r) = rules.iter_mut().find(|r| r.id == id) {
            *r = rule.clone();
        }
        Ok(rule)
    }

    /// Whether one more rule (or rule `replacing`, changed) fits: under [`MAX_RULES`], and
    /// its read one of those in use or within [`rules::MAX_READS_PER_FAMILY`].
    fn admissible(&self, replacing: Option<&str>, condition: &Condition) -> Result<(), AlertError> {
        self.admissible_among(&self.rules.lock(), replacing, condition)
    }

    fn admissible_among(
        &self,
        stored: &[Rule],
        replacing: Option<&str>,
        condition: &Condition,
    ) -> Result<(), AlertError> {
        let count = self.file_rules.len() + stored.len();
        // Each rule is judged every few seconds: their number bounds that work.
        if replacing.is_none() && count >= MAX_RULES {
            return Err(AlertError::TooMany(count));
        }
        let others = self.file_rules.iter().chain(stored).filter(|r| Some(r.id.as_str()) != replacing);
        Ok(rules::check_reads(others.map(|r| &r.condition), condition)?)
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), AlertError> {
        self.editable(id)?;
        store::delete_rule(&self.store, id.to_string()).await?;
        self.rules.lock().retain(|r| r.id != id);
        Ok(())
    }

    fn editable(&self, id: &str) -> Result<(), AlertError> {
        if self.file_rules.iter().any(|r| r.id == id) {
            return Err(AlertError::FileManaged(id.to_string()));
        }
        if !self.rules.lock().iter().any(|r| r.id == id) {
            return Err(AlertError::NotFound(id.to_string()));
        }
        Ok(())
    }

    /// What `rule` observes, from the reads of this evaluation.
    async fn observe(&self, rule: &Rule, reads: &mut Reads) -> Result<Vec<Observation>, StoreError> {
        let spec = &rule.spec;
        let system = spec.system.as_deref();
        Ok(match (&rule.condition, reads.get(&self.store, rule.condition.read()).await?) {
            (Condition::DeadLetters { min_count, .. }, Fetched::DeadLetters(dead)) => {
                evaluate::observe_dead_letters(*min_count, &spec.scope, &dead)
            }
            (Condition::ChainLatency { quantile, budget_ms, .. }, Fetched::Chains(chains)) => {
                evaluate::observe_chains(*quantile, *budget_ms, &spec.scope, &chains)
            }
            (condition, Fetched::Queues(queues)) => evaluate::observe_queues(condition, &spec.scope, system, &queues),
            _ => Vec::new(),
        })
    }

    /// The instance a breaching observation makes, labelled like Alertmanager alerts.
    /// Templates are bounded before and after they are filled (see
    /// [`rules::MAX_ANNOTATION_BYTES`]): a subject of any length fills them to at most that.
    fn instance_of(rule: &Rule, obs: &Observation) -> Instance {
        let mut labels = rule.spec.labels.clone();
        labels.insert("alertname".into(), rule.spec.name.clone());
        labels.insert("severity".into(), rule.spec.severity.clone());
        labels.insert("kind".into(), rule.spec.kind.clone());
        labels.extend(obs.labels.clone());
        let subject = obs.labels.get("destination").or_else(|| obs.labels.get("chain")).cloned().unwrap_or_default();
        let fill = |text: &str| {
            let filled = text
                .replace("{{ value }}", &format!("{}", obs.value))
                .replace("{{value}}", &format!("{}", obs.value))
                .replace("{{ $value }}", &format!("{}", obs.value))
                .replace("{{ subject }}", &subject);
            crate::text::cut(&filled, rules::MAX_ANNOTATION_BYTES).into_owned()
        };
        let mut annotations: BTreeMap<String, String> =
            rule.spec.annotations.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        annotations.entry("summary".into()).or_insert_with(|| format!("{}: {subject}", rule.spec.name));
        annotations.entry("description".into()).or_insert_with(|| obs.description.clone());
        Instance {
            fingerprint: state::fingerprint(&labels),
            rule_id: rule.id.clone(),
            labels,
            annotations,
            phase: Phase::Pending,
            value: obs.value,
            active_since_unix_nano: 0,
            firing_since_unix_nano: None,
            page: obs.page.clone(),
        }
    }

    /// One evaluation of every enabled rule: observe, step each instance, persist, and
    /// enqueue notifications for firing and resolved transitions.
    pub async fn evaluate_once(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let now = now_nanos();
        let rules: Vec<Rule> = self.rules().into_iter().filter(|r| r.spec.enabled).collect();
        let mut fresh: BTreeMap<String, (Instance, i64)> = BTreeMap::new();
        let mut reads = Reads::new(now);
        // One rule failing (an error, even a panic) is marked errored; the others are
        // still evaluated, and its alerts keep their state until it evaluates again.
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        for rule in &rules {
            let for_ns = (rule.spec.for_seconds * 1e9) as i64;
            let observed = match AssertUnwindSafe(self.observe(rule, &mut reads)).catch_unwind().await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(panic) => Err(format!("evaluation panicked: {}", crate::text::panic_message(&panic))),
            };
            let observations = match observed {
                Ok(o) => o,
                Err(e) => {
                    errors.insert(rule.id.clone(), e);
                    continue;
                }
            };
            // A rule over `*` could otherwise make an alert of every destination ever seen.
            for obs in observations.iter().filter(|o| o.breached).take(MAX_ALERTS_PER_RULE) {
                let i = Self::instance_of(rule, obs);
                fresh.insert(i.fingerprint.clone(), (i, for_ns));
            }
        }
        for (id, e) in &errors {
            tracing::warn!(rule = %id, error = %e, "alert rule evaluation failed");
        }
        let names: HashMap<String, String> = self.rules().into_iter().map(|r| (r.id, r.spec.name)).collect();
        let (next, transitions) = {
            let previous = self.instances.lock().clone();
            let mut next = BTreeMap::new();
            let mut transitions = Vec::new();
            let mut keys: Vec<&String> = previous.keys().chain(fresh.keys()).collect();
            keys.sort();
            keys.dedup();
            for fp in keys {
                let prev = previous.get(fp);
                if let Some(p) = prev.filter(|p| errors.contains_key(&p.rule_id)) {
                    next.insert(fp.clone(), p.clone());
                    continue;
                }
                let (new, for_ns) = match fresh.get(fp) {
                    Some((i, f)) => (Some(i.clone()), *f),
                    None => (None, 0),
                };
                let (state, transition) = state::step(prev, new, now, for_ns);
                if let Some(t) = transition {
                    let subject = state.clone().or_else(|| prev.cloned()).expect("a transition has an instance");
                    let rule_name = names
                        .get(&subject.rule_id)
                        .cloned()
                        .unwrap_or_else(|| subject.labels.get("alertname").cloned().unwrap_or_default());
                    transitions.push((t, subject, rule_name));
                }
                if let Some(s) = state {
                    next.insert(fp.clone(), s);
                }
            }
            (next, transitions)
        };
        store::save_evaluation(&self.store, next.values().cloned().collect(), transitions.clone()).await?;
        *self.instances.lock() = next;
        *self.rule_errors.lock() = errors;
        *self.last_evaluation.lock() =
            EvaluationStats { rules: rules.len(), reads: reads.done.len(), seconds: started.elapsed().as_secs_f64() };
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        for (t, instance, _) in transitions {
            if t.notifies() {
                let resolved_at = (t == Transition::Resolved).then_some(now);
                self.notifier.send(Notification { resolved_at, instance });
            }
        }
        Ok(())
    }

    /// Evaluates every `eval_interval` while `active` (in a cluster, only the active
    /// stitcher notifies: one webhook per transition) until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, active: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        let guard = StageGuard::new("alert evaluator", Arc::clone(&self.stage));
        loop {
            let evaluates = *active.borrow();
            if evaluates {
                if let Err(e) = self.evaluate_once().await {
                    tracing::warn!(error = %e, "alert evaluation failed; will retry");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.eval_interval) => {}
                _ = shutdown.wait_for(|s| *s) => {
                    guard.stopped();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_templates_stay_bounded_whatever_the_subject() {
        let template = "{{ subject }} ".repeat(rules::MAX_ANNOTATION_BYTES / 14);
        let spec = rules::RuleSpec {
            name: "r".into(),
            kind: "queue_depth".into(),
            scope: "*".into(),
            system: None,
            params: [("threshold".to_string(), 1.0)].into_iter().collect(),
            for_seconds: 0.0,
            severity: "warning".into(),
            labels: BTreeMap::new(),
            annotations: [("summary".to_string(), template)].into_iter().collect(),
            enabled: true,
        };
        let condition = rules::compile(&spec).expect("a template within the bound compiles");
        let rule = Rule { id: "r".into(), spec, condition, file_managed: false };
        let obs = evaluate::Observation {
            labels: [("destination".to_string(), "q".repeat(10_000))].into_iter().collect(),
            value: 1.0,
            breached: true,
            description: "d".into(),
            page: "/queues".into(),
        };
        let summary = &Alerts::instance_of(&rule, &obs).annotations["summary"];
        assert!(summary.len() <= rules::MAX_ANNOTATION_BYTES && summary.ends_with('…'), "{} bytes", summary.len());
    }
}
