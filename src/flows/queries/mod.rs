//! The read side of flows: what the JSON API and the pages show, by concern. Every
//! function runs parameterized SQL from `queries/` on a pooled read connection, maps the
//! rows into response types, and leaves the maths to the pure modules beside it
//! ([`super::backlog`], [`super::breakdown`], [`super::chain_sums`], [`super::edges`]).

mod chains;
mod flow;
mod map;
mod queues;

use std::sync::Arc;

pub use chains::*;
pub use flow::*;
pub use map::*;
pub use queues::*;

use crate::store::{Store, StoreError};

/// A time range in unix nanoseconds, `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

impl Range {
    pub fn seconds(&self) -> f64 {
        (self.to - self.from) as f64 / 1e9
    }
}

fn parse_json(text: Option<String>, empty: serde_json::Value) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(empty)
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Whether anything was ever received: a fresh install shows the getting-started page.
pub async fn has_any_span(store: &Arc<Store>) -> Result<bool, StoreError> {
    store.read(|c| Ok(c.query_row(include_str!("../../../queries/has_any_span.sql"), [], |r| r.get(0))?)).await
}
