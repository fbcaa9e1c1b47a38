//! Alert rules, instance state, history and delivery outcomes in DuckDB.

use std::collections::BTreeMap;
use std::sync::Arc;

use duckdb::params;
use serde::Serialize;

use super::rules::RuleSpec;
use super::state::{Instance, Phase, Transition};
use crate::store::{in_transaction, Store, StoreError};
use crate::text::now_nanos;

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable")
}

fn map(text: String) -> BTreeMap<String, String> {
    serde_json::from_str(&text).unwrap_or_default()
}

/// Rules created through the UI or API, as (id, spec). A stored rule that no longer parses
/// (written by a newer version) is skipped with a warning.
pub async fn load_rules(store: &Arc<Store>) -> Result<Vec<(String, RuleSpec)>, StoreError> {
    store
        .read(|c| {
            let mut stmt = c.prepare(include_str!("../../queries/alert_rules_list.sql"))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json) = row?;
                match serde_json::from_str(&json) {
                    Ok(spec) => out.push((id, spec)),
                    Err(e) => {
                        tracing::warn!(rule = %id, error = %e, "skipping a stored alert rule that does not parse")
                    }
                }
            }
            Ok(out)
        })
        .await
}

pub async fn insert_rule(store: &Arc<Store>, id: String, spec: &RuleSpec) -> Result<(), StoreError> {
    let json = to_json(spec);
    store
        .write(move |c| {
            let now = now_nanos();
            c.execute(include_str!("../../queries/alert_rule_insert.sql"), params![id, json, now, now])?;
            Ok(())
        })
        .await
}

pub async fn update_rule(store: &Arc<Store>, id: String, spec: &RuleSpec) -> Result<(), StoreError> {
    let json = to_json(spec);
    store
        .write(move |c| {
            c.execute(include_str!("../../queries/alert_rule_update.sql"), params![json, now_nanos(), id])?;
            Ok(())
        })
        .await
}

pub async fn delete_rule(store: &Arc<Store>, id: String) -> Result<(), StoreError> {
    store
        .write(move |c| {
            c.execute(include_str!("../../queries/alert_rule_delete.sql"), [id])?;
            Ok(())
        })
        .await
}

pub async fn load_instances(store: &Arc<Store>) -> Result<Vec<Instance>, StoreError> {
    store
        .read(|c| {
            let mut stmt = c.prepare(include_str!("../../queries/alert_instances_list.sql"))?;
            let rows = stmt.query_map([], |r| {
                Ok(Instance {
                    fingerprint: r.get(0)?,
                    rule_id: r.get(1)?,
                    labels: map(r.get(2)?),
                    annotations: map(r.get(3)?),
                    phase: Phase::parse(&r.get::<_, String>(4)?).unwrap_or(Phase::Pending),
                    value: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
                    active_since_unix_nano: r.get(6)?,
                    firing_since_unix_nano: r.get(7)?,
                    page: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

/// One transition for the history table.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub time_unix_nano: i64,
    pub rule_id: String,
    pub rule_name: String,
    pub fingerprint: String,
    pub transition: String,
    pub value: Option<f64>,
    pub labels: BTreeMap<String, String>,
}

/// Replaces the stored instances with `instances` and appends the transitions, in one
/// transaction, so a restart resumes exactly where evaluation left off.
pub async fn save_evaluation(
    store: &Arc<Store>,
    instances: Vec<Instance>,
    transitions: Vec<(Transition, Instance, String)>,
) -> Result<(), StoreError> {
    store
        .write(move |c| {
            in_transaction(c, || {
                c.execute_batch(include_str!("../../queries/alert_instances_clear.sql"))?;
                let mut app = c.appender("alert_instances")?;
                for i in &instances {
                    app.append_row(params![
                        i.fingerprint,
                        i.rule_id,
                        to_json(&i.labels),
                        to_json(&i.annotations),
                        i.phase.as_str(),
                        i.value,
                        i.active_since_unix_nano,
                        i.firing_since_unix_nano,
                        i.page,
                    ])?;
                }
                app.flush()?;
                let now = now_nanos();
                for (t, i, rule_name) in &transitions {
                    c.execute(
                        include_str!("../../queries/alert_history_insert.sql"),
                        params![now, i.rule_id, rule_name, i.fingerprint, t.as_str(), i.value, to_json(&i.labels)],
                    )?;
                }
                Ok(())
            })
        })
        .await
}

pub async fn history(store: &Arc<Store>, limit: i64) -> Result<Vec<HistoryEntry>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare(include_str!("../../queries/alert_history_recent.sql"))?;
            let rows = stmt.query_map([limit], |r| {
                Ok(HistoryEntry {
                    time_unix_nano: r.get(0)?,
                    rule_id: r.get(1)?,
                    rule_name: r.get(2)?,
                    fingerprint: r.get(3)?,
                    transition: r.get(4)?,
                    value: r.get(5)?,
                    labels: map(r.get(6)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub receiver: String,
    pub fingerprint: String,
    pub status: String,
    pub attempts: i32,
    pub outcome: String,
    pub error: Option<String>,
}

pub async fn record_delivery(store: &Arc<Store>, d: DeliveryRecord) -> Result<(), StoreError> {
    store
        .write(move |c| {
            c.execute(
                include_str!("../../queries/alert_delivery_insert.sql"),
                params![now_nanos(), d.receiver, d.fingerprint, d.status, d.attempts, d.outcome, d.error],
            )?;
            Ok(())
        })
        .await
}

pub async fn deliveries(store: &Arc<Store>, limit: i64) -> Result<Vec<(i64, DeliveryRecord)>, StoreError> {
    store
        .read(move |c| {
            let mut stmt = c.prepare(include_str!("../../queries/alert_deliveries_recent.sql"))?;
            let rows = stmt.query_map([limit], |r| {
                Ok((
                    r.get(0)?,
                    DeliveryRecord {
                        receiver: r.get(1)?,
                        fingerprint: r.get(2)?,
                        status: r.get(3)?,
                        attempts: r.get(4)?,
                        outcome: r.get(5)?,
                        error: r.get(6)?,
                    },
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
}
