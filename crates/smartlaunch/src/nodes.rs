//! What a node of several on one PostgreSQL does beyond a lone server (issue 10, "Stateless
//! nodes"; docs/DESIGN.md): it reads the key encryption key of the shared signing keys, and
//! follows the change feed so that what it keeps in memory follows what the other nodes write.
//! A server on SQLite has no change feed: it polls the signing keys, which `smartlaunch keys
//! rotate --data` may add while it runs.

use std::path::Path;
use std::time::Duration;

use smartlaunch_auth::changes::{Change, ChangeFeed, FeedEvent};
use smartlaunch_auth::key_encryption::{open_material, KeyEncryptionKey, HOW_TO_MAKE_ONE};
use smartlaunch_auth::keys::KEY_ACTIVATION;
use smartlaunch_auth::service::{self, add_signing_keys, KeyRetirement};
use smartlaunch_auth::store::KeyStore;
use smartlaunch_auth::{AuthConfig, AuthService, UnixTime};
use smartlaunch_store::{postgres_url, DatabaseConfig, Db, PgDb};

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

/// `smartlaunch keys rotate`: adds a new set of signing keys to the database of `config`,
/// sealed with the key encryption key.  Running servers load it at once: on PostgreSQL they hear
/// of it on the change feed, on SQLite they read the keys every [`KEY_POLL`].  Returns the new key
/// id.  The key encryption key is checked against the stored keys first, so that the new key
/// is one the servers can open: a key sealed with another key encryption key is refused.  On
/// PostgreSQL the key encryption key is required, and a key stored unencrypted (by an earlier
/// `smartlaunch migrate`), which the nodes refuse, does not stop a rotation that replaces it.
pub async fn rotate_signing_keys(
    config: &DatabaseConfig,
    key_file: Option<&Path>,
    now: UnixTime,
) -> anyhow::Result<String> {
    match config {
        DatabaseConfig::Postgres { url, .. } => {
            let key_encryption_key = required_key_encryption_key(key_file)?;
            let db = PgDb::connect(postgres_url(url)?, 2).await?;
            let kid = async {
                for (stored, _) in db.all_keys().await? {
                    open_material(Some(&key_encryption_key), &stored)
                        .map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))?;
                }
                Ok::<_, anyhow::Error>(add_signing_keys(&db, Some(&key_encryption_key), now).await?)
            }
            .await;
            db.close().await;
            kid
        }
        DatabaseConfig::Sqlite { .. } => {
            let key_encryption_key = key_encryption_key(key_file)?;
            let db = Db::open(config).await?;
            let auth_config = AuthConfig { key_encryption_key, ..AuthConfig::new("http://127.0.0.1") };
            let rotated = match AuthService::open(db.clone(), auth_config, now).await {
                Ok(auth) => auth.rotate_keys(now).await.map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            db.close().await;
            rotated
        }
    }
}

/// `smartlaunch keys retire`: deletes the signing key `kid` from the database; every running
/// node stops verifying with it within moments (PostgreSQL: the change feed; SQLite: the
/// server's next read of the keys, [`KEY_POLL`]).
pub async fn retire_signing_key(config: &DatabaseConfig, kid: &str) -> anyhow::Result<()> {
    let db = Db::open(config).await?;
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

/// How often a server without a change feed (SQLite) reads the signing keys: well within
/// [`KEY_ACTIVATION`], so a key rotated in by another process is published before it signs.
pub const KEY_POLL: Duration = Duration::from_secs(3);
const _: () = assert!(KEY_POLL.as_secs() < KEY_ACTIVATION as u64, "a rotated key must be published before it signs");

/// Reads the signing keys every [`KEY_POLL`] for as long as the server runs (SQLite, where no
/// change feed tells of a rotation), and loads them when another process added or retired one;
/// and reads the revocations, so that the tokens of an app removed by another process
/// (`smartlaunch clients remove --data`) are refused within [`KEY_POLL`].
pub(crate) fn poll_keys(app: App) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_POLL);
        let mut failing = false;
        loop {
            tick.tick().await;
            match app.auth.reload_keys_if_rotated(app.clock.now()).await {
                Ok(reloaded) => {
                    if reloaded {
                        tracing::info!("signing keys: loaded a rotated key");
                    }
                    failing = false;
                }
                // Said once, not every few seconds; the keys loaded before keep working.
                Err(e) if !failing => {
                    tracing::error!(
                        "signing keys: cannot load the stored keys ({e}); this server keeps its current keys"
                    );
                    failing = true;
                }
                Err(_) => {}
            }
            if let Err(e) = app.auth.load_revocations(app.clock.now()).await {
                tracing::warn!("revocations: cannot read them ({e}); trying again in {} s", KEY_POLL.as_secs());
            }
        }
    })
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
