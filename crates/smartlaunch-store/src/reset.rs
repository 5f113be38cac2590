//! The sandbox reset (issue 9, item 6): one transaction that empties what developers and apps
//! added — apps, grants, tokens, launches, consents, sessions, inspector events, export jobs,
//! users — and puts back the demo data and demo users.  The signing keys stay, and so do the
//! revocation tables: every token issued before the reset is recorded there as revoked, so it
//! stays dead after a restart too.

use serde_json::Value;
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;
use smartlaunch_fhir::store::StoreError;

use crate::auth_grants::revoke_client_access;
use crate::bulk::{put_many, BulkBatch};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::conn::{all, exec};
use crate::SqliteDb;

/// Every table a reset empties, children before parents.  A table added by a later migration
/// that holds something a developer or an app created belongs here (e.g. `launch_links`).
pub const RESET_TABLES: &[&str] = &[
    // Sign-in and authorization state.
    "sessions",
    "pending_authorizations",
    "consents",
    "authorization_codes",
    "refresh_tokens",
    "grants",
    "client_assertion_jtis",
    // Launches and what the inspector recorded of them.
    "launch_events",
    "launch_traces",
    "launches",
    "backend_sessions",
    "launch_links",
    "hand_traces",
    "trace_switches",
    // Bulk Data export jobs (their files are the server's to delete).
    "export_jobs",
    // Apps and people.
    "clients",
    "users",
    // The FHIR data, current and history.
    "search_index",
    "resource_compartments",
    "resource_versions",
    "resources",
];

/// What a reset removed that lives outside the database too.
#[derive(Debug, Default)]
pub struct ResetReport {
    /// The apps removed: every token issued to them before the reset is revoked.
    pub clients: Vec<String>,
    /// The export jobs removed: their files are to be deleted.
    pub export_jobs: Vec<String>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SqliteDb {
    /// Empties [`RESET_TABLES`] and stores `resources` and `users` (the demo data set and the
    /// demo accounts), all in one transaction; records every removed app's tokens as revoked
    /// at `now`.
    pub async fn reset_sandbox(
        &self,
        resources: Vec<Value>,
        users: &[User],
        now: UnixTime,
        now_instant: &str,
    ) -> Result<ResetReport, StoreError> {
        // Inspector events still queued belong to the old sandbox: written before, deleted with it.
        self.events.flush().await;
        let batch = BulkBatch::prepare(resources, now_instant)?;
        let users = users.to_vec();
        let (reply, answer) = oneshot::channel();
        // One transaction holding the writer thread: other writes wait for the new sandbox.
        self.writer
            .exclusive(move |conn| {
                let outcome = conn.execute_batch("BEGIN IMMEDIATE").map_err(err).and_then(|()| {
                    let done = reset_in(conn, batch, &users, now);
                    let ended = match &done {
                        Ok(_) => conn.execute_batch("COMMIT"),
                        Err(_) => conn.execute_batch("ROLLBACK"),
                    };
                    if ended.is_err() && !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    let report = done?;
                    ended.map_err(err)?;
                    Ok(report)
                });
                let _ = reply.send(outcome);
            })
            .await
            .map_err(err)?;
        let outcome = answer.await.map_err(err)?;
        self.launches.clear();
        outcome
    }
}

/// The reset's statements, inside its transaction.
fn reset_in(conn: &Connection, batch: BulkBatch, users: &[User], now: UnixTime) -> Result<ResetReport, StoreError> {
    let clients: Vec<(String,)> = all(conn, "SELECT client_id FROM clients", &[]).map_err(err)?;
    let export_jobs: Vec<(String,)> = all(conn, "SELECT id FROM export_jobs", &[]).map_err(err)?;
    for (client_id,) in &clients {
        revoke_client_access(conn, client_id, now).map_err(err)?;
    }
    for table in RESET_TABLES {
        conn.execute_batch(&format!("DELETE FROM {table}")).map_err(err)?;
    }
    put_many(conn, batch)?;
    for u in users {
        exec(
            conn,
            "INSERT INTO users (id, username, password_hash, fhir_user, display_name) VALUES (?, ?, ?, ?, ?)",
            &[&u.id, &u.username, &u.password_hash, &u.fhir_user, &u.display_name],
        )
        .map_err(err)?;
    }
    Ok(ResetReport {
        clients: clients.into_iter().map(|(c,)| c).collect(),
        export_jobs: export_jobs.into_iter().map(|(j,)| j).collect(),
    })
}
