//! The auth core's storage on SQLite: keys, clients, users, launches, sessions and pending
//! requests (codes, grants, directory and housekeeping are in [`crate::auth_grants`]).
//!
//! Every write is a job of the writer thread (group commit, [`crate::writer`]); reads are
//! point look-ups on a reader connection, on the calling task (microseconds).  Rows map to the
//! tuples of [`crate::auth_rows`], shared with PostgreSQL.

use smartlaunch_auth::client::Client;
use smartlaunch_auth::error::StoreError;
use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::launch::{BackendSession, Launch};
use smartlaunch_auth::store::{
    ClientEntryRow, ClientStore, FlowStore, HandTrace, InspectorStore, KeyStore, LaunchRedemption, LaunchStore,
    PendingAuthorization, Session, SessionStore, StoreResult, UserStore,
};
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;

use crate::auth_grants::{revoke_client_access, revoke_grants, Grants};
use crate::auth_rows::{
    backend_session_from_row, client_entry_from_row, client_from_row, err, session_from_row, user_from_row,
    BackendSessionRow, ClientEntry, ClientRow, SessionRow, UserRow, BACKEND_SESSION_COLUMNS, CLIENT_COLUMNS,
    SESSION_COLUMNS, USER_COLUMNS,
};
use crate::conn::{all, exec, one};
use crate::{DbError, SqliteDb};

const INSERT_CLIENT: &str =
    "INSERT INTO clients (client_id, metadata, secret_hash, registration_token_hash, created_at) VALUES (?, ?, ?, ?, ?)";

impl KeyStore for SqliteDb {
    async fn keys(&self) -> StoreResult<Option<KeyMaterial>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = self
            .read
            .read(|c| {
                one(c, "SELECT kid, rsa_pkcs8, hmac_secret FROM signing_keys ORDER BY created_at DESC LIMIT 1", &[])
            })
            .map_err(err)?;
        Ok(row.map(|(kid, rsa_pkcs8, hmac_secret)| KeyMaterial { kid, rsa_pkcs8, hmac_secret }))
    }

    async fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> StoreResult<KeyMaterial> {
        let fresh = fresh.clone();
        self.writer
            .write(move |conn| {
                let existing: Option<(i64,)> = one(conn, "SELECT COUNT(*) FROM signing_keys", &[])?;
                if existing.is_none_or(|(n,)| n == 0) {
                    exec(
                        conn,
                        "INSERT INTO signing_keys (kid, rsa_pkcs8, hmac_secret, created_at) VALUES (?, ?, ?, 0)",
                        &[&fresh.kid, &fresh.rsa_pkcs8, &fresh.hmac_secret],
                    )?;
                }
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)?;
        self.keys().await?.ok_or_else(|| StoreError("signing keys vanished".into()))
    }

    /// Every stored set of keys: a rotation adds one (`smartlaunch keys rotate --data`).
    async fn all_keys(&self) -> StoreResult<Vec<(KeyMaterial, UnixTime)>> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>, i64)> = self
            .read
            .read(|c| all(c, "SELECT kid, rsa_pkcs8, hmac_secret, created_at FROM signing_keys", &[]))
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(kid, rsa_pkcs8, hmac_secret, at)| (KeyMaterial { kid, rsa_pkcs8, hmac_secret }, at))
            .collect())
    }

    /// A rotation.  SQLite has no change feed: a server running on this database reads the
    /// keys again every few seconds (`smartlaunch::nodes::poll_keys`).
    async fn add_keys(&self, keys: &KeyMaterial, now: UnixTime) -> StoreResult<()> {
        let keys = keys.clone();
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO signing_keys (kid, rsa_pkcs8, hmac_secret, created_at) VALUES (?, ?, ?, ?)",
                    &[&keys.kid, &keys.rsa_pkcs8, &keys.hmac_secret, &now],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    /// A retirement (`smartlaunch keys retire --data`): a server running on this database
    /// stops verifying with the key at its next read of the keys.
    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let kid = kid.to_owned();
        let deleted = self
            .writer
            .statement(move |conn| exec(conn, "DELETE FROM signing_keys WHERE kid = ?", &[&kid]).map_err(DbError::from))
            .await
            .map_err(err)?;
        Ok(deleted > 0)
    }
}

impl ClientStore for SqliteDb {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        let metadata = serde_json::to_string(&client.metadata).map_err(err)?;
        let c = client.clone();
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    INSERT_CLIENT,
                    &[&c.client_id, &metadata, &c.secret_hash, &c.registration_token_hash, &c.created_at],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?");
        let row: Option<ClientRow> = self.read.read(|c| one(c, &sql, &[&client_id])).map_err(err)?;
        row.map(client_from_row).transpose()
    }

    async fn client_and_backend_session(&self, client_id: &str, now: UnixTime) -> StoreResult<Option<ClientEntryRow>> {
        let row: Option<ClientEntry> = self
            .read
            .read(|c| {
                one(
                    c,
                    "SELECT c.client_id, c.metadata, c.secret_hash, c.registration_token_hash, c.created_at, \
                     s.trace_id, s.simulate_error, s.created_at, s.expires_at, t.expires_at \
                     FROM clients c LEFT JOIN backend_sessions s ON s.client_id = c.client_id AND s.expires_at > $1 \
                     LEFT JOIN trace_switches t ON t.client_id = c.client_id AND t.expires_at > $1 \
                     WHERE c.client_id = $2",
                    &[&now, &client_id],
                )
            })
            .map_err(err)?;
        row.map(client_entry_from_row).transpose()
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id");
        let rows: Vec<ClientRow> = self.read.read(|c| all(c, &sql, &[])).map_err(err)?;
        rows.into_iter().map(client_from_row).collect()
    }

    async fn update_client(&self, client: &Client, spent_token_hash: Option<&str>) -> StoreResult<bool> {
        let metadata = serde_json::to_string(&client.metadata).map_err(err)?;
        let (token_hash, client_id) = (client.registration_token_hash.clone(), client.client_id.clone());
        let spent = spent_token_hash.map(str::to_owned);
        let updated = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "UPDATE clients SET metadata = ?, registration_token_hash = ? \
                     WHERE client_id = ? AND registration_token_hash IS ?",
                    &[&metadata, &token_hash, &client_id, &spent],
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(updated > 0)
    }

    async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // One statement: a row that is still live blocks the insert; one that expired (not yet
        // purged) is taken over.
        let (client_id, jti_hash) = (client_id.to_owned(), jti_hash.to_owned());
        let inserted = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO client_assertion_jtis (client_id, jti_hash, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (client_id, jti_hash) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE client_assertion_jtis.expires_at <= ?",
                    &[&client_id, &jti_hash, &expires_at, &now],
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(inserted == 1)
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> StoreResult<bool> {
        let client_id = client_id.to_owned();
        let deleted = self
            .writer
            .write(move |conn| {
                let deleted = exec(conn, "DELETE FROM clients WHERE client_id = ?", &[&client_id])?;
                revoke_grants(conn, Grants::OfClient(&client_id), now)?;
                revoke_client_access(conn, &client_id, now)?;
                for sql in [
                    "DELETE FROM authorization_codes WHERE client_id = ?",
                    "DELETE FROM consents WHERE client_id = ?",
                    "DELETE FROM backend_sessions WHERE client_id = ?",
                    "DELETE FROM trace_switches WHERE client_id = ?",
                ] {
                    exec(conn, sql, &[&client_id])?;
                }
                Ok::<_, DbError>(deleted)
            })
            .await
            .map_err(err)?;
        Ok(deleted > 0)
    }
}

impl UserStore for SqliteDb {
    async fn insert_user(&self, user: &User) -> StoreResult<bool> {
        let u = user.clone();
        let inserted = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO users (id, username, password_hash, fhir_user, display_name) VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                    &[&u.id, &u.username, &u.password_hash, &u.fhir_user, &u.display_name],
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(inserted == 1)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?");
        let row: Option<UserRow> = self.read.read(|c| one(c, &sql, &[&username])).map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row: Option<UserRow> = self.read.read(|c| one(c, &sql, &[&id])).map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows: Vec<UserRow> = self.read.read(|c| all(c, &sql, &[])).map_err(err)?;
        Ok(rows.into_iter().map(user_from_row).collect())
    }

    async fn user_by_fhir_user(&self, fhir_user: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE fhir_user = ? ORDER BY username LIMIT 1");
        let row: Option<UserRow> = self.read.read(|c| one(c, &sql, &[&fhir_user])).map_err(err)?;
        Ok(row.map(user_from_row))
    }
}

impl LaunchStore for SqliteDb {
    async fn insert_launch(&self, launch: &Launch) -> StoreResult<()> {
        let data = serde_json::to_string(launch).map_err(err)?;
        let (id_hash, client_id) = (launch.id_hash.clone(), launch.client_id.clone());
        let (created_at, expires_at) = (launch.created_at, launch.expires_at);
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO launches (id_hash, client_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                    &[&id_hash, &client_id, &data, &created_at, &expires_at],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn put_backend_session(&self, session: &BackendSession) -> StoreResult<()> {
        let s = session.clone();
        let error = s.simulate_error.map(|e| e.name());
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO backend_sessions (client_id, trace_id, simulate_error, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET trace_id = excluded.trace_id, \
                     simulate_error = excluded.simulate_error, created_at = excluded.created_at, \
                     expires_at = excluded.expires_at",
                    &[&s.client_id, &s.trace_id, &error, &s.created_at, &s.expires_at],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn recent_backend_sessions(&self, limit: i64) -> StoreResult<Vec<BackendSession>> {
        let sql = format!("SELECT {BACKEND_SESSION_COLUMNS} FROM backend_sessions ORDER BY created_at DESC LIMIT ?");
        let rows: Vec<BackendSessionRow> = self.read.read(|c| all(c, &sql, &[&limit])).map_err(err)?;
        Ok(rows.into_iter().map(backend_session_from_row).collect())
    }

    async fn recent_launches(&self, limit: i64) -> StoreResult<Vec<Launch>> {
        let rows: Vec<(String,)> = self
            .read
            .read(|c| all(c, "SELECT data FROM launches ORDER BY created_at DESC LIMIT ?", &[&limit]))
            .map_err(err)?;
        rows.into_iter().map(|(data,)| serde_json::from_str(&data).map_err(err)).collect()
    }

    async fn launch(&self, id_hash: &str) -> StoreResult<Option<(Launch, Option<UnixTime>)>> {
        let generation = match self.launches.get(id_hash) {
            Ok(kept) => return Ok(Some(kept)),
            Err(generation) => generation,
        };
        let row: Option<(String, Option<i64>)> = self
            .read
            .read(|c| one(c, "SELECT data, used_at FROM launches WHERE id_hash = ?", &[&id_hash]))
            .map_err(err)?;
        let row = row.map(|(data, used_at)| Ok((serde_json::from_str(&data).map_err(err)?, used_at))).transpose()?;
        if let Some(row) = &row {
            self.launches.keep(id_hash, row, generation);
        }
        Ok(row)
    }
}

impl InspectorStore for SqliteDb {
    async fn record_event(&self, trace: &str, event: &LaunchEvent) -> StoreResult<()> {
        self.events.record(trace, event);
        Ok(())
    }

    async fn launch_by_trace(&self, trace: &str) -> StoreResult<Option<Launch>> {
        self.read.read(|c| crate::events::launch_by_trace(c, trace)).map_err(err)?.map_err(err)
    }

    async fn user_launches(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Launch>> {
        self.read.read(|c| crate::events::user_launches(c, user_id, limit)).map_err(err)?.map_err(err)
    }

    async fn set_trace_switch(&self, client_id: &str, until: Option<UnixTime>) -> StoreResult<()> {
        crate::events::set_trace_switch(&self.writer, client_id, until).await.map_err(err)
    }

    async fn trace_switches(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        self.read
            .read(|c| {
                all(
                    c,
                    "SELECT client_id, expires_at FROM trace_switches WHERE expires_at > ? ORDER BY client_id",
                    &[&now],
                )
            })
            .map_err(err)
    }

    async fn insert_hand_trace(&self, trace: &HandTrace) -> StoreResult<()> {
        crate::events::insert_hand_trace(&self.writer, trace).await.map_err(err)
    }

    async fn hand_trace(&self, trace_id: &str) -> StoreResult<Option<HandTrace>> {
        self.read.read(|c| crate::events::hand_trace(c, trace_id)).map_err(err)
    }

    async fn recent_hand_traces(&self, limit: i64) -> StoreResult<Vec<HandTrace>> {
        self.read.read(|c| crate::events::recent_hand_traces(c, limit)).map_err(err)
    }

    async fn launch_events(&self, trace: &str) -> StoreResult<Vec<LaunchEvent>> {
        Ok(self.launch_record(trace).await?.events)
    }

    async fn launch_record(&self, trace: &str) -> StoreResult<LaunchRecord> {
        self.events.flush().await;
        self.read.read(|c| crate::events::launch_record(c, trace)).map_err(err)?.map_err(err)
    }
}

impl LaunchRedemption for SqliteDb {
    async fn use_launch(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let (id_hash, forget) = (id_hash.to_owned(), id_hash.to_owned());
        let used = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "UPDATE launches SET used_at = $1 WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $1",
                    &[&now, &id_hash],
                )
                .map_err(DbError::from)
            })
            .await;
        // Committed (or failed: forgetting is harmless then).
        self.launches.forget(&forget);
        Ok(used.map_err(err)? == 1)
    }
}

impl SessionStore for SqliteDb {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
                    &[&s.id_hash, &s.user_id, &s.csrf, &s.created_at, &s.expires_at],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = ? AND expires_at > ?");
        let row: Option<SessionRow> = self.read.read(|c| one(c, &sql, &[&id_hash, &now])).map_err(err)?;
        Ok(row.map(session_from_row))
    }

    async fn session_user(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<(Session, User)>> {
        type Row = (String, String, String, i64, i64, String, String, String, String);
        let row: Option<Row> = self
            .read
            .read(|c| {
                one(
                    c,
                    "SELECT s.id_hash, s.csrf, s.user_id, s.created_at, s.expires_at, u.username, u.password_hash, \
                     u.fhir_user, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.id_hash = ? AND s.expires_at > ?",
                    &[&id_hash, &now],
                )
            })
            .map_err(err)?;
        Ok(row.map(
            |(id_hash, csrf, user_id, created_at, expires_at, username, password_hash, fhir_user, display_name)| {
                let user = User { id: user_id.clone(), username, password_hash, fhir_user, display_name };
                (Session { id_hash, user_id, csrf, created_at, expires_at }, user)
            },
        ))
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let id_hash = id_hash.to_owned();
        self.writer
            .statement(move |conn| {
                exec(conn, "DELETE FROM sessions WHERE id_hash = ?", &[&id_hash])?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }
}

impl FlowStore for SqliteDb {
    async fn insert_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        let (id, request, expires_at) = (p.id.clone(), serde_json::to_string(p).map_err(err)?, p.expires_at);
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO pending_authorizations (id, request, expires_at) VALUES (?, ?, ?)",
                    &[&id, &request, &expires_at],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        let row: Option<(String,)> = self
            .read
            .read(|c| {
                one(c, "SELECT request FROM pending_authorizations WHERE id = ? AND expires_at > ?", &[&id, &now])
            })
            .map_err(err)?;
        row.map(|(json,)| serde_json::from_str(&json).map_err(err)).transpose()
    }

    async fn update_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        let (id, request) = (p.id.clone(), serde_json::to_string(p).map_err(err)?);
        self.writer
            .statement(move |conn| {
                exec(conn, "UPDATE pending_authorizations SET request = ? WHERE id = ?", &[&request, &id])?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn delete_pending(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        let deleted = self
            .writer
            .statement(move |conn| {
                exec(conn, "DELETE FROM pending_authorizations WHERE id = ?", &[&id]).map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(deleted == 1)
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = self
            .read
            .read(|c| one(c, "SELECT scope FROM consents WHERE user_id = ? AND client_id = ?", &[&user_id, &client_id]))
            .map_err(err)?;
        Ok(row.map(|(s,)| s))
    }

    async fn put_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, client_id, scope) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO consents (user_id, client_id, scope, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, \
                     updated_at = excluded.updated_at",
                    &[&user_id, &client_id, &scope, &now],
                )?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }
}
