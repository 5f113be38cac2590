//! What the SQLite store promises beyond the shared rules (docs/DESIGN.md "SQLite: one writer
//! connection"): readers never wait for the writer, and a data directory made by an older
//! version (the sqlx-based store, or fewer migrations) opens with its data.

use std::time::Duration;

use serde_json::json;
use smartlaunch_auth::secrets::random_token;
use smartlaunch_auth::store::UserStore;
use smartlaunch_fhir::store::{Expected, ResourceStore};
use smartlaunch_store::{BulkBatch, SqliteDb};

const NOW: &str = "2026-01-02T03:04:05Z";

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("smartlaunch-{name}-{}", random_token(8)))
}

/// A bulk write holds the writer's transaction open (uncommitted rows written); reads answer
/// at once all the same, from the last committed state (WAL), and see the rows after the
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_waits_for_the_writers_open_transaction() {
    let dir = temp_dir("reader");
    let db = SqliteDb::open_dir(&dir).await.unwrap();
    db.put(&json!({"resourceType": "Patient", "id": "p1"}), Expected::Any, NOW).await.unwrap();
    let mut bulk = db.bulk_writer().await.unwrap();
    let batch = BulkBatch::prepare(vec![json!({"resourceType": "Patient", "id": "p2"})], NOW).unwrap();
    assert_eq!(bulk.put(batch).await.unwrap(), 1);
    let reads = async {
        assert!(db.read("Patient", "p1").await.unwrap().is_some());
        assert!(db.read("Patient", "p2").await.unwrap().is_none(), "not committed yet");
        db.count().await.unwrap()
    };
    let count = tokio::time::timeout(Duration::from_secs(2), reads).await.expect("reads do not wait for the writer");
    assert_eq!(count, 1);
    bulk.commit().await.unwrap();
    assert_eq!(db.count().await.unwrap(), 2);
    assert!(db.read("Patient", "p2").await.unwrap().is_some());
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// The numbered migrations, as the store applies them.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_launches.sql"),
    include_str!("../migrations/0003_bounded_data.sql"),
    include_str!("../migrations/0004_asymmetric_clients.sql"),
    include_str!("../migrations/0005_bulk_export.sql"),
];

/// A database left by an older version (the bookkeeping the sqlx-based store kept: a
/// `schema_migrations` table of applied numbers, here 1–5, and data in it) opens: the later
/// migrations are applied once, the data is kept, and a second open changes nothing.
#[tokio::test]
async fn a_data_directory_of_an_older_version_opens_and_keeps_its_data() {
    let dir = temp_dir("old-dir");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let conn = rusqlite::Connection::open(dir.join("smartlaunch.db")).unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)").unwrap();
        for (n, sql) in MIGRATIONS.iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", [n as i64 + 1]).unwrap();
        }
        conn.execute(
            "INSERT INTO users (id, username, password_hash, fhir_user, display_name) \
             VALUES ('u1', 'amy', 'hash', 'Practitioner/1', 'Amy')",
            [],
        )
        .unwrap();
    }
    for _ in 0..2 {
        let db = SqliteDb::open_dir(&dir).await.unwrap();
        let user = db.user_by_username("amy").await.unwrap().expect("the old data is kept");
        assert_eq!(user.fhir_user, "Practitioner/1");
        db.close().await;
    }
    let conn = rusqlite::Connection::open(dir.join("smartlaunch.db")).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>(), "each migration once");
    // A table of migration 7 exists.
    conn.execute("INSERT INTO launch_links (id_hash, name, form, created_at) VALUES ('h', 'n', 'f', 1)", []).unwrap();
    drop(conn);
    std::fs::remove_dir_all(dir).ok();
}
