//! Alerting end to end: rules over the API, data over real OTLP, notifications in the
//! Alertmanager format to a real HTTP receiver on loopback.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use flowscope::alerts::notify::WebhookConfig;
use flowscope::config::Config;
use flowscope::demo::scenarios::{self, Builder, MS};
use flowscope::web::api::now_nanos;
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A webhook receiver that answers 500 to its first `failures` posts.
struct Receiver {
    url: String,
    bodies: mpsc::UnboundedReceiver<Value>,
    posts: Arc<AtomicUsize>,
}

async fn receiver(failures: usize) -> Receiver {
    #[derive(Clone)]
    struct Hook {
        tx: mpsc::UnboundedSender<Value>,
        posts: Arc<AtomicUsize>,
        failures: usize,
    }
    async fn handle(State(h): State<Hook>, Json(body): Json<Value>) -> StatusCode {
        if h.posts.fetch_add(1, Ordering::SeqCst) < h.failures {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let _ = h.tx.send(body);
        StatusCode::OK
    }
    let (tx, bodies) = mpsc::unbounded_channel();
    let posts = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route("/hook", post(handle)).with_state(Hook { tx, posts: Arc::clone(&posts), failures });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, bodies, posts }
}

impl Receiver {
    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.bodies.recv())
            .await
            .expect("a notification arrives")
            .unwrap()
    }
}

fn alerting(url: &str) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.alerts.eval_interval = Duration::from_millis(100);
        c.alerts.retry.first_delay = Duration::from_millis(50);
        c.alerts.external_url = "http://flowscope.test:8080".into();
        c.alerts.webhooks = vec![WebhookConfig {
            url: url.into(),
            bearer_token: Some("hook-token".into()),
            timeout_seconds: 5.0,
            name: Some("ops".into()),
        }];
    }
}

async fn post_json(url: String, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn send_depth(server: &TestServer, queue: &str, points: &[(i64, f64)]) {
    for (t, depth) in points {
        let body = flowscope::demo::depth_metric(
            "rabbitmq",
            "rabbitmq.message.current",
            ("rabbitmq.queue.name", queue),
            &[("state", "ready")],
            *t,
            *depth,
        )
        .encode_to_vec();
        assert_eq!(server.post_protobuf("/v1/metrics", body).await, 200);
    }
}

async fn wait_evaluations(server: &TestServer, more_than: u64) -> u64 {
    loop {
        let v: Value = reqwest::get(server.ui_url("/api/alerts")).await.unwrap().json().await.unwrap();
        let n = v["evaluations"].as_u64().unwrap();
        if n > more_than {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_backlog_and_dead_letters_fire_and_resolve_in_alertmanager_format() {
    let mut hook = receiver(0).await;
    let server = TestServer::start_with(alerting(&hook.url)).await;
    let rules = [
        json!({"name": "payments backlog grows", "kind": "backlog_growth", "scope": "payments", "system": "rabbitmq",
               "params": {"window_seconds": 60, "min_slope_per_minute": 10}, "for_seconds": 0, "severity": "critical",
               "labels": {"team": "payments"}, "annotations": {"summary": "{{ subject }} is backing up"}}),
        json!({"name": "orders dead letters", "kind": "dead_letters", "scope": "*.DLT", "params": {"min_count": 1, "window_seconds": 2}}),
        json!({"name": "payments deep", "kind": "queue_depth", "scope": "payments", "params": {"threshold": 100}}),
    ];
    for r in rules {
        let (status, created) = post_json(server.ui_url("/api/alert-rules"), r).await;
        assert_eq!(status, 201, "{created}");
    }

    // The payments queue climbs by 60 messages a minute over the last 50 seconds, to 150.
    let now = now_nanos();
    let points: Vec<(i64, f64)> = (0..=10).map(|i| (now - (50 - i * 5) * 1000 * MS, 100.0 + i as f64 * 5.0)).collect();
    send_depth(&server, "payments", &points).await;
    // A poison message dead-lettered to orders.DLT, just now.
    let mut rng = StdRng::seed_from_u64(1);
    let mut b = Builder::new(&mut rng);
    let poison = scenarios::checkout(&mut b, now_nanos() - 500 * MS, true);
    let (traces_req, _) = flowscope::demo::to_requests(std::mem::take(&mut b.out));
    assert_eq!(server.post_protobuf("/v1/traces", traces_req.encode_to_vec()).await, 200);

    let mut firing = Vec::new();
    while firing.len() < 3 {
        firing.push(hook.next().await);
    }
    let by_name = |list: &[Value], name: &str| {
        list.iter()
            .find(|b| b["groupLabels"]["alertname"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {list:?}"))
    };
    let growth = by_name(&firing, "payments backlog grows");
    assert_eq!(growth["version"], "4");
    assert_eq!(growth["status"], "firing");
    assert_eq!(growth["receiver"], "ops");
    assert_eq!(growth["externalURL"], "http://flowscope.test:8080");
    assert_eq!(growth["truncatedAlerts"], 0);
    assert!(growth["groupKey"].as_str().unwrap().contains("payments backlog grows"));
    let alert = &growth["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["destination"], "payments");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(alert["annotations"]["summary"], "payments is backing up");
    assert!(alert["annotations"]["description"].as_str().unwrap().contains("grows by"));
    assert!(alert["generatorURL"].as_str().unwrap().starts_with("http://flowscope.test:8080/queues"));
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(growth["commonLabels"]["alertname"], "payments backlog grows");

    let dead = by_name(&firing, "orders dead letters");
    assert_eq!(dead["alerts"][0]["labels"]["destination"], "orders.DLT");
    assert_eq!(dead["alerts"][0]["generatorURL"], format!("http://flowscope.test:8080/flows/{}", poison.flow_id));
    assert!(dead["alerts"][0]["annotations"]["description"].as_str().unwrap().contains("invalid payment amount"));
    by_name(&firing, "payments deep");

    // The queue empties: the depth and growth alerts resolve. The dead letter leaves its
    // 2 s window: that alert resolves too.
    send_depth(&server, "payments", &[(now_nanos(), 0.0)]).await;
    let mut resolved = Vec::new();
    while resolved.len() < 3 {
        resolved.push(hook.next().await);
    }
    assert!(resolved.iter().all(|r| r["status"] == "resolved"));
    by_name(&resolved, "payments backlog grows");
    let deep = by_name(&resolved, "payments deep");
    assert_eq!(deep["status"], "resolved");
    assert_ne!(deep["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(deep["alerts"][0]["fingerprint"], by_name(&firing, "payments deep")["alerts"][0]["fingerprint"]);
    assert_eq!(by_name(&resolved, "orders dead letters")["status"], "resolved");

    let state: Value = reqwest::get(server.ui_url("/api/alerts")).await.unwrap().json().await.unwrap();
    let transitions: Vec<&str> =
        state["history"].as_array().unwrap().iter().map(|h| h["transition"].as_str().unwrap()).collect();
    assert_eq!(transitions.iter().filter(|t| **t == "firing").count(), 3);
    assert_eq!(transitions.iter().filter(|t| **t == "resolved").count(), 3);
    assert!(state["deliveries"].as_array().unwrap().iter().all(|d| d["outcome"] == "delivered"));
    assert_eq!(hook.posts.load(Ordering::SeqCst), 6, "each transition notified exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_moved_by_the_broker_fire_a_dead_letter_rule() {
    let mut hook = receiver(0).await;
    let server = TestServer::start_with(alerting(&hook.url)).await;
    let rule = json!({"name": "orders dead letters", "kind": "dead_letters", "scope": "orders.dead-letter",
                      "params": {"min_count": 2, "window_seconds": 600}});
    let (status, created) = post_json(server.ui_url("/api/alert-rules"), rule).await;
    assert_eq!(status, 201, "{created}");
    // RabbitMQ moved both poison orders to its dead-letter exchange; no span published them.
    let shift = now_nanos() - 120_000 * MS - PIKA_DLX_RECORDED_AT;
    replay_recorded_shifted(&server, "recorded/pika-dlx", shift).await;
    let firing = hook.next().await;
    assert_eq!(firing["status"], "firing");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "orders dead letters");
    assert_eq!(alert["labels"]["destination"], "orders.dead-letter");
    assert!(alert["annotations"]["description"].as_str().unwrap().contains("card number failed validation"), "{alert}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_state_survives_a_restart_without_renotifying() {
    let mut hook = receiver(0).await;
    let server = TestServer::start_with(alerting(&hook.url)).await;
    let (status, _) = post_json(
        server.ui_url("/api/alert-rules"),
        json!({"name": "deep", "kind": "queue_depth", "scope": "*", "params": {"threshold": 5}}),
    )
    .await;
    assert_eq!(status, 201);
    send_depth(&server, "jobs", &[(now_nanos(), 50.0)]).await;
    assert_eq!(hook.next().await["status"], "firing");
    let (_, dir) = server.stop().await;

    let server = TestServer::start_in(dir, alerting(&hook.url)).await;
    let rules: Value = reqwest::get(server.ui_url("/api/alert-rules")).await.unwrap().json().await.unwrap();
    assert_eq!(rules["rules"].as_array().unwrap().len(), 1, "API rules persist");
    // Several evaluations after the restart, the alert still fires and nobody was told again.
    wait_evaluations(&server, 5).await;
    let state: Value = reqwest::get(server.ui_url("/api/alerts")).await.unwrap().json().await.unwrap();
    assert_eq!(state["active"][0]["phase"], "firing");
    assert_eq!(hook.posts.load(Ordering::SeqCst), 1);
    assert!(hook.bodies.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_first_gets_the_notification_later() {
    let mut hook = receiver(2).await;
    let server = TestServer::start_with(alerting(&hook.url)).await;
    post_json(
        server.ui_url("/api/alert-rules"),
        json!({"name": "deep", "kind": "queue_depth", "params": {"threshold": 5}}),
    )
    .await;
    send_depth(&server, "jobs", &[(now_nanos(), 50.0)]).await;
    let body = hook.next().await;
    assert_eq!(body["status"], "firing");
    assert_eq!(hook.posts.load(Ordering::SeqCst), 3, "two failures, then success");
    // The delivery outcomes are recorded: two retries, then delivered (on the third attempt).
    loop {
        let state: Value = reqwest::get(server.ui_url("/api/alerts")).await.unwrap().json().await.unwrap();
        let outcomes: Vec<(String, i64)> = state["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["outcome"].as_str().unwrap().to_string(), d["attempts"].as_i64().unwrap()))
            .collect();
        if outcomes.iter().any(|(o, _)| o == "delivered") {
            assert!(outcomes.contains(&("delivered".to_string(), 3)), "{outcomes:?}");
            assert_eq!(outcomes.iter().filter(|(o, _)| o == "retrying").count(), 2);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_api_validates_and_file_rules_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("rules.toml");
    std::fs::write(&rules_file, "[[rules]]\nname = \"orders DLQ\"\nkind = \"dead_letters\"\nscope = \"orders.*\"\nparams = { min_count = 1, window_seconds = 60 }\n").unwrap();
    let text = std::fs::read_to_string(&rules_file).unwrap();
    let file_rules = flowscope::alerts::rules::parse_rules_file(&text).unwrap();
    let server = TestServer::start_with(move |c| c.file_rules = file_rules).await;
    let url = server.ui_url("/api/alert-rules");
    let (status, body) =
        post_json(url.clone(), json!({"name": "x", "kind": "queue_depth", "params": {"threshold": -1}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("params.threshold"), "{body}");
    let (status, body) = post_json(url.clone(), json!({"name": "x", "kind": "queue_depth", "treshold": 1})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("treshold"), "{body}");
    let (status, created) =
        post_json(url.clone(), json!({"name": "deep", "kind": "queue_depth", "params": {"threshold": 10}})).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    let client = reqwest::Client::new();
    let updated: Value = client
        .put(format!("{url}/{id}"))
        .json(&json!({"name": "deeper", "kind": "queue_depth", "params": {"threshold": 20}, "enabled": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "deeper");
    assert_eq!(updated["enabled"], false);
    let list: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let rules = list["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    let file_rule = rules.iter().find(|r| r["file_managed"] == true).unwrap();
    let resp = client.delete(format!("{url}/{}", file_rule["id"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(client.delete(format!("{url}/{id}")).send().await.unwrap().status(), 204);
    assert_eq!(client.get(format!("{url}/{id}")).send().await.unwrap().status(), 404);

    // The HTML form: a post without the CSRF token is refused, a bad value explained.
    let resp = client
        .post(server.ui_url("/alerts/rules"))
        .form(&[("name", "n"), ("kind", "queue_depth"), ("threshold", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let page = reqwest::get(server.ui_url("/alerts")).await.unwrap().text().await.unwrap();
    assert!(page.contains("rules file (read-only)"));
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let resp = client
        .post(server.ui_url("/alerts/rules"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "n"),
            ("kind", "queue_depth"),
            ("threshold", "lots"),
            ("enabled", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("params.threshold: must be a number"));
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect
        .post(server.ui_url("/alerts/rules"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "from the form"),
            ("kind", "queue_depth"),
            ("threshold", "5"),
            ("enabled", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let list: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert!(list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "from the form" && r["params"]["threshold"] == 5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_are_capped_with_a_clear_error() {
    let server = TestServer::start().await;
    let url = server.ui_url("/api/alert-rules");
    let rule = |n: usize| json!({"name": format!("depth {n}"), "kind": "queue_depth", "params": {"threshold": 10}});
    let client = reqwest::Client::new();
    // More creations than the cap at once: exactly the cap is kept.
    use futures::StreamExt;
    let created: Vec<u16> = futures::stream::iter(0..flowscope::alerts::MAX_RULES + 20)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            async move { client.post(url).json(&rule(n)).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(created.iter().filter(|s| **s == 201).count(), flowscope::alerts::MAX_RULES);
    assert_eq!(created.iter().filter(|s| **s == 409).count(), 20);
    let rules: serde_json::Value = reqwest::get(url.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(rules["rules"].as_array().unwrap().len(), flowscope::alerts::MAX_RULES);
    // The alerts page lists them 100 at a time.
    let page = reqwest::get(server.ui_url("/alerts?page=10")).await.unwrap().text().await.unwrap();
    assert!(page.contains("901–1000 of 1000") && page.contains("rel=\"prev\""), "the last page of rules");
    assert_eq!(page.matches("<td><b>depth ").count(), 100);
    let (status, body) = post_json(url.clone(), rule(0)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("delete one first"), "{body}");
    // A rules file past the cap is refused with the count.
    let text: String = (0..=flowscope::alerts::MAX_RULES)
        .map(|n| format!("[[rules]]\nname = \"r{n}\"\nkind = \"queue_depth\"\nparams = {{ threshold = 1 }}\n"))
        .collect();
    let err = flowscope::alerts::rules::parse_rules_file(&text).unwrap_err();
    assert!(err.contains("the most flowscope keeps is"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_read_the_same_share_one_query() {
    let server = TestServer::start_with(|c| c.alerts.eval_interval = Duration::from_millis(100)).await;
    let url = server.ui_url("/api/alert-rules");
    let rule = |name: String, kind: &str, params: Value| json!({"name": name, "kind": kind, "params": params});
    let max = flowscope::alerts::rules::MAX_READS_PER_FAMILY;
    for w in 0..max {
        let (status, body) =
            post_json(url.clone(), rule(format!("dead {w}"), "dead_letters", json!({"window_seconds": 60 + w}))).await;
        assert_eq!(status, 201, "{body}");
    }
    // One window more is refused, naming the parameter and the windows in use.
    let (status, body) =
        post_json(url.clone(), rule("dead x".into(), "dead_letters", json!({"window_seconds": 3600}))).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("invalid rule: params.window_seconds:") && error.contains("60s"), "{error}");
    // Many rules over few reads: each read once per evaluation, whatever the rules.
    for n in 0..300 {
        let (kind, params) = match n % 5 {
            0 => ("queue_depth", json!({"threshold": n})),
            1 => ("backlog_growth", json!({"window_seconds": 300, "min_slope_per_minute": n + 1})),
            2 => ("consumer_stalled", json!({"seconds": 50})),
            3 => ("dead_letters", json!({"window_seconds": 60, "min_count": n})),
            _ => ("chain_latency", json!({"window_seconds": 300, "quantile": 0.99, "budget_ms": n + 1})),
        };
        let (status, body) = post_json(url.clone(), rule(format!("r{n}"), kind, params)).await;
        assert_eq!(status, 201, "{body}");
    }
    let evaluation = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let alerts: Value = reqwest::get(server.ui_url("/api/alerts")).await.unwrap().json().await.unwrap();
            if alerts["last_evaluation"]["rules"] == max + 300 {
                return alerts["last_evaluation"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every rule is evaluated");
    // Queue views over 600 s (depth, and 6 x 50 s stalled) and 300 s, the dead-letter
    // windows, and one chain quantile.
    assert_eq!(evaluation["reads"], 2 + max + 1, "{evaluation}");
}
