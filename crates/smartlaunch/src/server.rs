//! Start-up: open the database, seed it, open the authorization service, bind and serve.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use smartlaunch_auth::key_encryption::{KeyEncryptionKey, HOW_TO_MAKE_ONE};
use smartlaunch_auth::{AuthConfig, AuthService};
use smartlaunch_store::{redact_database_url, Backend, DatabaseConfig, Db};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// Server settings, read once at start (ARCHITECTURE.md: one config struct, no globals).  Its
/// `Debug` shows no secret: a settings dump in a log must not hand out the admin token.
#[derive(Clone)]
pub struct Settings {
    /// Where the SQLite database lives (without `database_url`), and the Bulk Data export
    /// files.
    pub data_dir: PathBuf,
    /// A PostgreSQL database to run on instead of SQLite (`--database`, `DATABASE_URL`).
    pub database_url: Option<String>,
    /// The most connections this node opens to PostgreSQL.
    pub database_connections: u32,
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The externally visible base URL; `None`: `http://<bound address>`.
    pub public_url: Option<String>,
    /// When set, dynamic registration requires this initial access token.
    pub registration_token: Option<String>,
    /// When set, the launch API (`POST /api/launches`) requires this bearer token.
    pub admin_token: Option<String>,
    /// Open the sandbox powers beyond loopback (`--open-sandbox`); on loopback they are open
    /// without it (unless an admin token is set).
    pub open_sandbox: bool,
    /// Per-address rate limits on the token and registration endpoints.
    pub rate_limits: crate::web::limits::RateLimits,
    /// The reverse proxies whose `X-Forwarded-For` names the client for the per-address
    /// limits and the sign-in throttle (`--trusted-proxy`); none by default.
    pub trusted_proxies: crate::web::client_addr::TrustedProxies,
    /// Encrypts the signing keys in the database: required on PostgreSQL, optional on SQLite
    /// (`--key-encryption-key-file`, `SMARTLAUNCH_KEY_ENCRYPTION_KEY`; docs/DESIGN.md
    /// "Stateless nodes").
    pub key_encryption_key: Option<KeyEncryptionKey>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "(set)");
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_database_url))
            .field("database_connections", &self.database_connections)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("registration_token", &secret(&self.registration_token))
            .field("admin_token", &secret(&self.admin_token))
            .field("open_sandbox", &self.open_sandbox)
            .field("rate_limits", &self.rate_limits)
            .field("trusted_proxies", &self.trusted_proxies)
            // Its own Debug shows no key material.
            .field("key_encryption_key", &self.key_encryption_key)
            .finish()
    }
}

/// Everything a request handler needs.
pub(crate) struct AppState {
    pub auth: AuthService<Db>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Origins of registered redirect URIs: the CORS allow-list of the token endpoint and the
    /// FHIR API (spec digest §1.1 "CORS").
    pub client_origins: RwLock<HashSet<String>>,
    pub secure_cookies: bool,
    pub rate_limits: crate::web::limits::RateLimits,
    pub trusted_proxies: Arc<crate::web::client_addr::TrustedProxies>,
    /// When this server started (FHIR instant): the Brands Bundle's timestamp.
    pub started_at: String,
    /// Bulk Data export jobs.
    pub exports: Arc<crate::exports::Exports>,
    /// The launch URL of the demo app `serve` runs beside the server (issue 11): the launcher
    /// offers the registered app with this launch URL as a ready example.
    pub ready_example: ReadyExample,
}

/// The demo app's launch URL, once it runs.
pub(crate) type ReadyExample = Arc<std::sync::RwLock<Option<String>>>;

pub(crate) type App = Arc<AppState>;

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    /// Which database it runs on, without passwords ("SQLite at …", "PostgreSQL at …"): the
    /// start-up banner says it, so that a node meant for a shared database is seen not to be.
    pub database: String,
    /// How the open-sandbox powers are guarded (the start-up banner says it).
    pub sandbox_mode: smartlaunch_auth::config::SandboxMode,
    db: Db,
    exports: Arc<crate::exports::Exports>,
    /// Follows the other nodes' changes (PostgreSQL), or polls the signing keys (SQLite).
    changes: JoinHandle<()>,
    /// Purges and takes up orphaned export jobs every [`HOUSEKEEPING_INTERVAL`].
    housekeeping: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Keeps `smartlaunch reset` off the database while this server runs.
    _lock: crate::sandbox::ServerLock,
    ready_example: ReadyExample,
}

impl Running {
    /// Tells the launcher which registered app is the demo app beside it (its launch URL).
    pub fn set_ready_example(&self, launch_uri: &str) {
        if let Ok(mut slot) = self.ready_example.write() {
            *slot = Some(launch_uri.to_owned());
        }
    }

    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.public_url)
    }

    /// Waits until the server stops (it runs until [`Running::stop`] or the process ends).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Waits until the server task ends on its own (a failure); [`Running::stop`] is still due.
    pub async fn finished(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Graceful shutdown: stops accepting connections, waits for the requests in flight to
    /// finish, stops the export jobs (they run again at the next start), then writes what is
    /// queued and closes the database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        self.changes.abort();
        self.housekeeping.abort();
        self.exports.shut_down().await;
        self.db.close().await;
    }

    /// Closes the database under the running server (the last step of [`Running::stop`]);
    /// from then on `/healthz` answers 503.  The change feed stops first: its listening
    /// connection is one of the pool's, which closing waits for.
    pub async fn close_database(&self) {
        self.changes.abort();
        self.db.close().await;
    }
}

/// Opens the database, seeds the demo data on first start, and serves.
pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let public_url = public_url.trim_end_matches('/').to_owned();
    url::Url::parse(&public_url).map_err(|e| anyhow::anyhow!("--public-url {public_url}: {e}"))?;

    let config =
        DatabaseConfig::choose(settings.database_url.as_deref(), &settings.data_dir, settings.database_connections)?;
    if config.backend() == Backend::Postgres && settings.key_encryption_key.is_none() {
        anyhow::bail!(
            "on PostgreSQL the signing keys are encrypted in the database, and no key encryption key was given: \
             {HOW_TO_MAKE_ONE}"
        );
    }
    let database = config.describe();
    let db = Db::open(&config).await?;
    let lock = crate::sandbox::lock_for_server(&db, &settings.data_dir).await?;
    crate::seed::seed_demo(&db, &instant(clock.now())).await?;
    let mut config = AuthConfig::new(&public_url);
    config.registration_token = settings.registration_token.clone();
    config.admin_token = settings.admin_token.clone();
    config.open_sandbox = settings.open_sandbox || addr.ip().is_loopback();
    config.loopback_sandbox = !settings.open_sandbox;
    config.known_resource_type = Some(smartlaunch_fhir::resource_types::is_resource_type);
    config.key_encryption_key = settings.key_encryption_key.clone();
    let sandbox_mode = config.sandbox_mode();
    let auth = AuthService::open(db.clone(), config, clock.now())
        .await?
        .with_jwks_fetcher(Arc::new(crate::jwks_fetch::HttpJwksFetcher::new(addr.ip().is_loopback())?));
    let started_at = instant(clock.now());
    let exports = crate::exports::Exports::open(db.clone(), &settings.data_dir, clock.clone()).await?;
    let ready_example = ReadyExample::default();
    let state = Arc::new(AppState {
        auth,
        db: db.clone(),
        clock,
        client_origins: RwLock::new(HashSet::new()),
        secure_cookies: public_url.starts_with("https://"),
        rate_limits: settings.rate_limits,
        trusted_proxies: Arc::new(settings.trusted_proxies),
        started_at,
        exports: exports.clone(),
        ready_example: ready_example.clone(),
    });
    crate::web::reload_client_origins(&state).await;
    // Other nodes write too: follow what they change (revocations, clients, keys).  On SQLite
    // no feed tells of a key rotated by `smartlaunch keys rotate --data`: the keys are polled.
    let changes = match &db {
        Db::Postgres(pg) => crate::nodes::follow_changes(state.clone(), pg.change_feed()),
        Db::Sqlite(_) => crate::nodes::poll_keys(state.clone()),
    };
    let housekeeping = spawn_housekeeping(state.clone());

    let router = crate::web::router(state);
    let service = tower::ServiceExt::map_request(router, crate::web::route_simulations(public_url.clone()));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let make_service =
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(service);
        let serve = axum::serve(listener, make_service).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("server stopped: {e}");
        }
    });
    Ok(Running {
        addr,
        public_url,
        database,
        sandbox_mode,
        db,
        exports,
        changes,
        housekeeping,
        shutdown: Some(tx),
        task,
        _lock: lock,
        ready_example,
    })
}

/// How often housekeeping runs: often enough that a code (60 s) is gone within 75 s of its
/// issue, so the code table holds at most about 75 s of launches.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Deletes what the retention rules no longer keep (`smartlaunch_auth::retention`): expired
/// pending requests, sessions, launches, refresh tokens, codes, old inspector events; and
/// expired export jobs with their files (`smartlaunch_fhir::export`).
fn spawn_housekeeping(state: App) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = state.auth.purge_expired(state.clock.now()).await {
                tracing::warn!("housekeeping: {e}");
            }
            state.exports.purge_expired(state.clock.now()).await;
            state.exports.take_up_orphans().await;
        }
    })
}

/// A FHIR `instant` (RFC 3339, UTC) for a Unix time.
pub(crate) fn instant(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_a_secret() {
        use base64::Engine;
        let kek = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let settings = Settings {
            data_dir: "/data".into(),
            database_url: Some("postgres://app:db-secret@h/db?password=db-secret".into()),
            database_connections: 16,
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            registration_token: Some("registration-secret".into()),
            admin_token: Some("admin-secret".into()),
            open_sandbox: false,
            rate_limits: Default::default(),
            trusted_proxies: Default::default(),
            key_encryption_key: Some(KeyEncryptionKey::from_base64(&kek).unwrap()),
        };
        let shown = format!("{settings:?}");
        for secret in ["db-secret", "registration-secret", "admin-secret", kek.as_str()] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:redacted@h/db") && shown.contains("admin_token: Some(\"(set)\")"));
    }
}
