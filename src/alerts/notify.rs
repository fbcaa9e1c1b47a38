//! Webhook notifications in the Prometheus Alertmanager format (version "4"), so anything
//! that consumes Alertmanager webhooks works unchanged. Deliveries run in their own tasks
//! with exponential back-off; evaluation only enqueues them and never waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use super::state::Instance;
use super::store;
use crate::store::Store;
use crate::text::rfc3339;

/// A receiver from the config file's `[[webhooks]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Shown as `receiver` in payloads; defaults to `webhook-N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn default_timeout() -> f64 {
    10.0
}

impl WebhookConfig {
    /// How the receiver is shown: its name, or its URL without what may be secret.
    pub fn display(&self) -> String {
        self.name.clone().unwrap_or_else(|| redact_url(&self.url))
    }
}

/// A URL as it may be shown: scheme, host and port, and the first path segment. Webhook
/// URLs often carry secrets in user info, later path segments (Slack, Teams) or the query.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit('@').next().unwrap_or("");
    let path = rest[authority_end..].split(['?', '#']).next().unwrap_or("");
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let shown = match (segments.next(), segments.next()) {
        (None, _) => String::new(),
        (Some(first), None) if path.len() == first.len() + 1 && !rest.contains('?') => format!("/{first}"),
        (Some(first), _) => format!("/{first}/…"),
    };
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{scheme}{host}{shown}")
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60), max_attempts: 12 }
    }
}

impl RetryPolicy {
    /// Wait before attempt `n + 1` (after `n` failures): doubling, capped.
    pub fn delay(&self, failures: u32) -> Duration {
        self.first_delay.saturating_mul(1 << failures.min(20).saturating_sub(1)).min(self.max_delay)
    }
}

/// A firing or resolved alert to tell receivers about.
#[derive(Debug, Clone)]
pub struct Notification {
    pub resolved_at: Option<i64>,
    pub instance: Instance,
}

impl Notification {
    pub fn status(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "resolved"
        } else {
            "firing"
        }
    }
}

fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some(first) = maps.first() else { return BTreeMap::new() };
    first
        .iter()
        .filter(|(k, v)| maps.iter().all(|m| m.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The Alertmanager webhook body for one notification.
pub fn alertmanager_payload(receiver: &str, external_url: &str, n: &Notification) -> serde_json::Value {
    let i = &n.instance;
    let alertname = i.labels.get("alertname").cloned().unwrap_or_default();
    let group_labels = BTreeMap::from([("alertname".to_string(), alertname.clone())]);
    let base = external_url.trim_end_matches('/');
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={alertname:?}}}"),
        "truncatedAlerts": 0,
        "status": n.status(),
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(&[&i.labels]),
        "commonAnnotations": common(&[&i.annotations]),
        "externalURL": base,
        "alerts": [{
            "status": n.status(),
            "labels": i.labels,
            "annotations": i.annotations,
            "startsAt": rfc3339(i.firing_since_unix_nano.unwrap_or(i.active_since_unix_nano)),
            "endsAt": n.resolved_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": format!("{base}{}", i.page),
            "fingerprint": i.fingerprint,
        }],
    })
}

/// Hands notifications to delivery tasks.
/// Webhook requests in flight at once, over every receiver: 400 firing alerts toward a
/// slow receiver would otherwise hold 400 connections.
const MAX_DELIVERIES_IN_FLIGHT: usize = 16;

#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notification>,
}

impl Notifier {
    pub fn start(
        webhooks: Vec<WebhookConfig>,
        external_url: String,
        store: Arc<Store>,
        retry: RetryPolicy,
    ) -> Notifier {
        let (tx, mut rx) = mpsc::channel::<Notification>(1024);
        let client =
            reqwest::Client::builder().pool_max_idle_per_host(MAX_DELIVERIES_IN_FLIGHT).build().unwrap_or_default();
        let in_flight = Arc::new(Semaphore::new(MAX_DELIVERIES_IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                for (index, hook) in webhooks.iter().enumerate() {
                    let receiver = hook.name.clone().unwrap_or_else(|| format!("webhook-{}", index + 1));
                    let body = alertmanager_payload(&receiver, &external_url, &n);
                    let delivery = Delivery {
                        client: client.clone(),
                        hook: hook.clone(),
                        receiver,
                        body,
                        fingerprint: n.instance.fingerprint.clone(),
                        status: n.status(),
                        retry: retry.clone(),
                        store: Arc::downgrade(&store),
                        in_flight: Arc::clone(&in_flight),
                    };
                    tokio::spawn(delivery.run());
                }
            }
        });
        Notifier { tx }
    }

    /// Enqueues without waiting; a full queue (a receiver down for a long time while
    /// alerts churn) drops the notification with a log line rather than stall evaluation.
    pub fn send(&self, n: Notification) {
        if let Err(e) = self.tx.try_send(n) {
            tracing::error!(error = %e, "notification queue full; dropping a notification");
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    hook: WebhookConfig,
    receiver: String,
    body: serde_json::Value,
    fingerprint: String,
    status: &'static str,
    retry: RetryPolicy,
    /// Not kept open by a delivery waiting to retry: once flowscope stopped, its outcome
    /// is only logged.
    store: std::sync::Weak<Store>,
    in_flight: Arc<Semaphore>,
}

impl Delivery {
    async fn attempt(&self) -> Result<(), String> {
        // Held for the request only, not during the back-off between attempts.
        let _slot = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
        let mut req = self
            .client
            .post(&self.hook.url)
            .json(&self.body)
            .timeout(Duration::from_secs_f64(self.hook.timeout_seconds.max(0.1)));
        if let Some(t) = &self.hook.bearer_token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status())),
            // reqwest's errors name the URL; the URL may hold a secret.
            Err(e) => Err(e.without_url().to_string()),
        }
    }

    async fn run(self) {
        let mut failures = 0;
        loop {
            let result = self.attempt().await;
            let attempts = failures + 1;
            let (outcome, error) = match &result {
                Ok(()) => ("delivered", None),
                Err(e) if attempts >= self.retry.max_attempts => ("failed", Some(e.clone())),
                Err(e) => ("retrying", Some(e.clone())),
            };
            let record = store::DeliveryRecord {
                receiver: self.receiver.clone(),
                fingerprint: self.fingerprint.clone(),
                status: self.status.to_string(),
                attempts: attempts as i32,
                outcome: outcome.to_string(),
                error: error.clone(),
            };
            let recorded = match self.store.upgrade() {
                Some(store) => store::record_delivery(&store, record).await,
                None => Err(crate::store::StoreError::ShuttingDown),
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot record a webhook delivery");
            }
            match result {
                Ok(()) => return,
                Err(e) if outcome == "failed" => {
                    tracing::error!(receiver = %self.receiver, error = %e, "giving up on a webhook notification");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let wait = self.retry.delay(failures);
                    tracing::warn!(receiver = %self.receiver, error = %e, retry_in = ?wait, "webhook delivery failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::state::Phase;

    #[test]
    fn payload_has_the_alertmanager_shape() {
        let instance = Instance {
            fingerprint: "0123456789abcdef".into(),
            rule_id: "r1".into(),
            labels: BTreeMap::from([
                ("alertname".to_string(), "payments backlog".to_string()),
                ("destination".to_string(), "payments".to_string()),
                ("severity".to_string(), "warning".to_string()),
            ]),
            annotations: BTreeMap::from([("summary".to_string(), "growing".to_string())]),
            phase: Phase::Firing,
            value: 12.0,
            active_since_unix_nano: 1_700_000_000_000_000_000,
            firing_since_unix_nano: Some(1_700_000_060_000_000_000),
            page: "/queues?last=1h#payments".into(),
        };
        let firing = alertmanager_payload(
            "ops",
            "http://flowscope:8080/",
            &Notification { resolved_at: None, instance: instance.clone() },
        );
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["receiver"], "ops");
        assert_eq!(firing["groupKey"], "{}:{alertname=\"payments backlog\"}");
        assert_eq!(firing["groupLabels"]["alertname"], "payments backlog");
        assert_eq!(firing["commonLabels"]["destination"], "payments");
        assert_eq!(firing["commonAnnotations"]["summary"], "growing");
        assert_eq!(firing["externalURL"], "http://flowscope:8080");
        assert_eq!(firing["truncatedAlerts"], 0);
        let alert = &firing["alerts"][0];
        assert_eq!(alert["startsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alert["generatorURL"], "http://flowscope:8080/queues?last=1h#payments");
        assert_eq!(alert["fingerprint"], "0123456789abcdef");
        let resolved = alertmanager_payload(
            "ops",
            "http://x",
            &Notification { resolved_at: Some(1_700_000_120_000_000_000), instance },
        );
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2023-11-14T22:15:20.000Z");
    }

    #[test]
    fn webhook_urls_are_shown_without_secrets() {
        for (url, shown) in [
            ("http://alerts.internal:9095/hook", "http://alerts.internal:9095/hook"),
            ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/services/…"),
            ("https://user:pa55@example.com/hook?token=s3cret", "https://example.com/hook/…"),
            ("http://example.com", "http://example.com"),
            ("http://example.com/?key=1", "http://example.com"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("ecret") && !redact_url(url).contains("pa55"));
        }
    }

    #[test]
    fn back_off_doubles_and_caps() {
        let p =
            RetryPolicy { first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(10), max_attempts: 5 };
        let delays: Vec<u64> = (1..=6).map(|f| p.delay(f).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
    }
}
