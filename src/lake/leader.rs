//! One active stitcher: the node holding a PostgreSQL advisory lock on the catalog's
//! database leads; the others stand by, trying for it every second. The lock lives as
//! long as the session that took it, so a leader that dies (or loses its connection)
//! frees it and a standby takes over. A leader checks its session every second and
//! stops leading as soon as the session is gone.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::LakeError;

/// The advisory lock's key: the same for every flowscope node of a catalog database.
const STITCHER_LOCK: i64 = 0x666c_6f77_7363_6f70; // "flowscop"

/// How often a standby tries for the lock and a leader checks its session.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether this node leads, as it changes.
pub struct Leadership {
    pub leading: watch::Receiver<bool>,
}

impl Leadership {
    /// Campaigns in the background until `stop`. The catalog is a libpq connection string.
    pub fn start(catalog: &str, stop: watch::Receiver<bool>) -> Result<Leadership, LakeError> {
        let config: tokio_postgres::Config = catalog.parse()?;
        let (tx, leading) = watch::channel(false);
        tokio::spawn(campaign(config, tx, stop));
        Ok(Leadership { leading })
    }
}

async fn campaign(config: tokio_postgres::Config, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let mut reported: Option<String> = None;
    loop {
        let outcome = tokio::select! {
            outcome = hold_while_possible(&config, &leading) => outcome,
            _ = stop.changed() => return,
        };
        leading.send_replace(false);
        if let Err(e) = outcome {
            let message = e.to_string();
            if reported.as_deref() != Some(message.as_str()) {
                tracing::warn!(error = %message, "lake catalog unreachable for the stitcher election; retrying");
                reported = Some(message);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Connects, then tries for the lock until it has it, then holds it while the session
/// lasts. Returns (with leadership given up) when the session ends.
async fn hold_while_possible(config: &tokio_postgres::Config, leading: &watch::Sender<bool>) -> Result<(), LakeError> {
    let (client, connection) = config.connect(NoTls).await?;
    let session = tokio::spawn(connection);
    let result = lead(&client, leading).await;
    if *leading.borrow() {
        tracing::warn!("this node is no longer the active stitcher: its catalog session ended");
    }
    session.abort();
    result
}

/// Takes the lock (waiting for it), then checks the session every second; returns the
/// error that ended it.
async fn lead(client: &tokio_postgres::Client, leading: &watch::Sender<bool>) -> Result<(), LakeError> {
    loop {
        let got: bool =
            client.query_one(include_str!("../../queries/lake/stitcher_lock.sql"), &[&STITCHER_LOCK]).await?.get(0);
        if got {
            break;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    tracing::info!("this node is now the active stitcher");
    leading.send_replace(true);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        client.query_one(include_str!("../../queries/lake/session_check.sql"), &[]).await?;
    }
}
