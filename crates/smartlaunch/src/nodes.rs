//! What a node of several on one PostgreSQL does beyond a lone server (issue 10, "Stateless
//! nodes"; docs/DESIGN.md): it reads the key encryption key of the shared signing keys, and
//! follows the change feed so that what it keeps in memory follows what the other nodes write.

use std::path::Path;
use std::time::Duration;

use smartlaunch_auth::changes::{Change, ChangeFeed, FeedEvent};
use smartlaunch_auth::key_encryption::{KeyEncryptionKey, HOW_TO_MAKE_ONE};
use smartlaunch_auth::service::{self, add_signing_keys, KeyRetirement};
use smartlaunch_auth::UnixTime;
use smartlaunch_store::{postgres_url, PgDb};

use crate::server::App;

/// The environment variable with the key encryption key (base64 of 32 bytes).
pub const KEY_ENCRYPTION_KEY_ENV: &str = "SMARTLAUNCH_KEY_ENCRYPTION_KEY";
/// The wait before applying a change again after the database failed to answer.
const RETRY: Duration = Duration::from_secs(1);

/// The key encryption key of the signing keys: the file `file` (`--key-encryption-key-file`),
/// else [`KEY_ENCRYPTION_KEY_ENV`], else none.
pub fn key_encryption_key(file: Option<&Path>) -> anyhow::Result<Option<KeyEncryptionKey>> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--key-encryption-key-file {}: {e}", path.display()))?,
        ),
        None => std::env::var(KEY_ENCRYPTION_KEY_ENV).ok().filter(|v| !v.trim().is_empty()),
    };
    text.map(|text| KeyEncryptionKey::from_base64(&text).map_err(anyhow::Error::msg)).transpose()
}

/// Like [`key_encryption_key`], for PostgreSQL, where the keys are always sealed: none is an
/// error that says how to make one.
pub fn required_key_encryption_key(file: Option<&Path>) -> anyhow::Result<KeyEncryptionKey> {
    key_encryption_key(file)?.ok_or_else(|| {
        anyhow::anyhow!(
            "on PostgreSQL the signing keys are encrypted in the database, and no key encryption key was given: \
             {HOW_TO_MAKE_ONE}"
        )
    })
}

/// `smartlaunch keys rotate`: adds a new set of signing keys to the PostgreSQL database at
/// `database_url`, sealed with the key encryption key; the running nodes hear of it on the
/// change feed.  Returns the new key id.  The stored keys are not opened: a rotation also
/// replaces a key the nodes refuse (one stored unencrypted by an earlier `smartlaunch migrate`).
pub async fn rotate_signing_keys(database_url: &str, key_file: Option<&Path>, now: UnixTime) -> anyhow::Result<String> {
    let key_encryption_key = required_key_encryption_key(key_file)?;
    let db = PgDb::connect(postgres_url(database_url)?, 2).await?;
    let kid = add_signing_keys(&db, Some(&key_encryption_key), now).await;
    db.close().await;
    Ok(kid?)
}

/// `smartlaunch keys retire`: deletes the signing key `kid` from the PostgreSQL database at
/// `database_url`; every running node stops verifying with it within moments (the change feed).
pub async fn retire_signing_key(database_url: &str, kid: &str) -> anyhow::Result<()> {
    let db = PgDb::connect(postgres_url(database_url)?, 2).await?;
    let retired = service::retire_signing_key(&db, kid).await;
    db.close().await;
    match retired? {
        KeyRetirement::Retired => Ok(()),
        KeyRetirement::Unknown => anyhow::bail!("no signing key {kid} in the database"),
        KeyRetirement::Newest => anyhow::bail!(
            "{kid} is the newest signing key, the one the nodes sign with: run `smartlaunch keys rotate` first, \
             then retire {kid}"
        ),
    }
}

/// Follows `feed` for as long as the server runs: applies each change to the authorization
/// service (revocations, client cache, keys) and reloads the CORS origins when a client changed.
pub(crate) fn follow_changes(app: App, mut feed: impl ChangeFeed + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let event = feed.next().await;
            // A resync must not be skipped: a revoked token would stay usable until it expires.
            while let Err(e) = app.auth.apply_change(&event, app.clock.now()).await {
                tracing::warn!("change feed: {e:?}; retrying");
                tokio::time::sleep(RETRY).await;
            }
            if matches!(
                event,
                FeedEvent::Resync | FeedEvent::Change(Change::ClientChanged { .. } | Change::ClientsCleared)
            ) {
                crate::web::reload_client_origins(&app).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_and_postgres_requires_a_key() {
        let dir = std::env::temp_dir().join(format!("smartlaunch-kek-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kek");
        std::fs::write(&file, "c21hcnRsYXVuY2gtdGVzdC1ub2Rlcy0zMi1ieXRlcyE=\n").unwrap();
        assert!(required_key_encryption_key(Some(&file)).is_ok());
        std::fs::write(&file, "short").unwrap();
        assert!(key_encryption_key(Some(&file)).is_err());
        let missing = key_encryption_key(Some(&dir.join("none"))).unwrap_err().to_string();
        assert!(missing.contains("--key-encryption-key-file"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
