//! The auth core's storage on SQLite, continued: authorization codes, grants and refresh-token
//! families, revocations (checklist items 71–76, RFC 7009), the patient directory and the
//! housekeeping purge.

use smartlaunch_auth::retention::Purge;
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::store::{
    CodeGrant, CodeRedemption, CodeStore, Grant, GrantStore, Housekeeping, PatientDirectory, RefreshToken, StoreResult,
    UserAuthorization,
};
use smartlaunch_auth::UnixTime;

use rusqlite::Connection;

use crate::auth_rows::{
    err, grant_context, grant_from_row, refresh_from_row, GrantRow, RefreshRow, GRANT_COLUMNS, REFRESH_COLUMNS,
};
use crate::conn::{all, exec, one};
use crate::{DbError, SqliteDb};

impl CodeStore for SqliteDb {
    async fn insert_code(&self, code_hash: &str, grant: &CodeGrant, expires_at: UnixTime) -> StoreResult<()> {
        let data = serde_json::to_string(grant).map_err(err)?;
        let (code_hash, grant_id, client_id) = (code_hash.to_owned(), grant.grant_id.clone(), grant.client_id.clone());
        self.writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO authorization_codes (code_hash, grant_id, client_id, data, expires_at) VALUES (?, ?, ?, ?, ?)",
                    &[&code_hash, &grant_id, &client_id, &data, &expires_at],
                )?;
                Ok::<_, DbError>(())
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
                let redeemed: Option<(String,)> = one(
                    conn,
                    "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
                     AND expires_at > $1 RETURNING data",
                    &[&now, &code_hash],
                )?;
                if redeemed.is_some() {
                    return Ok::<_, DbError>((redeemed, None));
                }
                let used: Option<(String,)> = one(
                    conn,
                    "SELECT grant_id FROM authorization_codes WHERE code_hash = ? AND used_at IS NOT NULL",
                    &[&code_hash],
                )?;
                Ok((None, used))
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
        let context = grant_context(g)?;
        let (g, refresh) = (g.clone(), refresh.clone());
        let error = g.simulate_error.map(|e| e.name());
        let sql = format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        self.writer
            .write(move |conn| {
                exec(
                    conn,
                    &sql,
                    &[
                        &g.id,
                        &g.client_id,
                        &g.user_id,
                        &g.fhir_user,
                        &g.scope,
                        &g.patient,
                        &g.encounter,
                        &g.session_id,
                        &g.refresh_expires_at,
                        &g.created_at,
                        &g.revoked_at,
                        &context,
                        &error,
                        &g.aud,
                        &g.trace,
                    ],
                )?;
                insert_refresh(conn, &refresh)?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?");
        let row: Option<GrantRow> = self.read.read(|c| one(c, &sql, &[&id])).map_err(err)?;
        Ok(row.map(grant_from_row))
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?");
        let row: Option<RefreshRow> = self.read.read(|c| one(c, &sql, &[&token_hash])).map_err(err)?;
        Ok(row.map(refresh_from_row))
    }

    async fn rotate_refresh(&self, old_hash: &str, new: &RefreshToken, now: UnixTime) -> StoreResult<bool> {
        let (old_hash, new) = (old_hash.to_owned(), new.clone());
        self.writer
            .write(move |conn| {
                // Spent by someone else: nothing was changed, nothing is inserted.
                let spent = exec(
                    conn,
                    "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                    &[&now, &old_hash],
                )?;
                if spent != 1 {
                    return Ok::<_, DbError>(false);
                }
                insert_refresh(conn, &new)?;
                Ok(true)
            })
            .await
            .map_err(err)
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let grant_id = grant_id.to_owned();
        self.writer
            .write(move |conn| {
                // The grant may never have been stored (no refresh token): record it all the same.
                exec(
                    conn,
                    "INSERT INTO revocations (grant_id, revoked_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    &[&grant_id, &now],
                )?;
                revoke_grants(conn, Grants::Id(&grant_id), now)?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn revoked_grants(&self, since: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        self.read
            .read(|c| all(c, "SELECT grant_id, revoked_at FROM revocations WHERE revoked_at >= ?", &[&since]))
            .map_err(err)
    }

    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<()> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.writer
            .write(move |conn| {
                exec(
                    conn,
                    "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES (?, ?, ?) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                    &[&user_id, &client_id, &now],
                )?;
                revoke_grants(conn, Grants::OfUserAndClient(&user_id, &client_id), now)?;
                exec(conn, "DELETE FROM consents WHERE user_id = ? AND client_id = ?", &[&user_id, &client_id])?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(err)
    }

    async fn access_revocations(&self, since: UnixTime) -> StoreResult<Vec<(String, String, UnixTime)>> {
        self.read
            .read(|c| {
                all(c, "SELECT user_id, client_id, revoked_at FROM access_revocations WHERE revoked_at >= ?", &[&since])
            })
            .map_err(err)
    }

    async fn user_authorizations(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<UserAuthorization>> {
        let user_id = user_id.to_owned();
        // Counts and looks through launches: off the runtime's workers.
        let rows: Vec<(String, String, i64, i64, Option<String>)> = self
            .read
            .read_blocking(move |c| {
                all(
                    c,
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
                    &[&now, &user_id],
                )
            })
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
        let row: Option<(i64,)> = self
            .read
            .read(|c| {
                one(
                    c,
                    "SELECT 1 FROM resources WHERE resource_type = 'Patient' AND id = ? AND deleted = 0",
                    &[&patient_id],
                )
            })
            .map_err(err)?;
        Ok(row.is_some())
    }

    async fn patient_encounters(&self, patient_id: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = self
            .read
            .read(|c| {
                all(
                    c,
                    "SELECT r.id FROM resource_compartments c JOIN resources r ON r.resource_type = c.resource_type \
                     AND r.id = c.id WHERE c.patient_id = ? AND c.resource_type = 'Encounter' AND r.deleted = 0 \
                     ORDER BY r.sort_key DESC, r.id",
                    &[&patient_id],
                )
            })
            .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

impl Housekeeping for SqliteDb {
    /// Each statement (each chunk of one) is a write job of its own: the requests' writes
    /// interleave with the purge instead of waiting for all of it.
    async fn purge_expired(&self, purge: &Purge) -> StoreResult<()> {
        // Written in time order: the expired rows are a prefix by rowid (no index needed).
        for (table, time, before) in [
            ("authorization_codes", "expires_at", purge.codes),
            ("pending_authorizations", "expires_at", purge.expired),
            ("launch_events", "at", purge.events),
        ] {
            self.delete_expired_prefix(table, time, before).await?;
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
            (
                "DELETE FROM launch_events WHERE seq <= \
                 (SELECT seq FROM launch_events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                purge.max_events,
            ),
        ] {
            let deleted = self.writer.statement(move |conn| exec(conn, sql, &[&before]).map_err(DbError::from)).await;
            if let Err(e) = deleted {
                self.launches.clear();
                return Err(err(e));
            }
        }
        // Expired launches were deleted: what this process kept of them goes too.
        self.launches.clear();
        Ok(())
    }
}

/// Rows deleted per statement by housekeeping: other writers get the writer thread in between.
const PURGE_CHUNK: usize = 2_000;

impl SqliteDb {
    /// Deletes the rows of `table` whose `time` is at or before `before`, among those inserted
    /// before its oldest live row.  Rows are written in time order, so that is every expired
    /// row and the cost is proportional to what is deleted; a row written out of order (the
    /// clock went back) goes at a later run, and a live row is never deleted.
    async fn delete_expired_prefix(&self, table: &str, time: &str, before: UnixTime) -> StoreResult<()> {
        let sql = format!(
            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {time} <= ?1 AND rowid < \
             COALESCE((SELECT rowid FROM {table} WHERE {time} > ?1 ORDER BY rowid LIMIT 1), \
             (SELECT MAX(rowid) + 1 FROM {table})) ORDER BY rowid LIMIT {PURGE_CHUNK})"
        );
        loop {
            let sql = sql.clone();
            let deleted = self
                .writer
                .statement(move |conn| exec(conn, &sql, &[&before]).map_err(DbError::from))
                .await
                .map_err(err)?;
            if deleted < PURGE_CHUNK {
                return Ok(());
            }
        }
    }
}

/// Which stored grants to revoke.
#[derive(Clone, Copy)]
pub(crate) enum Grants<'a> {
    Id(&'a str),
    OfClient(&'a str),
    OfUserAndClient(&'a str, &'a str),
}

/// Records every access token of `client_id` issued up to `now`, for all users, as revoked (the
/// client is removed; the record outlives it, so its tokens stay refused after a restart).
pub(crate) fn revoke_client_access(conn: &Connection, client_id: &str, now: UnixTime) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES (?, ?, ?) \
         ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = excluded.revoked_at",
        &[&ALL_USERS, &client_id, &now],
    )?;
    Ok(())
}

/// Revokes stored grants inside a transaction: records each revocation, marks the grants and
/// deletes their refresh tokens (the family ends).
pub(crate) fn revoke_grants(conn: &Connection, which: Grants<'_>, now: UnixTime) -> rusqlite::Result<()> {
    // `$1` is `now` (where a statement takes it); the condition's values follow.
    let (condition, values): (&str, Vec<&str>) = match which {
        Grants::Id(id) => ("id = $2", vec![id]),
        Grants::OfClient(client) => ("client_id = $2", vec![client]),
        Grants::OfUserAndClient(user, client) => ("user_id = $2 AND client_id = $3", vec![user, client]),
    };
    let with_now: Vec<&dyn rusqlite::ToSql> =
        std::iter::once(&now as &dyn rusqlite::ToSql).chain(values.iter().map(|v| v as &dyn rusqlite::ToSql)).collect();
    exec(
        conn,
        &format!(
            "INSERT INTO revocations (grant_id, revoked_at) SELECT id, $1 FROM grants \
             WHERE {condition} AND revoked_at IS NULL ON CONFLICT DO NOTHING"
        ),
        &with_now,
    )?;
    // Without `now`: the condition's placeholders renumbered from 1.
    let condition_from_1 = match which {
        Grants::Id(_) => "id = ?1",
        Grants::OfClient(_) => "client_id = ?1",
        Grants::OfUserAndClient(..) => "user_id = ?1 AND client_id = ?2",
    };
    exec(
        conn,
        &format!("DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE {condition_from_1})"),
        &with_now[1..],
    )?;
    exec(conn, &format!("UPDATE grants SET revoked_at = $1 WHERE {condition} AND revoked_at IS NULL"), &with_now)?;
    Ok(())
}

fn insert_refresh(conn: &Connection, r: &RefreshToken) -> rusqlite::Result<()> {
    exec(
        conn,
        &format!("INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
        &[&r.token_hash, &r.grant_id, &r.client_id, &r.expires_at, &r.used_at],
    )?;
    Ok(())
}
