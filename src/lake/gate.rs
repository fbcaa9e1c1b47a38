//! Appends and retention take turns on the lake's raw tables. DuckLake refuses a DELETE
//! whose table another transaction inserted into since it began (conflicts are per
//! table), and receivers insert into every raw table twice a second, so a retention
//! DELETE racing them would fail nearly every time. A PostgreSQL advisory lock on the
//! catalog's database orders them instead: each receiver commit holds it shared, the
//! retention sweep holds it exclusively for its one transaction. Receivers wait for a
//! sweep (seconds, once per upkeep), never for each other.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio_postgres::{Client, NoTls};

use super::LakeError;
use crate::store::StoreError;

/// The gate's key: the same for every flowscope node of a catalog database.
const APPEND_GATE: i64 = 0x666c_6f77_6761_7465; // "flowgate"

/// How long a commit or a sweep waits for the gate before it gives up (retryably).
pub const GATE_WAIT: Duration = Duration::from_secs(30);

/// A receiver's side of the gate, used from its writer thread.
pub struct AppendGate {
    config: tokio_postgres::Config,
    runtime: Handle,
    /// The session holding the shared lock during commits; made again when it breaks.
    session: Mutex<Option<Client>>,
}

impl AppendGate {
    /// The gate on the catalog `catalog` (a libpq connection string); connects on first
    /// use. Must be made inside the runtime the sessions' connections run on.
    pub fn new(catalog: &str) -> Result<AppendGate, LakeError> {
        Ok(AppendGate { config: catalog.parse()?, runtime: Handle::current(), session: Mutex::new(None) })
    }

    /// Runs `append` holding the gate shared. Blocks the calling thread, which must not be
    /// one of the runtime's. The gate out of reach is a retryable failure, as the lake's is.
    pub fn shared<T>(&self, append: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let unavailable = |e: LakeError| StoreError::Unavailable(format!("the lake's append gate: {e}"));
        let mut session = self.session.lock();
        let client = match session.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.runtime.block_on(connect(&self.config)).map_err(unavailable)?,
        };
        let shared = include_str!("../../queries/lake/gate_shared.sql");
        self.runtime.block_on(lock(&client, shared)).map_err(unavailable)?;
        let result = append();
        match self.runtime.block_on(lock(&client, include_str!("../../queries/lake/gate_shared_release.sql"))) {
            // A session that cannot release is dropped: its end releases the lock.
            Ok(()) => *session = Some(client),
            Err(e) => tracing::warn!(error = %e, "releasing the lake's append gate failed; reconnecting"),
        }
        result
    }
}

/// Holds the gate exclusively while alive (dropping it ends the session, which releases
/// the lock); made by [`exclusive`].
pub struct Exclusive {
    _session: Client,
}

/// Waits (at most [`GATE_WAIT`]) until no receiver commits, then keeps them out until the
/// returned guard is dropped.
pub async fn exclusive(catalog: &str) -> Result<Exclusive, LakeError> {
    let session = connect(&catalog.parse()?).await?;
    lock(&session, include_str!("../../queries/lake/gate_exclusive.sql")).await?;
    Ok(Exclusive { _session: session })
}

/// A session of its own on the catalog's database, whose lock waits end after [`GATE_WAIT`].
async fn connect(config: &tokio_postgres::Config) -> Result<Client, LakeError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let wait = GATE_WAIT.as_millis().to_string();
    client.execute(include_str!("../../queries/lake/gate_wait_set.sql"), &[&wait]).await?;
    Ok(client)
}

/// Runs a gate statement (its parameter: the key).
async fn lock(client: &Client, sql: &str) -> Result<(), LakeError> {
    client.execute(sql, &[&APPEND_GATE]).await?;
    Ok(())
}
