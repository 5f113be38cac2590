//! SQLite databases for tests: each test opens its own in a temporary data directory and
//! removes it afterwards, also when the test fails.

use std::future::Future;

use smartlaunch_auth::secrets::random_token;
use smartlaunch_store::SqliteDb;

/// Runs `body` on a fresh SQLite database, then removes it (also when `body` panics).
pub async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(SqliteDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("smartlaunch-store-test-{}", random_token(8)));
    let db = SqliteDb::open_dir(&dir).await.expect("open SQLite");
    let outcome = tokio::spawn(body(db.clone())).await;
    db.close().await;
    std::fs::remove_dir_all(&dir).ok();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
