//! Row → domain mapping of the auth tables, the same on both backends: the column lists and
//! the tuples rows are read into (`TEXT`, `BIGINT`/`INTEGER` as `i64`, NULL as `None`; by
//! rusqlite on SQLite through `conn::FromRow`, by sqlx on PostgreSQL) are identical
//! (docs/DESIGN.md "PostgreSQL": shared row mapping).

use smartlaunch_auth::client::{Client, ClientMetadata};
use smartlaunch_auth::error::StoreError;
use smartlaunch_auth::launch::{BackendSession, SimulatedError};
use smartlaunch_auth::store::{ClientEntryRow, Grant, HandTrace, RefreshToken, Session, StoreResult};
use smartlaunch_auth::users::User;

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

pub(crate) const CLIENT_COLUMNS: &str = "client_id, metadata, secret_hash, registration_token_hash, created_at";
pub(crate) type ClientRow = (String, String, Option<String>, Option<String>, i64);

pub(crate) fn client_from_row(
    (client_id, metadata, secret_hash, registration_token_hash, created_at): ClientRow,
) -> StoreResult<Client> {
    let metadata: ClientMetadata = serde_json::from_str(&metadata).map_err(err)?;
    Ok(Client { client_id, metadata, secret_hash, registration_token_hash, created_at })
}

/// A client, its live backend-service session and its trace switch, in one row: the client's
/// columns, then `s.trace_id, s.simulate_error, s.created_at, s.expires_at, t.expires_at`.
pub(crate) type ClientEntry = (
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

pub(crate) fn client_entry_from_row(
    (id, metadata, secret_hash, registration_token_hash, created_at, trace, error, s_created, s_expires, switch): ClientEntry,
) -> StoreResult<ClientEntryRow> {
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
    Ok((client_from_row((id, metadata, secret_hash, registration_token_hash, created_at))?, session, switch))
}

pub(crate) const USER_COLUMNS: &str = "id, username, password_hash, fhir_user, display_name";
pub(crate) type UserRow = (String, String, String, String, String);

pub(crate) fn user_from_row((id, username, password_hash, fhir_user, display_name): UserRow) -> User {
    User { id, username, password_hash, fhir_user, display_name }
}

pub(crate) const SESSION_COLUMNS: &str = "id_hash, user_id, csrf, created_at, expires_at";
pub(crate) type SessionRow = (String, String, String, i64, i64);

pub(crate) fn session_from_row((id_hash, user_id, csrf, created_at, expires_at): SessionRow) -> Session {
    Session { id_hash, user_id, csrf, created_at, expires_at }
}

pub(crate) const GRANT_COLUMNS: &str = "id, client_id, user_id, fhir_user, scope, patient, encounter, session_id, \
     refresh_expires_at, created_at, revoked_at, context, simulate_error, aud, trace";
pub(crate) type GrantRow = (
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

pub(crate) fn grant_from_row(
    (
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
    ): GrantRow,
) -> Grant {
    Grant {
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
    }
}

/// The stored form of a grant's launch context: NULL when empty.
pub(crate) fn grant_context(grant: &Grant) -> StoreResult<Option<String>> {
    (!grant.context.is_empty()).then(|| serde_json::to_string(&grant.context)).transpose().map_err(err)
}

pub(crate) const REFRESH_COLUMNS: &str = "token_hash, grant_id, client_id, expires_at, used_at";
pub(crate) type RefreshRow = (String, String, String, i64, Option<i64>);

pub(crate) fn refresh_from_row((token_hash, grant_id, client_id, expires_at, used_at): RefreshRow) -> RefreshToken {
    RefreshToken { token_hash, grant_id, client_id, expires_at, used_at }
}

pub(crate) const BACKEND_SESSION_COLUMNS: &str = "client_id, trace_id, simulate_error, created_at, expires_at";
pub(crate) type BackendSessionRow = (String, String, Option<String>, i64, i64);

pub(crate) fn backend_session_from_row(
    (client_id, trace_id, error, created_at, expires_at): BackendSessionRow,
) -> BackendSession {
    BackendSession {
        client_id,
        trace_id,
        simulate_error: error.as_deref().and_then(SimulatedError::from_name),
        created_at,
        expires_at,
    }
}

pub(crate) const HAND_TRACE_COLUMNS: &str = "trace_id, client_id, created_at, expires_at";
pub(crate) type HandTraceRow = (String, String, i64, i64);

pub(crate) fn hand_trace_from_row((trace_id, client_id, created_at, expires_at): HandTraceRow) -> HandTrace {
    HandTrace { trace_id, client_id, created_at, expires_at }
}
