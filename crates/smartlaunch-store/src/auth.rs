//! The auth core's storage: keys, clients, users, sessions, pending requests, consents,
//! codes, grants and refresh tokens.

use smartlaunch_auth::client::{Client, ClientMetadata};
use smartlaunch_auth::error::StoreError;
use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::launch::{BackendSession, Launch, SimulatedError};
use smartlaunch_auth::retention::Purge;
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::store::{
    ClientEntryRow, ClientStore, CodeGrant, CodeRedemption, CodeStore, FlowStore, Grant, GrantStore, HandTrace,
    Housekeeping, InspectorStore, KeyStore, LaunchRedemption, LaunchStore, PatientDirectory, PendingAuthorization,
    RefreshToken, Session, SessionStore, StoreResult, UserAuthorization, UserStore,
};
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;

use sqlx::SqliteConnection;

use crate::SqliteDb;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

type ClientRow = (String, String, Option<String>, Option<String>, i64);
type UserRow = (String, String, String, String, String);
type GrantRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn client_from_row(
    (client_id, metadata, secret_hash, registration_token_hash, created_at): ClientRow,
) -> StoreResult<Client> {
    let metadata: ClientMetadata = serde_json::from_str(&metadata).map_err(err)?;
    Ok(Client { client_id, metadata, secret_hash, registration_token_hash, created_at })
}

const CLIENT_COLUMNS: &str = "client_id, metadata, secret_hash, registration_token_hash, created_at";
const INSERT_CLIENT: &str =
    "INSERT INTO clients (client_id, metadata, secret_hash, registration_token_hash, created_at) VALUES (?, ?, ?, ?, ?)";

fn user_from_row((id, username, password_hash, fhir_user, display_name): UserRow) -> User {
    User { id, username, password_hash, fhir_user, display_name }
}

const USER_COLUMNS: &str = "id, username, password_hash, fhir_user, display_name";
const GRANT_COLUMNS: &str =
    "id, client_id, user_id, fhir_user, scope, patient, encounter, session_id, refresh_expires_at, created_at, revoked_at, context, simulate_error, aud, trace";
const INSERT_GRANT: &str =
    "INSERT INTO grants (id, client_id, user_id, fhir_user, scope, patient, encounter, session_id, \
     refresh_expires_at, created_at, revoked_at, context, simulate_error, aud, trace) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

impl KeyStore for SqliteDb {
    async fn keys(&self) -> StoreResult<Option<KeyMaterial>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT kid, rsa_pkcs8, hmac_secret FROM signing_keys ORDER BY created_at DESC LIMIT 1")
                .fetch_optional(&self.read)
                .await
                .map_err(err)?;
        Ok(row.map(|(kid, rsa_pkcs8, hmac_secret)| KeyMaterial { kid, rsa_pkcs8, hmac_secret }))
    }

    async fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> StoreResult<KeyMaterial> {
        let fresh = fresh.clone();
        self.writer
            .write(move |conn| {
                let fresh = fresh.clone();
                Box::pin(async move {
                    let existing: Option<(i64,)> =
                        sqlx::query_as("SELECT COUNT(*) FROM signing_keys").fetch_optional(&mut *conn).await?;
                    if existing.is_none_or(|(n,)| n == 0) {
                        sqlx::query(
                            "INSERT INTO signing_keys (kid, rsa_pkcs8, hmac_secret, created_at) VALUES (?, ?, ?, 0)",
                        )
                        .bind(fresh.kid)
                        .bind(fresh.rsa_pkcs8)
                        .bind(fresh.hmac_secret)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(err)?;
        self.keys().await?.ok_or_else(|| StoreError("signing keys vanished".into()))
    }
}

impl ClientStore for SqliteDb {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        let metadata = serde_json::to_string(&client.metadata).map_err(err)?;
        let client = client.clone();
        self.writer
            .statement(move |conn| {
                let query = sqlx::query(INSERT_CLIENT)
                    .bind(client.client_id.clone())
                    .bind(metadata.clone())
                    .bind(client.secret_hash.clone())
                    .bind(client.registration_token_hash.clone())
                    .bind(client.created_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        let row: Option<ClientRow> =
            sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?"))
                .bind(client_id)
                .fetch_optional(&self.read)
                .await
                .map_err(err)?;
        row.map(client_from_row).transpose()
    }

    async fn client_and_backend_session(&self, client_id: &str, now: UnixTime) -> StoreResult<Option<ClientEntryRow>> {
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT c.client_id, c.metadata, c.secret_hash, c.registration_token_hash, c.created_at, \
             s.trace_id, s.simulate_error, s.created_at, s.expires_at, t.expires_at \
             FROM clients c LEFT JOIN backend_sessions s ON s.client_id = c.client_id AND s.expires_at > ? \
             LEFT JOIN trace_switches t ON t.client_id = c.client_id AND t.expires_at > ? \
             WHERE c.client_id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(client_id)
        .fetch_optional(&self.read)
        .await
        .map_err(err)?;
        let Some((
            id,
            metadata,
            secret_hash,
            registration_token_hash,
            created_at,
            trace,
            error,
            s_created,
            s_expires,
            switch,
        )) = row
        else {
            return Ok(None);
        };
        let session = match (trace, s_created, s_expires) {
            (Some(trace_id), Some(created_at), Some(expires_at)) => Some(BackendSession {
                client_id: id.clone(),
                trace_id,
                simulate_error: error.as_deref().and_then(SimulatedError::from_name),
                created_at,
                expires_at,
            }),
            _ => None,
        };
        Ok(Some((client_from_row((id, metadata, secret_hash, registration_token_hash, created_at))?, session, switch)))
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        let rows: Vec<ClientRow> =
            sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id"))
                .fetch_all(&self.read)
                .await
                .map_err(err)?;
        rows.into_iter().map(client_from_row).collect()
    }

    async fn update_client(&self, client: &Client, spent_token_hash: Option<&str>) -> StoreResult<bool> {
        let metadata = serde_json::to_string(&client.metadata).map_err(err)?;
        let (token_hash, client_id) = (client.registration_token_hash.clone(), client.client_id.clone());
        let spent = spent_token_hash.map(str::to_owned);
        let updated = self
            .writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "UPDATE clients SET metadata = ?, registration_token_hash = ? \
                     WHERE client_id = ? AND registration_token_hash IS ?",
                )
                .bind(metadata.clone())
                .bind(token_hash.clone())
                .bind(client_id.clone())
                .bind(spent.clone());
                Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
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
                let query = sqlx::query(
                    "INSERT INTO client_assertion_jtis (client_id, jti_hash, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (client_id, jti_hash) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE client_assertion_jtis.expires_at <= ?",
                )
                .bind(client_id.clone())
                .bind(jti_hash.clone())
                .bind(expires_at)
                .bind(now);
                Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
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
                let client_id = client_id.clone();
                Box::pin(async move {
                    let deleted = sqlx::query("DELETE FROM clients WHERE client_id = ?")
                        .bind(&client_id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    revoke_grants(conn, Grants::OfClient(&client_id), now).await?;
                    revoke_client_access(conn, &client_id, now).await?;
                    for sql in [
                        "DELETE FROM authorization_codes WHERE client_id = ?",
                        "DELETE FROM consents WHERE client_id = ?",
                        "DELETE FROM backend_sessions WHERE client_id = ?",
                        "DELETE FROM trace_switches WHERE client_id = ?",
                    ] {
                        sqlx::query(sql).bind(&client_id).execute(&mut *conn).await?;
                    }
                    Ok(deleted)
                })
            })
            .await
            .map_err(err)?;
        Ok(deleted > 0)
    }
}

impl UserStore for SqliteDb {
    async fn insert_user(&self, user: &User) -> StoreResult<bool> {
        let user = user.clone();
        let inserted = self
            .writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "INSERT INTO users (id, username, password_hash, fhir_user, display_name) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(user.id.clone())
                .bind(user.username.clone())
                .bind(user.password_hash.clone())
                .bind(user.fhir_user.clone())
                .bind(user.display_name.clone());
                Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
            })
            .await
            .map_err(err)?;
        Ok(inserted == 1)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"))
            .bind(username)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
            .fetch_all(&self.read)
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(user_from_row).collect())
    }

    async fn user_by_fhir_user(&self, fhir_user: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE fhir_user = ? ORDER BY username LIMIT 1"))
                .bind(fhir_user)
                .fetch_optional(&self.read)
                .await
                .map_err(err)?;
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
                let query = sqlx::query(
                    "INSERT INTO launches (id_hash, client_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(id_hash.clone())
                .bind(client_id.clone())
                .bind(data.clone())
                .bind(created_at)
                .bind(expires_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn put_backend_session(&self, session: &BackendSession) -> StoreResult<()> {
        let session = session.clone();
        self.writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "INSERT INTO backend_sessions (client_id, trace_id, simulate_error, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET trace_id = excluded.trace_id, \
                     simulate_error = excluded.simulate_error, created_at = excluded.created_at, expires_at = excluded.expires_at",
                )
                .bind(session.client_id.clone())
                .bind(session.trace_id.clone())
                .bind(session.simulate_error.map(|e| e.name()))
                .bind(session.created_at)
                .bind(session.expires_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn recent_backend_sessions(&self, limit: i64) -> StoreResult<Vec<BackendSession>> {
        let rows: Vec<(String, String, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT client_id, trace_id, simulate_error, created_at, expires_at FROM backend_sessions \
             ORDER BY created_at DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(client_id, trace_id, error, created_at, expires_at)| BackendSession {
                client_id,
                trace_id,
                simulate_error: error.as_deref().and_then(SimulatedError::from_name),
                created_at,
                expires_at,
            })
            .collect())
    }

    async fn recent_launches(&self, limit: i64) -> StoreResult<Vec<Launch>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT data FROM launches ORDER BY created_at DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(err)?;
        rows.into_iter().map(|(data,)| serde_json::from_str(&data).map_err(err)).collect()
    }

    async fn launch(&self, id_hash: &str) -> StoreResult<Option<(Launch, Option<UnixTime>)>> {
        let row: Option<(String, Option<i64>)> = sqlx::query_as("SELECT data, used_at FROM launches WHERE id_hash = ?")
            .bind(id_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        row.map(|(data, used_at)| Ok((serde_json::from_str(&data).map_err(err)?, used_at))).transpose()
    }
}

impl InspectorStore for SqliteDb {
    async fn record_event(&self, trace: &str, event: &LaunchEvent) -> StoreResult<()> {
        self.events.record(trace, event);
        Ok(())
    }

    async fn launch_by_trace(&self, trace: &str) -> StoreResult<Option<Launch>> {
        crate::events::launch_by_trace(&self.read, trace).await.map_err(err)
    }

    async fn user_launches(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Launch>> {
        crate::events::user_launches(&self.read, user_id, limit).await.map_err(err)
    }

    async fn set_trace_switch(&self, client_id: &str, until: Option<UnixTime>) -> StoreResult<()> {
        crate::events::set_trace_switch(&self.writer, client_id, until).await.map_err(err)
    }

    async fn trace_switches(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        crate::events::trace_switches(&self.read, now).await.map_err(err)
    }

    async fn insert_hand_trace(&self, trace: &HandTrace) -> StoreResult<()> {
        crate::events::insert_hand_trace(&self.writer, trace).await.map_err(err)
    }

    async fn hand_trace(&self, trace_id: &str) -> StoreResult<Option<HandTrace>> {
        crate::events::hand_trace(&self.read, trace_id).await.map_err(err)
    }

    async fn recent_hand_traces(&self, limit: i64) -> StoreResult<Vec<HandTrace>> {
        crate::events::recent_hand_traces(&self.read, limit).await.map_err(err)
    }

    async fn launch_events(&self, trace: &str) -> StoreResult<Vec<LaunchEvent>> {
        Ok(self.launch_record(trace).await?.events)
    }

    async fn launch_record(&self, trace: &str) -> StoreResult<LaunchRecord> {
        self.events.flush().await;
        crate::events::launch_record(&self.read, trace).await.map_err(err)
    }
}

impl LaunchRedemption for SqliteDb {
    async fn use_launch(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let id_hash = id_hash.to_owned();
        let used = self
            .writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "UPDATE launches SET used_at = ? WHERE id_hash = ? AND used_at IS NULL AND expires_at > ?",
                )
                .bind(now)
                .bind(id_hash.clone())
                .bind(now);
                Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
            })
            .await
            .map_err(err)?;
        Ok(used == 1)
    }
}

impl SessionStore for SqliteDb {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(s.id_hash.clone())
                .bind(s.user_id.clone())
                .bind(s.csrf.clone())
                .bind(s.created_at)
                .bind(s.expires_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>> {
        let row: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id_hash, user_id, csrf, created_at, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await
        .map_err(err)?;
        Ok(row.map(|(id_hash, user_id, csrf, created_at, expires_at)| Session {
            id_hash,
            user_id,
            csrf,
            created_at,
            expires_at,
        }))
    }

    async fn session_user(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<(Session, User)>> {
        type Row = (String, String, String, i64, i64, String, String, String, String);
        let row: Option<Row> = sqlx::query_as(
            "SELECT s.id_hash, s.csrf, s.user_id, s.created_at, s.expires_at, u.username, u.password_hash, u.fhir_user, \
             u.display_name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_at > ?",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await
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
                let query = sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(id_hash.clone());
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
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
                let query =
                    sqlx::query("INSERT INTO pending_authorizations (id, request, expires_at) VALUES (?, ?, ?)")
                        .bind(id.clone())
                        .bind(request.clone())
                        .bind(expires_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT request FROM pending_authorizations WHERE id = ? AND expires_at > ?")
                .bind(id)
                .bind(now)
                .fetch_optional(&self.read)
                .await
                .map_err(err)?;
        row.map(|(json,)| serde_json::from_str(&json).map_err(err)).transpose()
    }

    async fn update_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        let (id, request) = (p.id.clone(), serde_json::to_string(p).map_err(err)?);
        self.writer
            .statement(move |conn| {
                let query = sqlx::query("UPDATE pending_authorizations SET request = ? WHERE id = ?")
                    .bind(request.clone())
                    .bind(id.clone());
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn delete_pending(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        let deleted = self
            .writer
            .statement(move |conn| {
                let query = sqlx::query("DELETE FROM pending_authorizations WHERE id = ?").bind(id.clone());
                Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
            })
            .await
            .map_err(err)?;
        Ok(deleted == 1)
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT scope FROM consents WHERE user_id = ? AND client_id = ?")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        Ok(row.map(|(s,)| s))
    }

    async fn put_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, client_id, scope) = (user_id.to_owned(), client_id.to_owned(), scope.to_owned());
        self.writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "INSERT INTO consents (user_id, client_id, scope, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at",
                )
                .bind(user_id.clone())
                .bind(client_id.clone())
                .bind(scope.clone())
                .bind(now);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }
}

impl CodeStore for SqliteDb {
    async fn insert_code(&self, code_hash: &str, grant: &CodeGrant, expires_at: UnixTime) -> StoreResult<()> {
        let data = serde_json::to_string(grant).map_err(err)?;
        let (code_hash, grant_id, client_id) = (code_hash.to_owned(), grant.grant_id.clone(), grant.client_id.clone());
        self.writer
            .statement(move |conn| {
                let query = sqlx::query(
                    "INSERT INTO authorization_codes (code_hash, grant_id, client_id, data, expires_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(code_hash.clone())
                .bind(grant_id.clone())
                .bind(client_id.clone())
                .bind(data.clone())
                .bind(expires_at);
                Box::pin(async move { query.execute(conn).await.map(|_| ()) })
            })
            .await
            .map_err(err)
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption> {
        // One job: the conditional update that spends the code and, when it found nothing to
        // spend, the look-up that tells a replay from an unknown code.  Its one write is the
        // update, so it may run alone without a transaction.
        let code_hash = code_hash.to_owned();
        let (redeemed, used) = self
            .writer
            .statement(move |conn| {
                let code_hash = code_hash.clone();
                Box::pin(async move {
                    let redeemed: Option<(String,)> = sqlx::query_as(
                        "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING data",
                    )
                    .bind(now)
                    .bind(&code_hash)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if redeemed.is_some() {
                        return Ok((redeemed, None));
                    }
                    let used: Option<(String,)> = sqlx::query_as(
                        "SELECT grant_id FROM authorization_codes WHERE code_hash = ? AND used_at IS NOT NULL",
                    )
                    .bind(&code_hash)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok((None, used))
                })
            })
            .await
            .map_err(err)?;
        if let Some((data,)) = redeemed {
            return Ok(CodeRedemption::Redeemed(Box::new(serde_json::from_str(&data).map_err(err)?)));
        }
        Ok(match used {
            Some((grant_id,)) => CodeRedemption::Replayed { grant_id },
            None => CodeRedemption::Unknown,
        })
    }
}

impl GrantStore for SqliteDb {
    async fn insert_grant(&self, g: &Grant, refresh: &RefreshToken) -> StoreResult<()> {
        let context = (!g.context.is_empty()).then(|| serde_json::to_string(&g.context)).transpose().map_err(err)?;
        let (g, refresh) = (g.clone(), refresh.clone());
        self.writer
            .write(move |conn| {
                let insert_grant = sqlx::query(INSERT_GRANT)
                    .bind(g.id.clone())
                    .bind(g.client_id.clone())
                    .bind(g.user_id.clone())
                    .bind(g.fhir_user.clone())
                    .bind(g.scope.clone())
                    .bind(g.patient.clone())
                    .bind(g.encounter.clone())
                    .bind(g.session_id.clone())
                    .bind(g.refresh_expires_at)
                    .bind(g.created_at)
                    .bind(g.revoked_at)
                    .bind(context.clone())
                    .bind(g.simulate_error.map(|e| e.name()))
                    .bind(g.aud.clone())
                    .bind(g.trace.clone());
                let refresh = refresh.clone();
                Box::pin(async move {
                    insert_grant.execute(&mut *conn).await?;
                    insert_refresh(conn, &refresh).await
                })
            })
            .await
            .map_err(err)
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let row: Option<GrantRow> = sqlx::query_as(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        Ok(row.map(
            |(
                id,
                client_id,
                user_id,
                fhir_user,
                scope,
                patient,
                encounter,
                session_id,
                refresh_expires_at,
                created_at,
                revoked_at,
                context,
                simulate_error,
                aud,
                trace,
            )| Grant {
                id,
                client_id,
                user_id,
                fhir_user,
                scope,
                patient,
                encounter,
                session_id,
                refresh_expires_at,
                created_at,
                revoked_at,
                // Written by us from a LaunchContext: unreadable only if the database was edited.
                context: context.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default(),
                simulate_error: simulate_error.as_deref().and_then(SimulatedError::from_name),
                aud: aud.unwrap_or_default(),
                trace,
            },
        ))
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row: Option<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT token_hash, grant_id, client_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(err)?;
        Ok(row.map(|(token_hash, grant_id, client_id, expires_at, used_at)| RefreshToken {
            token_hash,
            grant_id,
            client_id,
            expires_at,
            used_at,
        }))
    }

    async fn rotate_refresh(&self, old_hash: &str, new: &RefreshToken, now: UnixTime) -> StoreResult<bool> {
        let (old_hash, new) = (old_hash.to_owned(), new.clone());
        self.writer
            .write(move |conn| {
                let spend =
                    sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL")
                        .bind(now)
                        .bind(old_hash.clone());
                let new = new.clone();
                Box::pin(async move {
                    // Spent by someone else: nothing was changed, nothing is inserted.
                    if spend.execute(&mut *conn).await?.rows_affected() != 1 {
                        return Ok(false);
                    }
                    insert_refresh(conn, &new).await?;
                    Ok(true)
                })
            })
            .await
            .map_err(err)
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let grant_id = grant_id.to_owned();
        self.writer
            .write(move |conn| {
                let grant_id = grant_id.clone();
                Box::pin(async move {
                    // The grant may never have been stored (no refresh token): record it all the same.
                    sqlx::query("INSERT INTO revocations (grant_id, revoked_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
                        .bind(&grant_id)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    revoke_grants(conn, Grants::Id(&grant_id), now).await
                })
            })
            .await
            .map_err(err)
    }

    async fn revoked_grants(&self, since: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        sqlx::query_as("SELECT grant_id, revoked_at FROM revocations WHERE revoked_at >= ?")
            .bind(since)
            .fetch_all(&self.read)
            .await
            .map_err(err)
    }

    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.writer
            .write(move |conn| {
                let (user_id, client_id) = (user_id.clone(), client_id.clone());
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES (?, ?, ?) \
                         ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                    )
                    .bind(&user_id)
                    .bind(&client_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    revoke_grants(conn, Grants::OfUserAndClient(&user_id, &client_id), now).await?;
                    sqlx::query("DELETE FROM consents WHERE user_id = ? AND client_id = ?")
                        .bind(&user_id)
                        .bind(&client_id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
            .map_err(err)
    }

    async fn access_revocations(&self, since: UnixTime) -> StoreResult<Vec<(String, String, UnixTime)>> {
        sqlx::query_as("SELECT user_id, client_id, revoked_at FROM access_revocations WHERE revoked_at >= ?")
            .bind(since)
            .fetch_all(&self.read)
            .await
            .map_err(err)
    }

    async fn user_authorizations(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<UserAuthorization>> {
        let rows: Vec<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT c.client_id, c.scope, c.updated_at, \
             (SELECT COUNT(*) FROM grants g JOIN refresh_tokens r ON r.grant_id = g.id \
              WHERE g.user_id = c.user_id AND g.client_id = c.client_id AND g.revoked_at IS NULL \
              AND r.used_at IS NULL AND r.expires_at > ?), \
             COALESCE((SELECT json_extract(l.data, '$.trace_id') FROM launches l \
               WHERE json_extract(l.data, '$.user_id') = c.user_id AND l.client_id = c.client_id \
               ORDER BY l.created_at DESC LIMIT 1), \
              (SELECT g.trace FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id \
               AND g.trace IS NOT NULL ORDER BY g.created_at DESC LIMIT 1)) \
             FROM consents c WHERE c.user_id = ? ORDER BY c.updated_at DESC",
        )
        .bind(now)
        .bind(user_id)
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(client_id, scope, approved_at, live, trace)| UserAuthorization {
                client_id,
                scope,
                approved_at,
                refreshable: live > 0,
                trace: trace.filter(|t| !t.is_empty()),
            })
            .collect())
    }
}

impl PatientDirectory for SqliteDb {
    async fn patient_exists(&self, patient_id: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM resources WHERE resource_type = 'Patient' AND id = ? AND deleted = 0")
                .bind(patient_id)
                .fetch_optional(&self.read)
                .await
                .map_err(err)?;
        Ok(row.is_some())
    }

    async fn patient_encounters(&self, patient_id: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.id FROM resource_compartments c JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
             WHERE c.patient_id = ? AND c.resource_type = 'Encounter' AND r.deleted = 0 ORDER BY r.sort_key DESC, r.id",
        )
        .bind(patient_id)
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

impl Housekeeping for SqliteDb {
    async fn purge_expired(&self, purge: &Purge) -> StoreResult<()> {
        // Written in time order: the expired rows are a prefix by rowid (no index needed).
        for (table, time, before) in [
            ("authorization_codes", "expires_at", purge.codes),
            ("pending_authorizations", "expires_at", purge.expired),
            ("launch_events", "at", purge.events),
        ] {
            delete_expired_prefix(&self.write, table, time, before).await?;
        }
        for (sql, before) in [
            ("DELETE FROM sessions WHERE expires_at <= ?", purge.expired),
            ("DELETE FROM refresh_tokens WHERE expires_at <= ?", purge.expired),
            ("DELETE FROM launches WHERE expires_at <= ?", purge.launches),
            ("DELETE FROM backend_sessions WHERE expires_at <= ?", purge.launches),
            ("DELETE FROM trace_switches WHERE expires_at <= ?", purge.launches),
            ("DELETE FROM hand_traces WHERE expires_at <= ?", purge.launches),
            ("DELETE FROM launch_traces WHERE last_at <= ?", purge.events),
            ("DELETE FROM client_assertion_jtis WHERE expires_at <= ?", purge.expired),
        ] {
            sqlx::query(sql).bind(before).execute(&self.write).await.map_err(err)?;
        }
        sqlx::query(
            "DELETE FROM launch_events WHERE seq <= (SELECT seq FROM launch_events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        )
        .bind(purge.max_events)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(())
    }
}

/// Rows deleted per statement by housekeeping: other writers get the one writer connection
/// in between.
const PURGE_CHUNK: u64 = 2_000;

/// Deletes the rows of `table` whose `time` is at or before `before`, among those inserted
/// before its oldest live row.  Rows are written in time order, so that is every expired row
/// and the cost is proportional to what is deleted; a row written out of order (the clock went
/// back) goes at a later run, and a live row is never deleted.
async fn delete_expired_prefix(write: &sqlx::SqlitePool, table: &str, time: &str, before: UnixTime) -> StoreResult<()> {
    let sql = format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {time} <= ?1 AND rowid < \
         COALESCE((SELECT rowid FROM {table} WHERE {time} > ?1 ORDER BY rowid LIMIT 1), \
         (SELECT MAX(rowid) + 1 FROM {table})) ORDER BY rowid LIMIT {PURGE_CHUNK})"
    );
    while sqlx::query(&sql).bind(before).execute(write).await.map_err(err)?.rows_affected() == PURGE_CHUNK {}
    Ok(())
}

/// Which stored grants to revoke.
enum Grants<'a> {
    Id(&'a str),
    OfClient(&'a str),
    OfUserAndClient(&'a str, &'a str),
}

/// Records every access token of `client_id` issued up to `now`, for all users, as revoked (the
/// client is removed; the record outlives it, so its tokens stay refused after a restart).
pub(crate) async fn revoke_client_access(
    conn: &mut SqliteConnection,
    client_id: &str,
    now: UnixTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES (?, ?, ?) \
         ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = excluded.revoked_at",
    )
    .bind(ALL_USERS)
    .bind(client_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes stored grants inside a transaction: records each revocation, marks the grants and
/// deletes their refresh tokens (the family ends).
async fn revoke_grants(conn: &mut SqliteConnection, which: Grants<'_>, now: UnixTime) -> Result<(), sqlx::Error> {
    let (condition, binds): (&str, Vec<&str>) = match which {
        Grants::Id(id) => ("id = ?", vec![id]),
        Grants::OfClient(client) => ("client_id = ?", vec![client]),
        Grants::OfUserAndClient(user, client) => ("user_id = ? AND client_id = ?", vec![user, client]),
    };
    // (statement, whether it takes `now` before the condition's values)
    let statements = [
        (
            format!(
                "INSERT INTO revocations (grant_id, revoked_at) SELECT id, ? FROM grants \
                 WHERE {condition} AND revoked_at IS NULL ON CONFLICT DO NOTHING"
            ),
            true,
        ),
        (format!("DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE {condition})"), false),
        (format!("UPDATE grants SET revoked_at = ? WHERE {condition} AND revoked_at IS NULL"), true),
    ];
    for (sql, takes_now) in &statements {
        let mut query = sqlx::query(sql);
        if *takes_now {
            query = query.bind(now);
        }
        for b in &binds {
            query = query.bind(*b);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_refresh(conn: &mut SqliteConnection, r: &RefreshToken) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&r.token_hash)
    .bind(&r.grant_id)
    .bind(&r.client_id)
    .bind(r.expires_at)
    .bind(r.used_at)
    .execute(conn)
    .await?;
    Ok(())
}
