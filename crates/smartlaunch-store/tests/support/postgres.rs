//! PostgreSQL databases for tests: each test creates its own database on the server of
//! `SMARTLAUNCH_TEST_DATABASE_URL` and drops it afterwards, also when the test fails.  Unset,
//! the PostgreSQL tests fail when `CI` is set and are skipped with a note otherwise.

use std::future::Future;

use smartlaunch_auth::secrets::random_token;
use smartlaunch_store::PgDb;
use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server for tests, or `None` (skipped) outside CI.
pub fn postgres_url() -> Option<String> {
    match std::env::var("SMARTLAUNCH_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "SMARTLAUNCH_TEST_DATABASE_URL is not set: CI must run the PostgreSQL tests \
             (.ci/run starts a server and sets it; e.g. postgres://root@127.0.0.1:5432/postgres)"
        ),
        _ => {
            eprintln!("note: SMARTLAUNCH_TEST_DATABASE_URL is not set; PostgreSQL test skipped");
            None
        }
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let server = base[host_start..].find('/').map_or(base, |i| &base[..host_start + i]);
    format!("{server}/{database}{}{query}", if query.is_empty() { "" } else { "?" })
}

/// Runs `body` with `nodes` handles (pools of `connections` each: the database of that many
/// stateless nodes) and the database's URL, on a PostgreSQL database created for it, then
/// drops the database (also when `body` panics).
pub async fn on_postgres_nodes<F, Fut>(nodes: usize, connections: u32, body: F)
where
    F: FnOnce(Vec<PgDb>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url() else { return };
    let name = format!("smartlaunch_pg_test_{}", random_token(8).to_lowercase().replace('-', "_"));
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
    admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("CREATE DATABASE");
    let database_url = with_database(&url, &name);
    let mut dbs = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        dbs.push(PgDb::connect(&database_url, connections).await.expect("connect and migrate"));
    }
    let outcome = tokio::spawn(body(dbs.clone(), database_url)).await;
    for db in dbs {
        db.close().await;
    }
    if std::env::var_os("SMARTLAUNCH_TEST_KEEP_DATABASE").is_some() {
        eprintln!("kept PostgreSQL database {name}");
    } else {
        admin.execute(format!("DROP DATABASE \"{name}\" WITH (FORCE)").as_str()).await.expect("DROP DATABASE");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs `body` on one node's handle with a pool of `connections` (see [`on_postgres_nodes`]).
pub async fn on_postgres<F, Fut>(connections: u32, body: F)
where
    F: FnOnce(PgDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_postgres_nodes(1, connections, |mut dbs, _| {
        let db = dbs.pop().expect("one node");
        body(db)
    })
    .await
}
