//! The auth core's storage ports on PostgreSQL (docs/DESIGN.md "PostgreSQL" and "Storage
//! ports of the auth core"), one file per aggregate.  The semantics are the SQLite store's
//! (`crate::auth`), checked by the shared rules of `smartlaunch_auth::store::rules` on both.
//!
//! PostgreSQL runs writers at once, on many connections and many nodes, at READ COMMITTED.
//! Every conditional write is therefore one statement whose condition is re-checked on the
//! locked, newest row (a racing `UPDATE … WHERE used_at IS NULL` waits for the first one's
//! commit, then finds the row used and changes nothing), an `INSERT … ON CONFLICT`, or a
//! transaction that first locks what it decides on.  A transaction whose later statement must
//! see what a racing writer committed meanwhile takes its lock in an earlier statement (each
//! statement of a READ COMMITTED transaction reads a fresh snapshot).

mod clients;
mod directory;
mod flows;
mod grants;
mod housekeeping;
mod inspector;
mod keys;
mod launches;
mod users;

pub(super) use clients::REVOKE_CLIENT_ACCESS;
pub(super) use users::INSERT_USER;

/// Times a transaction is tried when PostgreSQL aborts it to break a deadlock (or a
/// serialization failure).
const MAX_ATTEMPTS: u32 = 5;

/// Whether PostgreSQL aborted the transaction so that it can be run again: SQLSTATE 40001
/// (serialization failure) or 40P01 (deadlock detected).
fn retryable(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}
