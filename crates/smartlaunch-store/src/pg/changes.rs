//! [`ChangeFeed`] on PostgreSQL: `LISTEN smartlaunch_changes`, whose notifications the
//! triggers of migration 0002 send from every transaction that revokes a token, changes a
//! client or adds a signing key (docs/DESIGN.md "Stateless nodes").

use std::time::Duration;

use smartlaunch_auth::changes::{Change, ChangeFeed, FeedEvent};
use sqlx::postgres::{PgListener, PgPool};

use crate::pg::PgDb;

/// The notification channel of the triggers.
const CHANNEL: &str = "smartlaunch_changes";
/// The wait before listening again after the database could not be reached.
const RETRY: Duration = Duration::from_secs(1);
/// How long a silent feed waits before it checks that its connection still answers.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// One node's subscription to the changes every node (and the command line) makes.
pub struct PgChangeFeed {
    pool: PgPool,
    /// `None` until listening, and again once the connection was lost.
    listener: Option<PgListener>,
}

impl PgDb {
    /// The change feed of this database.  Its first event, once it listens, is
    /// [`FeedEvent::Resync`], and so is its first event after every reconnection.
    pub fn change_feed(&self) -> PgChangeFeed {
        PgChangeFeed { pool: self.pool.clone(), listener: None }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is reported at once (the feed reconnects itself, then resyncs).
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

impl ChangeFeed for PgChangeFeed {
    async fn next(&mut self) -> FeedEvent {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                if self.pool.is_closed() {
                    // The node is shutting down: nothing more will come.
                    return std::future::pending().await;
                }
                match listen(&self.pool).await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        // Listening now: whatever committed before is in the store.
                        return FeedEvent::Resync;
                    }
                    Err(e) => {
                        tracing::warn!("change feed: cannot listen ({e}); retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            };
            let received = match tokio::time::timeout(IDLE_CHECK, listener.try_recv()).await {
                Ok(received) => received,
                Err(_quiet) => {
                    // Nothing heard for a while: a half-open connection (a failover, a dropped
                    // NAT entry) would keep silent for ever, so check it answers; if not,
                    // listen again (which resyncs).
                    let alive = tokio::time::timeout(RETRY * 5, sqlx::query("SELECT 1").execute(&mut *listener)).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("change feed: the connection does not answer; listening again");
                        self.listener = None;
                    }
                    continue;
                }
            };
            match received {
                Ok(Some(notification)) => {
                    return match serde_json::from_str::<Change>(notification.payload()) {
                        Ok(change) => FeedEvent::Change(change),
                        Err(e) => {
                            // A change this version does not know (a newer node): reload all.
                            tracing::warn!("change feed: unknown change {:?} ({e})", notification.payload());
                            FeedEvent::Resync
                        }
                    };
                }
                Ok(None) => {
                    tracing::warn!("change feed: the connection was lost; listening again");
                    self.listener = None;
                }
                Err(e) => {
                    tracing::warn!("change feed: {e}; listening again");
                    self.listener = None;
                }
            }
        }
    }
}
