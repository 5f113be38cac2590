//! `smartlaunch`: the command line.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use smartlaunch::{start, ProxyRange, RateLimits, Settings, SystemClock, TrustedProxies};
use smartlaunch_auth::client::RegistrationRequest;
use smartlaunch_auth::config::AuthConfig;
use smartlaunch_auth::store::ClientStore;
use smartlaunch_auth::AuthService;
use smartlaunch_store::{DatabaseConfig, Db, PG_DEFAULT_MAX_CONNECTIONS};

/// mimalloc: fewer cycles per allocation than glibc's malloc under many threads, the server's
/// every request being a few dozen small allocations (docs/DESIGN.md "Speed").  It also keeps
/// memory small without the glibc tuning this replaced (two arenas, a fixed mmap threshold):
/// argon2id's 19 MiB blocks are huge allocations, mapped and returned to the system per sign-in,
/// and freed small pages are returned after a short delay.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SMART on FHIR sandbox: a SMART App Launch 2.2 authorization server and a FHIR R4 server
/// with demo data, in one binary.
#[derive(Parser)]
#[command(name = "smartlaunch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sandbox: authorization server, FHIR API and pages, on an embedded SQLite
    /// database in --data, or on PostgreSQL with --database (demo data and demo accounts are
    /// created on first start).
    Serve(ServeArgs),
    /// Manage the users who can sign in.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage registered apps (OAuth clients).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Key pairs for private_key_jwt clients and backend services.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Get a backend-services access token (client_credentials with a private_key_jwt
    /// assertion) from a token endpoint, and print the token response.
    Token {
        /// The backend service's client_id.
        #[arg(long)]
        client_id: String,
        /// Its private key (PKCS#8 PEM, e.g. from `smartlaunch keys generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The signing algorithm of an RSA key (RS384 or RS256); an EC key's curve decides.
        #[arg(long)]
        alg: Option<String>,
        /// The scopes to ask for.
        #[arg(long, default_value = "system/*.rs")]
        scope: String,
        /// The token endpoint URL.
        #[arg(long, value_name = "URL")]
        token_url: Option<String>,
        /// Or a FHIR base whose smart-configuration names the token endpoint.
        #[arg(long, value_name = "URL")]
        fhir_base: Option<String>,
    },
    /// Run the Vitals demo app on its own: it registers itself with the server of --fhir-base
    /// (RFC 7591) and prints its launch URL.  `serve` runs it beside the sandbox already.
    DemoApp {
        /// The FHIR base URL of the server to launch against (its only allowed `iss`).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/fhir")]
        fhir_base: String,
        /// The address to listen on; port 0 picks a free port.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The host name in the app's URL: the FHIR server's, so that the EHR's frame and the
        /// app are one site (default: the FHIR base URL's host).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Where it keeps its registration and saved sessions.
        #[arg(long = "data", value_name = "DIR", default_value = "./smartlaunch-demo-app")]
        data: PathBuf,
        /// The server's initial access token for dynamic registration, if it wants one.
        #[arg(long, value_name = "TOKEN", env = "SMARTLAUNCH_REGISTRATION_TOKEN")]
        registration_token: Option<String>,
    },
    /// Import FHIR data: Bundles (e.g. Synthea R4 output, `urn:uuid:` references resolved; each
    /// Bundle all or nothing), single resources (.json) and NDJSON files, or directories of them.
    Import {
        #[command(flatten)]
        data: DataArg,
        /// Files or directories (.json, .ndjson).
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        paths: Vec<PathBuf>,
    },
    /// Reset the sandbox: restore the demo data and the demo accounts, and remove every app,
    /// grant, token, launch, consent, session, inspector record, export job and added user.
    /// The signing keys stay.  Refused while a server uses the data directory or the
    /// PostgreSQL database (stop it, or use the "Reset the sandbox" button on its /sandbox page).
    Reset {
        #[command(flatten)]
        data: DataArg,
        /// Don't ask for confirmation (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Copy a SQLite sandbox (a data directory) into an empty PostgreSQL database: every
    /// resource with its history, app, user, grant, token, session, launch, launch link, the
    /// signing keys (encrypted with the key encryption key on the way) and the inspector's
    /// records, in one transaction.  Refused while a server uses the data directory, and into a
    /// database that holds anything.
    Migrate {
        /// The data directory of the SQLite sandbox.
        #[arg(long = "from-data", value_name = "DIR")]
        from_data: PathBuf,
        /// The PostgreSQL database to copy into, e.g. postgres://user@host:5432/smartlaunch
        /// (create it first; it must be empty).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The file with the nodes' key encryption key (base64 of 32 bytes), which encrypts the
        /// signing keys in PostgreSQL; default: SMARTLAUNCH_KEY_ENCRYPTION_KEY.  Required.
        #[arg(long, value_name = "PATH")]
        key_encryption_key_file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct DataArg {
    /// The data directory (database, keys).
    #[arg(long = "data", value_name = "DIR", default_value = "./smartlaunch-data", env = "SMARTLAUNCH_DATA")]
    data: PathBuf,
    /// Run on this PostgreSQL database (postgres://user:password@host:port/database) instead
    /// of the SQLite database in --data.
    #[arg(long = "database", value_name = "URL", env = "DATABASE_URL")]
    database: Option<String>,
}

/// Connections of a command-line command (not a server) to PostgreSQL.
const CLI_CONNECTIONS: u32 = 4;

impl DataArg {
    /// The database these arguments name, with at most `connections` to PostgreSQL.
    fn config(&self, connections: u32) -> anyhow::Result<DatabaseConfig> {
        Ok(DatabaseConfig::choose(self.database.as_deref(), &self.data, connections)?)
    }

    /// Opens the database of a command-line command.
    async fn open(&self) -> anyhow::Result<Db> {
        Ok(Db::open(&self.config(CLI_CONNECTIONS)?).await?)
    }

    /// What the database is, for messages: the data directory or "the PostgreSQL database".
    fn describe(&self) -> String {
        match self.database {
            Some(_) => "the PostgreSQL database".into(),
            None => self.data.display().to_string(),
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArg,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", env = "SMARTLAUNCH_LISTEN")]
    listen: SocketAddr,
    /// The externally visible base URL (e.g. behind a proxy); default http://<listen address>.
    /// The FHIR base URL is <public-url>/fhir.
    #[arg(long, value_name = "URL", env = "SMARTLAUNCH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Require this initial access token (Authorization: Bearer …) for dynamic client
    /// registration.  Without it, registration is open (sandbox).
    #[arg(long, value_name = "TOKEN", env = "SMARTLAUNCH_REGISTRATION_TOKEN")]
    registration_token: Option<String>,
    /// Require this bearer token for the open-sandbox powers: the launch API (POST
    /// /api/launches), the launcher, skip sign-in and skip consent.  Without it they are open
    /// on loopback and off on any other address (unless --open-sandbox).
    #[arg(long, value_name = "TOKEN", env = "SMARTLAUNCH_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Open the sandbox powers to everyone who reaches the server even when it listens beyond
    /// loopback (a shared developer sandbox; never in front of real patient data).
    #[arg(long, env = "SMARTLAUNCH_OPEN_SANDBOX")]
    open_sandbox: bool,
    /// Authorization requests per second per client address (burst: five times that); 0 turns
    /// the limit off.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().authorize_per_second)]
    authorize_rate_limit: u32,
    /// Token requests per second per client address (burst: twice that); 0 turns the limit off.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().token_per_second)]
    token_rate_limit: u32,
    /// Registrations per minute per client address; 0 turns the limit off.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().registrations_per_minute)]
    registration_rate_limit: u32,
    /// A reverse proxy (an address or CIDR range; repeat for several) whose X-Forwarded-For
    /// names the client for the per-address limits and sign-in throttling: the right-most
    /// address in it that is not a trusted proxy.  Default none: the header is ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR|IP", env = "SMARTLAUNCH_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<ProxyRange>,
    /// The file with the key that encrypts the signing keys in the database (base64 of 32
    /// bytes: `openssl rand -base64 32`); default: SMARTLAUNCH_KEY_ENCRYPTION_KEY.  Required on
    /// PostgreSQL (every node needs the same key), optional on SQLite.
    #[arg(long, value_name = "PATH")]
    key_encryption_key_file: Option<PathBuf>,
    /// With --database: the most connections this node opens to PostgreSQL (at least 9: the
    /// change feed and two running export jobs hold some for long).
    #[arg(long, value_name = "N", default_value_t = PG_DEFAULT_MAX_CONNECTIONS, env = "SMARTLAUNCH_DATABASE_CONNECTIONS")]
    database_connections: u32,
    /// The Vitals demo app (a SMART app built on smartlaunch-client) on its own port: `auto`
    /// runs it on the server's port + 1 (or a free port) when the server listens on loopback;
    /// an address runs it there; `off` does not run it.
    #[arg(long = "demo-app", value_name = "auto|off|ADDR", default_value = "auto", env = "SMARTLAUNCH_DEMO_APP")]
    demo_app: String,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user who can sign in.  The password is read from standard input when --password
    /// is not given.
    Add {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: Option<String>,
        /// The FHIR resource that is this user, e.g. Practitioner/pract-002 or Patient/pat-003.
        #[arg(long, value_name = "TYPE/ID")]
        fhir_user: String,
        /// The name shown on pages (default: the username).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private key (<out>.pem) and its public JWK Set (<out>.jwks.json), to
    /// register as `jwks` (or serve at a `jwks_uri`).
    Generate {
        /// ES384 (default), RS384, ES256 or RS256.
        #[arg(long, default_value = "ES384")]
        alg: String,
        /// The path prefix of the two files.
        #[arg(long, value_name = "PREFIX", default_value = "smartlaunch-client")]
        out: PathBuf,
    },
    /// Rotate the server's signing keys: add a new key that running servers publish at once
    /// and sign with 10 s later; the replaced key keeps verifying until the tokens it signed have
    /// expired.  On PostgreSQL every node hears of it on the change feed; a server on SQLite
    /// (--data, stopped or running) reads the keys every 3 s.  Prints the new key id.
    Rotate {
        #[command(flatten)]
        data: DataArg,
        /// The file with the key encryption key of the signing keys (base64 of 32 bytes);
        /// default: SMARTLAUNCH_KEY_ENCRYPTION_KEY.  Required on PostgreSQL; on SQLite the
        /// server's, if it has one.
        #[arg(long, value_name = "PATH")]
        key_encryption_key_file: Option<PathBuf>,
    },
    /// Remove a signing key at once (a compromised key, after `keys rotate`): every running
    /// node stops verifying with it within moments (PostgreSQL: the change feed; a server on
    /// SQLite: within 3 s), so the tokens it signed stop working.  The newest key (the one the
    /// nodes sign with) is refused.
    Retire {
        #[command(flatten)]
        data: DataArg,
        /// The key id to remove (a `kid` of /.well-known/jwks.json, or printed by `keys rotate`).
        #[arg(long)]
        kid: String,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register an app and print its client_id (and secret, once).
    Add {
        #[command(flatten)]
        data: DataArg,
        /// The app's name, shown on the consent page.
        #[arg(long)]
        name: String,
        /// A redirect URI (repeat for several); matched exactly.  Not for --backend.
        #[arg(long = "redirect-uri", required_unless_present = "backend")]
        redirect_uris: Vec<String>,
        /// A confidential client with a generated secret (client_secret_basic); default public.
        #[arg(long, conflicts_with_all = ["jwks_file", "jwks_uri"])]
        confidential: bool,
        /// An asymmetric client (private_key_jwt) with the public keys in this JWK Set file.
        #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
        jwks_file: Option<PathBuf>,
        /// An asymmetric client (private_key_jwt) whose JWK Set is served at this URL.
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
        /// A backend service: the client_credentials grant with the system/ scopes of --scope
        /// (needs --jwks-file or --jwks-uri).
        #[arg(long, requires = "scope")]
        backend: bool,
        /// The most this app may be granted (space-separated scopes); default: anything.
        #[arg(long)]
        scope: Option<String>,
        /// The app's SMART launch URL (initiate_login_uri), for EHR launch.
        #[arg(long)]
        launch_uri: Option<String>,
    },
    /// List registered apps.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Remove an app and revoke everything issued to it.
    Remove {
        #[command(flatten)]
        data: DataArg,
        /// Ids issued by earlier builds were base64url and may begin with '-'.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Log lines are written by a thread of their own, in batches: a request never waits for
    // stdout nor wakes a thread (`smartlaunch::log_writer`).  The guard writes what is left
    // when `run` returns.
    let (writer, _flush_on_exit) = smartlaunch::log_writer::batched(std::io::stdout());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "smartlaunch=info,warn".into()),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::DemoApp { fhir_base, listen, host, data, registration_token } => {
            let host = match host {
                Some(h) => h,
                None => url::Url::parse(&fhir_base)?.host_str().unwrap_or("127.0.0.1").to_owned(),
            };
            let (listener, url) = smartlaunch::demo_app::bind(listen, &host).await?;
            let settings = smartlaunch::demo_app::DemoAppSettings { fhir_base, data_dir: data, registration_token };
            let demo = smartlaunch::demo_app::start(listener, url, settings).await?;
            println!("Vitals is running on {} (client_id {})", demo.url, demo.client_id);
            println!("  Launch URL           {}", demo.launch_url());
            println!("Press Ctrl-C to stop.");
            let signal = shutdown_signal().await?;
            tracing::info!("{signal}: stopping the demo app");
            demo.stop().await;
            Ok(())
        }
        Command::Users(UsersCommand::Add { data, username, password, fhir_user, name }) => {
            let password = match password {
                Some(p) => p,
                None => std::io::stdin().lock().lines().next().transpose()?.unwrap_or_default(),
            };
            anyhow::ensure!(!password.is_empty(), "the password must not be empty");
            anyhow::ensure!(
                fhir_user.starts_with("Practitioner/") || fhir_user.starts_with("Patient/"),
                "--fhir-user must be Practitioner/<id> or Patient/<id>"
            );
            let db = data.open().await?;
            let display = name.unwrap_or_else(|| username.clone());
            if smartlaunch::seed::add_user(&db, &username, &password, &fhir_user, &display).await? {
                println!("added user {username} ({fhir_user})");
                Ok(())
            } else {
                anyhow::bail!("the username {username} is taken")
            }
        }
        Command::Clients(command) => clients(command).await,
        Command::Keys(KeysCommand::Generate { alg, out }) => {
            let (key, pem, jwks) = smartlaunch::backend_cli::generate_keys(&alg, &out)?;
            println!("private key  {} (keep it secret)", pem.display());
            println!("public JWKS  {} (register it as `jwks`, or serve it at your `jwks_uri`)", jwks.display());
            println!("kid          {}", key.kid());
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { data, key_encryption_key_file }) => {
            let config = data.config(CLI_CONNECTIONS)?;
            let kid =
                smartlaunch::nodes::rotate_signing_keys(&config, key_encryption_key_file.as_deref(), now()).await?;
            println!("new signing key {kid}: running servers publish it within seconds and sign with it in 10 s");
            Ok(())
        }
        Command::Keys(KeysCommand::Retire { data, kid }) => {
            smartlaunch::nodes::retire_signing_key(&data.config(CLI_CONNECTIONS)?, &kid).await?;
            println!("signing key {kid} removed: every node refuses the tokens it signed");
            Ok(())
        }
        Command::Token { client_id, key, alg, scope, token_url, fhir_base } => {
            let key_pem =
                std::fs::read_to_string(&key).map_err(|e| anyhow::anyhow!("reading {}: {e}", key.display()))?;
            let args = smartlaunch::backend_cli::TokenArgs { client_id, key_pem, alg, scope, token_url, fhir_base };
            let body = smartlaunch::backend_cli::fetch_token(args).await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        Command::Import { data, paths } => import(data, paths).await,
        Command::Reset { data, yes } => reset(data, yes).await,
        Command::Migrate { from_data, to, key_encryption_key_file } => {
            migrate(from_data, to, key_encryption_key_file).await
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings {
        data_dir: args.data.data,
        database_url: args.data.database,
        database_connections: args.database_connections,
        listen: args.listen,
        public_url: args.public_url,
        registration_token: args.registration_token,
        admin_token: args.admin_token,
        open_sandbox: args.open_sandbox,
        rate_limits: RateLimits {
            authorize_per_second: args.authorize_rate_limit,
            token_per_second: args.token_rate_limit,
            registrations_per_minute: args.registration_rate_limit,
        },
        trusted_proxies: TrustedProxies::new(args.trusted_proxies),
        key_encryption_key: smartlaunch::nodes::key_encryption_key(args.key_encryption_key_file.as_deref())?,
    };
    let registration_token = settings.registration_token.clone();
    let demo_dir = settings.data_dir.join("demo-app");
    let running = start(settings, Arc::new(SystemClock::default())).await?;
    let demo = start_demo_app(&args.demo_app, &running, demo_dir, registration_token).await?;
    let base = &running.public_url;
    println!("smartlaunch is running on {} (listening on {})", base, running.addr);
    println!("  Database             {}", running.database);
    println!("  Sandbox powers       {}", running.sandbox_mode.describe());
    println!();
    println!("  FHIR base URL        {}", running.fhir_base());
    println!("  SMART discovery      {}/.well-known/smart-configuration", running.fhir_base());
    println!("  OpenID configuration {base}/.well-known/openid-configuration");
    println!("  Authorize            {base}/auth/authorize");
    println!("  Token                {base}/auth/token");
    println!("  Register (RFC 7591)  {base}/auth/register");
    println!("  Home page            {base}/");
    println!();
    if let Some(demo) = &demo {
        println!("  Demo app (Vitals)    {}   launch URL {}", demo.url, demo.launch_url());
    }
    println!("  Demo accounts        clinician / clinician   (a practitioner)");
    println!("                       patient / patient       (a patient)");
    println!();
    println!("Press Ctrl-C to stop.");
    let mut running = running;
    tokio::select! {
        signal = shutdown_signal() => {
            let signal = signal?;
            tracing::info!("{signal}: finishing the requests in flight (at most {} s)", SHUTDOWN_GRACE.as_secs());
            if let Some(demo) = demo {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, demo.stop()).await;
            }
            if tokio::time::timeout(SHUTDOWN_GRACE, running.stop()).await.is_err() {
                tracing::warn!("requests still running after {} s are dropped", SHUTDOWN_GRACE.as_secs());
            }
        }
        _ = running.finished() => anyhow::bail!("the server stopped"),
    }
    Ok(())
}

/// Starts the Vitals demo app beside the server as `--demo-app` says (`auto`: on loopback
/// only, on the server's port + 1 or else a free port).  In `auto` mode a failure is a
/// warning, never a reason not to serve.
async fn start_demo_app(
    mode: &str,
    running: &smartlaunch::Running,
    data_dir: PathBuf,
    registration_token: Option<String>,
) -> anyhow::Result<Option<smartlaunch::demo_app::RunningDemoApp>> {
    let auto = mode == "auto";
    let candidates: Vec<SocketAddr> = match mode {
        "off" => return Ok(None),
        "auto" if !running.addr.ip().is_loopback() => return Ok(None),
        "auto" => {
            let next = running.addr.port().checked_add(1).map(|p| SocketAddr::new(running.addr.ip(), p));
            next.into_iter().chain([SocketAddr::new(running.addr.ip(), 0)]).collect()
        }
        addr => {
            vec![addr.parse().map_err(|e| anyhow::anyhow!("--demo-app {addr}: {e} (use auto, off or an address)"))?]
        }
    };
    let host = url::Url::parse(&running.public_url)?.host_str().unwrap_or("127.0.0.1").to_owned();
    let mut bound = None;
    for addr in candidates {
        match smartlaunch::demo_app::bind(addr, &host).await {
            Ok(b) => {
                bound = Some(b);
                break;
            }
            Err(e) if auto => tracing::debug!("demo app: {addr}: {e}"),
            Err(e) => anyhow::bail!("--demo-app {addr}: {e}"),
        }
    }
    let Some((listener, url)) = bound else { return Ok(None) };
    let settings =
        smartlaunch::demo_app::DemoAppSettings { fhir_base: running.fhir_base(), data_dir, registration_token };
    match smartlaunch::demo_app::start(listener, url, settings).await {
        Ok(demo) => {
            running.set_ready_example(&demo.launch_url());
            Ok(Some(demo))
        }
        Err(e) if auto => {
            tracing::warn!("the Vitals demo app did not start: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// How long a graceful shutdown waits for the requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for SIGINT (Ctrl-C) or SIGTERM (`docker stop`, systemd) and names it.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").map_err(Into::into),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

async fn import(data: DataArg, paths: Vec<PathBuf>) -> anyhow::Result<()> {
    use std::io::Write;
    let db = Db::open_for_import(&data.config(CLI_CONNECTIONS)?).await?;
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let mut last = std::time::Instant::now();
    let report = smartlaunch::import::import_paths(&db, &paths, &now, |r| {
        if last.elapsed() >= std::time::Duration::from_millis(250) {
            last = std::time::Instant::now();
            let rate = r.total() as f64 / r.elapsed.as_secs_f64().max(0.001);
            eprint!("\r  {} files, {} resources ({rate:.0}/s), {} errors   ", r.files, r.total(), r.errors.len());
            let _ = std::io::stderr().flush();
        }
    })
    .await;
    let analyzed = db.after_bulk_load().await;
    db.close().await;
    analyzed?;
    eprintln!();
    let seconds = report.elapsed.as_secs_f64().max(0.001);
    println!(
        "imported {} resources from {} files in {seconds:.1} s ({:.0} resources/s)",
        report.total(),
        report.files,
        report.total() as f64 / seconds
    );
    for (ty, n) in &report.resources_by_type {
        println!("  {ty:<28} {n}");
    }
    if !report.errors.is_empty() {
        println!("errors ({} files, nothing of those Bundles was stored):", report.errors.len());
        for (file, e) in &report.errors {
            println!("  {}: {e}", file.display());
        }
        anyhow::bail!("{} files could not be imported", report.errors.len());
    }
    Ok(())
}

async fn migrate(from_data: PathBuf, to: String, key_file: Option<PathBuf>) -> anyhow::Result<()> {
    // The nodes on PostgreSQL use encrypted signing keys only: the copy encrypts them.
    let kek = smartlaunch::nodes::required_key_encryption_key(key_file.as_deref())?;
    anyhow::ensure!(
        from_data.join("smartlaunch.db").is_file(),
        "{} holds no smartlaunch database (smartlaunch.db)",
        from_data.display()
    );
    // A server writing meanwhile would write after the copy's snapshot: refused.
    let _lock = smartlaunch::sandbox::lock_data_dir_without_server(&from_data)?;
    let url = smartlaunch_store::postgres_url(&to)?;
    let from = smartlaunch_store::SqliteDb::open_dir(&from_data).await?;
    let target = smartlaunch_store::PgDb::connect(url, 2).await?;
    let copied = smartlaunch_store::copy_sqlite_to_postgres(&from, &target, &kek).await;
    from.close().await;
    target.close().await;
    let report = copied?;
    println!("copied the sandbox in {} into PostgreSQL:", from_data.display());
    for (table, rows) in report.tables.iter().filter(|(_, rows)| *rows > 0) {
        println!("  {table:<24} {rows}");
    }
    if report.rows("export_jobs") > 0 {
        println!(
            "the export jobs' files stay in {}: serve with this --data to keep them",
            from_data.join("exports").display()
        );
    }
    Ok(())
}

async fn reset(data: DataArg, yes: bool) -> anyhow::Result<()> {
    let config = data.config(CLI_CONNECTIONS)?;
    let db = Db::open(&config).await?;
    let lock = smartlaunch::sandbox::lock_without_server(&db, &data.data).await;
    let result = reset_unless_in_use(&data, yes, &db, lock).await;
    db.close().await;
    result
}

async fn reset_unless_in_use(
    data: &DataArg,
    yes: bool,
    db: &Db,
    lock: Result<smartlaunch::sandbox::ResetLock, smartlaunch::sandbox::LockError>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let lock = lock?;
    if !yes {
        anyhow::ensure!(std::io::stdin().is_terminal(), "add --yes to reset without a terminal to confirm on");
        print!(
            "This deletes every app, grant, token, launch, added user and change to the data in {} \
             and restores the demo data.\nType \"reset\" to go on: ",
            data.describe()
        );
        std::io::stdout().flush()?;
        let answer = std::io::stdin().lock().lines().next().transpose()?.unwrap_or_default();
        anyhow::ensure!(answer.trim() == "reset", "nothing was changed");
    }
    let now_instant = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let report = smartlaunch::sandbox::reset_database(db, now(), &now_instant).await;
    lock.release().await;
    let report = report?;
    println!(
        "the sandbox in {} is reset: demo data and demo accounts restored, {} apps and {} export jobs removed",
        data.describe(),
        report.clients.len(),
        report.export_jobs.len()
    );
    Ok(())
}

async fn clients(command: ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::Add {
            data,
            name,
            redirect_uris,
            confidential,
            jwks_file,
            jwks_uri,
            backend,
            scope,
            launch_uri,
        } => {
            let jwks = match jwks_file {
                Some(path) => Some(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path)?)?),
                None => None,
            };
            let method = match (jwks.is_some() || jwks_uri.is_some(), confidential) {
                (true, _) => "private_key_jwt",
                (false, true) => "client_secret_basic",
                (false, false) if backend => anyhow::bail!("a backend service needs --jwks-file or --jwks-uri"),
                (false, false) => "none",
            };
            let grant_types: &[&str] =
                if backend { &["client_credentials"] } else { &["authorization_code", "refresh_token"] };
            let db = data.open().await?;
            // The service opens the signing keys: on PostgreSQL they need the nodes' key
            // encryption key (SMARTLAUNCH_KEY_ENCRYPTION_KEY).
            let config = AuthConfig {
                key_encryption_key: smartlaunch::nodes::key_encryption_key(None)?,
                ..AuthConfig::new("http://127.0.0.1")
            };
            let auth = AuthService::open(db, config, now()).await?;
            let request = RegistrationRequest {
                client_name: Some(name),
                redirect_uris: Some(redirect_uris),
                grant_types: Some(grant_types.iter().map(|g| g.to_string()).collect()),
                token_endpoint_auth_method: Some(method.into()),
                scope,
                initiate_login_uri: launch_uri,
                jwks,
                jwks_uri,
                ..Default::default()
            };
            let registered = auth.add_client(request, now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&registered.response_json())?);
            Ok(())
        }
        ClientsCommand::List { data } => {
            let db = data.open().await?;
            for c in db.clients().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.client_id,
                    c.metadata.token_endpoint_auth_method.as_str(),
                    c.metadata.client_name,
                    c.metadata.redirect_uris.join(" ")
                );
            }
            Ok(())
        }
        ClientsCommand::Remove { data, client_id } => {
            let db = data.open().await?;
            if db.delete_client(&client_id, now()).await? {
                println!("removed {client_id}");
                Ok(())
            } else {
                anyhow::bail!("no client {client_id}")
            }
        }
    }
}
