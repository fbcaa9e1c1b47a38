//! Reads for pages and the API: a bounded number run at once, each on a pooled connection,
//! and a read whose caller went away (its client left, its deadline passed) is
//! interrupted rather than left running on a blocking thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use duckdb::{Connection, InterruptHandle};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::StoreError;

/// Most reads running at once; more wait (asynchronously, and only as long as their caller
/// does) for one to finish. DuckDB parallelises each query over the cores itself, so more
/// at once only adds memory.
pub const MAX_READS: usize = 16;

/// How many idle read connections the pool keeps.
const MAX_IDLE: usize = 8;

pub(super) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    slots: Arc<Semaphore>,
    interrupted: AtomicUsize,
}

/// The connection a read runs on, for the caller to interrupt; `None` once it finished.
#[derive(Default)]
struct Running {
    handle: Mutex<Option<Arc<InterruptHandle>>>,
    abandoned: std::sync::atomic::AtomicBool,
}

/// Held by the caller's future: dropped before the read finished (the future was
/// dropped, nobody waits for the answer), it interrupts the read; after, the read has let
/// go of its connection and there is nothing to interrupt.
struct Abandon(Arc<Running>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.abandoned.store(true, Ordering::Release);
        if let Some(handle) = self.0.handle.lock().as_ref() {
            handle.interrupt();
        }
    }
}

impl ReadPool {
    pub(super) fn new() -> ReadPool {
        ReadPool {
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(MAX_READS)),
            interrupted: AtomicUsize::new(0),
        }
    }

    /// Reads running now.
    pub(super) fn in_flight(&self) -> usize {
        MAX_READS - self.slots.available_permits()
    }

    /// Reads interrupted since start because their caller went away.
    pub(super) fn interrupted(&self) -> usize {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// Runs `f` off the async runtime once a slot is free; `connect` opens a connection
    /// when none is idle. The slot is held until `f` returns, even if the caller left.
    pub(super) async fn run<T, F>(
        self: &Arc<Self>,
        connect: impl FnOnce() -> Result<Connection, StoreError> + Send + 'static,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let slot = Arc::clone(&self.slots).acquire_owned().await.expect("the read semaphore is never closed");
        let running = Arc::new(Running::default());
        let _abandon = Abandon(Arc::clone(&running));
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            pool.run_blocking(&running, connect, f)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn run_blocking<T>(
        &self,
        running: &Running,
        connect: impl FnOnce() -> Result<Connection, StoreError>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take(connect)?;
        *running.handle.lock() = Some(conn.interrupt_handle());
        if running.abandoned.load(Ordering::Acquire) {
            self.give_back(conn);
            return Err(StoreError::Task("the read's caller went away".into()));
        }
        let result = f(&conn);
        running.handle.lock().take();
        if running.abandoned.load(Ordering::Acquire) {
            // Interrupted mid-read: a fresh connection is cheaper than finding out whether
            // this one is left in a state the next read would trip over.
            self.interrupted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.give_back(conn);
        }
        result
    }

    /// An idle connection, or a new one.
    pub(super) fn take(
        &self,
        connect: impl FnOnce() -> Result<Connection, StoreError>,
    ) -> Result<Connection, StoreError> {
        match self.idle.lock().pop() {
            Some(conn) => Ok(conn),
            None => connect(),
        }
    }

    pub(super) fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
