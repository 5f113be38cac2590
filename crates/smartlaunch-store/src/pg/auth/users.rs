//! [`UserStore`] and [`SessionStore`] on PostgreSQL: users and their signed-in sessions (a
//! session signed in on one node is used on every node).

use smartlaunch_auth::store::{Session, SessionStore, StoreResult, UserStore};
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;

use crate::auth_rows::{err, session_from_row, user_from_row, SessionRow, UserRow, SESSION_COLUMNS, USER_COLUMNS};
use crate::pg::PgDb;

/// A taken id or username inserts nothing (any unique key: no conflict target).
pub(in crate::pg) const INSERT_USER: &str = "INSERT INTO users (id, username, password_hash, fhir_user, display_name) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
const SESSION_USER: &str = "SELECT s.id_hash, s.csrf, s.user_id, s.created_at, s.expires_at, u.username, \
     u.password_hash, u.fhir_user, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id_hash = $1 AND s.expires_at > $2";

impl UserStore for PgDb {
    async fn insert_user(&self, user: &User) -> StoreResult<bool> {
        let inserted = sqlx::query(INSERT_USER)
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(&user.fhir_user)
            .bind(&user.display_name)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
        Ok(inserted == 1)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(user_from_row))
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(user_from_row).collect())
    }

    async fn user_by_fhir_user(&self, fhir_user: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE fhir_user = $1 ORDER BY username LIMIT 1"))
                .bind(fhir_user)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(row.map(user_from_row))
    }
}

impl SessionStore for PgDb {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&s.id_hash)
            .bind(&s.user_id)
            .bind(&s.csrf)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>> {
        let row: Option<SessionRow> =
            sqlx::query_as(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1 AND expires_at > $2"))
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(row.map(session_from_row))
    }

    async fn session_user(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<(Session, User)>> {
        type Row = (String, String, String, i64, i64, String, String, String, String);
        let row: Option<Row> =
            sqlx::query_as(SESSION_USER).bind(id_hash).bind(now).fetch_optional(&self.pool).await.map_err(err)?;
        Ok(row.map(
            |(id_hash, csrf, user_id, created_at, expires_at, username, password_hash, fhir_user, display_name)| {
                let user = User { id: user_id.clone(), username, password_hash, fhir_user, display_name };
                (Session { id_hash, user_id, csrf, created_at, expires_at }, user)
            },
        ))
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await.map_err(err)?;
        Ok(())
    }
}
