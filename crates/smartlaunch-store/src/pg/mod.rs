//! The PostgreSQL backend: [`PgDb`], one pool for reads and writes, its numbered migrations,
//! and its implementations of the storage ports (docs/DESIGN.md "PostgreSQL").
//!
//! It shares with the SQLite backend what does not depend on the engine (statement texts both
//! accept, row → domain mapping, the search SQL builder with its `Dialect`) and keeps its own
//! transactions: PostgreSQL runs writers concurrently, so every conditional write locks the row
//! it decides on (see [`resources`]).

mod auth;
mod browse;
mod bulk;
mod changes;
mod exports;
mod launch_links;
mod locks;
mod reset;
mod resources;

pub use bulk::PgBulkWriter;
pub use exports::{PgExportClaim, PgSnapshot};
pub use locks::PgSessionLock;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

use crate::DbError;

pub use changes::PgChangeFeed;

/// Numbered migrations of the PostgreSQL schema, applied in order, each once, in a transaction
/// of its own (DDL is transactional in PostgreSQL).  The numbers are this dialect's own: a
/// schema change adds one file to `migrations/` (SQLite) and one to `migrations/postgres/`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_schema.sql")),
    (2, include_str!("../../migrations/postgres/0002_change_feed.sql")),
    (3, include_str!("../../migrations/postgres/0003_key_retirement.sql")),
    (4, include_str!("../../migrations/postgres/0004_clients_cleared.sql")),
];

/// Any key of `pg_advisory_xact_lock` held while migrating, so that nodes starting together
/// migrate one after the other (the second finds the work done).
const MIGRATION_LOCK: i64 = 0x736d_6172_746c_6175; // "smartlau"

/// The connections a node keeps by default: enough for the request concurrency of a 2–4 core
/// node; PostgreSQL's own default limit is 100 connections for all nodes together.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The smartlaunch database on PostgreSQL.  Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct PgDb {
    pub(crate) pool: PgPool,
}

/// Connections a node may hold for long: the change feed's listener, and for each running
/// export job its claim and its snapshot.
const LONG_HELD_CONNECTIONS: u32 = 1 + 2 * smartlaunch_fhir::export::MAX_CONCURRENT_JOBS as u32;
/// The smallest pool: what is held for long plus a few for requests.  With less, a node
/// running exports starves its own requests and its jobs each other (found on a pool of 4).
pub const MIN_CONNECTIONS: u32 = LONG_HELD_CONNECTIONS + 4;

impl PgDb {
    /// Connects to `url` (`postgres://user@host:port/database`) with a pool of at most
    /// `max_connections` (never fewer than [`MIN_CONNECTIONS`]), and migrates the schema.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgDb, DbError> {
        let options = PgConnectOptions::from_str(url)?.application_name("smartlaunch");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(MIN_CONNECTIONS))
            .min_connections(1)
            .idle_timeout(Duration::from_secs(60))
            // A stale connection (a restarted server, a failover) is found before use.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        let db = PgDb { pool };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)").await?;
        let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
        for (version, sql) in MIGRATIONS {
            if !applied.iter().any(|(v,)| v == version) {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refreshes the planner's statistics of the FHIR tables.  Right after a bulk load
    /// (an import, seeding) the planner has none until autovacuum gets to the tables, and
    /// without them it probes a search's second clause through the kind's index (every row of
    /// the parameter) instead of the candidate's own rows: 30–400 ms instead of under 1 ms
    /// measured at 2,100 resources.  Bulk loads call this when they finish.
    pub async fn analyze(&self) -> Result<(), DbError> {
        sqlx::query("ANALYZE resources, resource_versions, resource_compartments, search_index")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the database answers a trivial query (the health check).
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
