//! The HTTP suites on PostgreSQL (tests/http_postgres.rs): every server of a test runs on a
//! database of its own on the PostgreSQL server of `SMARTLAUNCH_TEST_DATABASE_URL`, named
//! after the server's data directory, so that a server started again on the same directory
//! finds its data there, as on SQLite.  [`super::Server::stop`] drops it.

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server of the suites on PostgreSQL.  Unset, they fail: a run that was meant
/// to cover PostgreSQL must never pass on SQLite, nor be skipped.
fn server_url() -> String {
    match std::env::var("SMARTLAUNCH_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "SMARTLAUNCH_TEST_DATABASE_URL is not set: the http_postgres suites run every server on \
             PostgreSQL (scripts/test.sh sets it; e.g. postgres://root@127.0.0.1:5432/postgres). \
             `cargo test --test http` runs the suites on SQLite only."
        ),
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let server = base[host_start..].find('/').map_or(base, |i| &base[..host_start + i]);
    format!("{server}/{database}{}{query}", if query.is_empty() { "" } else { "?" })
}

/// The database name of a data directory: `smartlaunch_it_` and its name's letters and digits.
fn database_name(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tail: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    format!("smartlaunch_it_{tail}")
}

/// On PostgreSQL: the URL of the database of the data directory `dir`, created when missing.
/// On SQLite: `None`.
pub async fn database_for(dir: &Path) -> Option<String> {
    if !crate::ON_POSTGRES {
        return None;
    }
    let url = server_url();
    let name = database_name(dir);
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    if exists.is_none() {
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("CREATE DATABASE");
    }
    admin.close().await.ok();
    Some(with_database(&url, &name))
}

/// Drops the database of `dir` (PostgreSQL), unless `SMARTLAUNCH_TEST_KEEP_DATABASE` is set.
pub async fn drop_database_of(dir: &Path) {
    if !crate::ON_POSTGRES || std::env::var_os("SMARTLAUNCH_TEST_KEEP_DATABASE").is_some() {
        return;
    }
    let url = server_url();
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", database_name(dir)).as_str())
        .await
        .expect("DROP DATABASE");
    admin.close().await.ok();
}
