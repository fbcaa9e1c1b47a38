//! Queue aliases: the names one queue has in different places (a RabbitMQ exchange on
//! publish spans, the queue on consumer spans and depth metrics), learnt from flows as
//! they are written and configured in the config file. Pages read them to show one queue
//! once ([`stored`]).

use std::collections::BTreeMap;

use duckdb::{params, Connection};

use crate::flows::analysis::QueueAlias;
use crate::flows::HashSet;
use crate::store::{in_transaction, StoreError};

/// Most queue aliases learnt; real brokers have a few per exchange.
const MAX_LEARNT: usize = 10_000;

/// Every queue alias stored (learnt or configured; migration 007).
pub(crate) fn stored(c: &Connection) -> Result<Vec<QueueAlias>, StoreError> {
    let mut stmt = c.prepare(include_str!("../../../queries/queue_aliases.sql"))?;
    let rows = stmt.query_map([], |r| Ok(QueueAlias { system: r.get(0)?, alias: r.get(1)?, queue: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The aliases already stored, so each is written once.
pub(super) struct QueueAliases {
    known: HashSet<QueueAlias>,
}

impl QueueAliases {
    /// Replaces the configured aliases with `configured` (alias -> queue, any system) and
    /// reads what is stored.
    pub fn open(conn: &Connection, configured: &BTreeMap<String, String>) -> Result<QueueAliases, StoreError> {
        in_transaction(conn, || {
            conn.execute(include_str!("../../../queries/queue_aliases_clear_configured.sql"), [])?;
            let mut insert = conn.prepare(include_str!("../../../queries/queue_alias_insert.sql"))?;
            for (alias, queue) in configured {
                insert.execute(params!["", alias, queue, 0, "config"])?;
            }
            Ok(())
        })?;
        Ok(QueueAliases { known: stored(conn)?.into_iter().collect() })
    }

    /// Records aliases not seen before. An alias is a pair of names one exchange or queue
    /// really has, so they are few; the cap only stops a hostile stream of made-up names
    /// from growing the table and the set.
    pub fn learn<'a>(
        &mut self,
        conn: &Connection,
        seen: impl Iterator<Item = &'a QueueAlias>,
        now: i64,
    ) -> Result<(), StoreError> {
        let new: Vec<QueueAlias> = seen
            .filter(|a| !self.known.contains(*a))
            .take(MAX_LEARNT.saturating_sub(self.known.len()))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        in_transaction(conn, || {
            let mut insert = conn.prepare(include_str!("../../../queries/queue_alias_insert.sql"))?;
            for a in &new {
                insert.execute(params![a.system, a.alias, a.queue, now, "learnt"])?;
            }
            Ok(())
        })?;
        for a in new {
            tracing::info!(system = %a.system, alias = %a.alias, queue = %a.queue, "learnt a queue alias");
            self.known.insert(a);
        }
        Ok(())
    }
}
