//! Whether a long-running stage (the writer, the stitcher, the alert evaluator) is alive.
//! Each runs under a [`StageGuard`]: if its thread or task ends without being asked to,
//! by a panic or otherwise, the stage is marked dead, `/readyz` fails naming it and
//! `/metrics` shows it, and for the writer the process exits so a supervisor restarts it.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct StageState {
    dead: Mutex<Option<String>>,
    died: Notify,
}

impl StageState {
    pub fn new() -> Arc<StageState> {
        Arc::new(StageState::default())
    }

    /// Why the stage died, if it did.
    pub fn dead(&self) -> Option<String> {
        self.dead.lock().clone()
    }

    /// Waits until the stage dies.
    pub async fn died(&self) {
        loop {
            let notified = self.died.notified();
            if self.dead().is_some() {
                return;
            }
            notified.await;
        }
    }

    fn mark_dead(&self, why: String) {
        tracing::error!(reason = %why, "a flowscope stage died");
        *self.dead.lock() = Some(why);
        self.died.notify_waiters();
    }
}

/// Held by a stage's thread or task for as long as it runs.
pub struct StageGuard {
    state: Arc<StageState>,
    name: &'static str,
    stopped: bool,
}

impl StageGuard {
    pub fn new(name: &'static str, state: Arc<StageState>) -> StageGuard {
        StageGuard { state, name, stopped: false }
    }

    /// The stage ended because it was asked to.
    pub fn stopped(mut self) {
        self.stopped = true;
    }

    /// The stage ended because it cannot go on, for this reason.
    pub fn died(mut self, why: String) {
        self.stopped = true;
        self.state.mark_dead(format!("the {} stopped: {why}", self.name));
    }
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        if !self.stopped {
            let how = if std::thread::panicking() { "panicked" } else { "ended unexpectedly" };
            self.state.mark_dead(format!("the {} {how}", self.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_stage_is_dead_and_a_stopped_one_is_not() {
        let state = StageState::new();
        let s = Arc::clone(&state);
        let _ = std::thread::spawn(move || {
            let _guard = StageGuard::new("writer", s);
            panic!("boom");
        })
        .join();
        assert_eq!(state.dead().as_deref(), Some("the writer panicked"));

        let state = StageState::new();
        StageGuard::new("stitcher", Arc::clone(&state)).stopped();
        assert_eq!(state.dead(), None);
    }
}
