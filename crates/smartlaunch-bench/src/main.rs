//! `smartlaunch-bench`: load and latency measurements of a running smartlaunch, over HTTP.
//!
//! `launch`: registers a public client, signs each worker in once (session cookie, consent
//! remembered), then loops complete launches — authorize → code → token with PKCE — with and
//! without `openid`, and separately refresh → refresh.  The sandbox path does the same through
//! a developer-launcher simulation per worker (`sandbox.rs`).  It reports launches (or
//! refreshes) per second, p50 and p99 latency, errors, the server's resident memory, and the
//! ratios of issue 10's acceptance: against the machine's RS256 ceiling and a bare endpoint
//! (`ceiling.rs`).
//!
//! `generate` writes a large data set (transaction Bundles, one per patient) for
//! `smartlaunch import`; `fhir` measures FHIR reads and searches with a `patient/` token;
//! `export` measures Bulk Data export throughput with a backend service's token.

mod ceiling;
mod export;
mod fhir;
mod sandbox;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Parser, ValueEnum};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use smartlaunch_auth::client_assertion::JWT_BEARER;
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};

/// Load and latency measurements of a running smartlaunch.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Launches/s, refreshes/s, latency and server RSS under N concurrent workers.
    Launch(Args),
    /// Writes a generated data set (one transaction Bundle per patient) for `smartlaunch import`.
    Generate(fhir::GenerateArgs),
    /// Latency of FHIR reads and searches with a patient/ token (after importing `generate`).
    Fhir(fhir::FhirArgs),
    /// Bulk Data export throughput: resources/s written to NDJSON, kick-off to manifest.
    Export(export::ExportArgs),
}

/// The `launch` scenario's settings.
#[derive(clap::Args, Clone)]
struct Args {
    /// The server's base URL (its FHIR base is <base>/fhir).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Which scenarios to run.
    #[arg(long, value_enum, default_values_t = [Scenario::Launch, Scenario::LaunchOpenid, Scenario::Refresh])]
    scenario: Vec<Scenario>,
    /// The server's process id, to report its resident memory (VmRSS) idle and after load.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The demo account the workers sign in as.
    #[arg(long, default_value = "patient")]
    user: String,
    /// The trivial endpoint of the `bare` scenario (no database, no authentication).
    #[arg(long, default_value = "/favicon.svg")]
    bare_path: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    /// authorize → code → token, scope `launch/patient patient/*.rs`, in a signed-in session
    /// at `/fhir` (consent remembered).
    Launch,
    /// The same with `openid fhirUser` (an RS256 id_token per launch).
    LaunchOpenid,
    /// The sandbox path: authorize → code → token at a developer-launcher simulation's FHIR
    /// base (skip sign-in, skip consent, every request recorded by the inspector).
    Sandbox,
    /// The sandbox path with `openid fhirUser`.
    SandboxOpenid,
    /// refresh → refresh (rotation on every use).
    Refresh,
    /// `GET Patient/{id}` with a standalone launch's token (not recorded by the inspector).
    Read,
    /// `GET Patient/{id}` with an API launch's token: every read is an inspector event.
    ReadTraced,
    /// `read` through smartlaunch-client (issue 11): each worker launches with the library
    /// (`standalone_launch` → authorize with its session → `complete`) and reads with
    /// `FhirClient::read` on the same reqwest client: the library's overhead over `read`.
    ReadClient,
    /// Backend services: `client_credentials` with a fresh ES384 `private_key_jwt` assertion
    /// per token (signed by the worker; the server verifies it and records its `jti`).
    Backend,
    /// `GET --bare-path` (default `/favicon.svg`): the ceiling of one request through the
    /// server's stack.
    Bare,
    /// Not HTTP: RS256 id_tokens signed per second on every core of this machine (the server's
    /// signing code, aws-lc-rs, RSA-2048), for `--seconds`; run it while the server is idle.
    Rs256,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Launch => "launch",
            Scenario::LaunchOpenid => "launch+openid",
            Scenario::Sandbox => "sandbox",
            Scenario::SandboxOpenid => "sandbox+openid",
            Scenario::Refresh => "refresh",
            Scenario::Read => "read",
            Scenario::ReadTraced => "read-traced",
            Scenario::ReadClient => "read-client",
            Scenario::Backend => "backend-es384",
            Scenario::Bare => "bare",
            Scenario::Rs256 => "rs256-sign",
        }
    }
}

const REDIRECT_URI: &str = "http://127.0.0.1:9/bench/callback";
const CONSENT_SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

struct Bench {
    args: Args,
    http: reqwest::Client,
    client_id: String,
    fhir: String,
    /// A registered backend service and its key (the `backend` scenario).
    backend: (String, SigningKey),
}

pub(crate) fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
}

pub(crate) fn between<'a>(page: &'a str, start: &str, end: char) -> Option<&'a str> {
    let i = page.find(start)? + start.len();
    page[i..].split(end).next()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// What one worker holds for the whole run.
#[derive(Clone)]
struct Worker {
    /// Its signed-in session cookie.
    cookie: String,
    /// Its developer-launcher simulation's FHIR base (when a sandbox scenario runs).
    simulation: Option<String>,
}

impl Bench {
    fn authorize_url(&self, scope: &str, verifier: &str) -> String {
        self.authorize_url_for(&self.fhir, scope, verifier)
    }

    /// An authorization request for the FHIR base `aud` (ours, or a simulation's).
    fn authorize_url_for(&self, aud: &str, scope: &str, verifier: &str) -> String {
        let params = [
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("state", &random(18)),
            ("aud", aud),
            ("code_challenge", &s256(verifier)),
            ("code_challenge_method", "S256"),
        ];
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{}/auth/authorize?{query}", self.args.base)
    }

    /// Signs a worker in and approves the consent once; returns its session cookie.  The
    /// flow's steps carry the flow cookie that authorize set, as a browser would.
    async fn sign_in(&self) -> anyhow::Result<String> {
        let verifier = random(32);
        let r = self.http.get(self.authorize_url(CONSENT_SCOPE, &verifier)).send().await?;
        let flow =
            format!("{}{}", self.args.base, r.headers().get(LOCATION).context("authorize did not redirect")?.to_str()?);
        let flow_cookie = set_cookie(&r, "smartlaunch_flow=").context("authorize set no flow cookie")?;
        let page = self.http.get(&flow).header(COOKIE, &flow_cookie).send().await?.text().await?;
        let csrf = between(&page, "name=\"csrf\" value=\"", '"').context("no sign-in form")?.to_owned();
        let r = self
            .http
            .post(format!("{flow}/signin"))
            .header(COOKIE, &flow_cookie)
            .form(&[("csrf", csrf.as_str()), ("username", &self.args.user), ("password", &self.args.user)])
            .send()
            .await?;
        let cookie = set_cookie(&r, "smartlaunch_session=").context("sign-in failed")?;
        let both = format!("{cookie}; {flow_cookie}");
        let page = self.http.get(&flow).header(COOKIE, &both).send().await?.text().await?;
        let mut form = vec![("csrf".to_owned(), csrf), ("decision".to_owned(), "allow".to_owned())];
        for scope in CONSENT_SCOPE.split(' ') {
            form.push(("scope".into(), scope.into()));
        }
        if page.contains("value=\"allow\"") {
            self.http.post(format!("{flow}/consent")).header(COOKIE, &both).form(&form).send().await?;
        }
        Ok(cookie)
    }

    /// One complete launch: authorize (session and consent reused) → code → token.
    async fn launch(&self, cookie: &str, scope: &str) -> anyhow::Result<Value> {
        let verifier = random(32);
        let r = self.http.get(self.authorize_url(scope, &verifier)).header(COOKIE, cookie).send().await?;
        let code = code_of(&r)?;
        self.redeem(&code, &verifier).await
    }

    /// An access token from an EHR launch made with the launch API (the server vouches for the
    /// clinician, skips consent): its FHIR calls are recorded by the launch inspector.
    async fn traced_token(&self) -> anyhow::Result<(String, String)> {
        let created: Value = self
            .http
            .post(format!("{}/api/launches", self.args.base))
            .json(&json!({"client_id": self.client_id, "patient": "pat-001", "user": "clinician", "options": {"skip_consent": true, "skip_sign_in": true}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let launch_url = url::Url::parse(created["launch_url"].as_str().context("no launch_url")?)?;
        let launch = launch_url.query_pairs().find(|(k, _)| k == "launch").context("no launch")?.1.into_owned();
        let verifier = random(32);
        let url = format!("{}&launch={launch}", self.authorize_url("launch patient/*.rs", &verifier));
        let r = self.http.get(url).send().await?;
        let code = code_of(&r)?;
        let token = self.redeem(&code, &verifier).await?;
        Ok((token["access_token"].as_str().context("no access_token")?.to_owned(), "pat-001".to_owned()))
    }

    /// A session of smartlaunch-client: the library's standalone launch, authorized with the
    /// worker's signed-in session (consent remembered).
    async fn client_session(&self, cookie: &str) -> anyhow::Result<smartlaunch_client::Session> {
        let app = smartlaunch_client::SmartApp::builder(&self.client_id, REDIRECT_URI)
            .scope("launch/patient patient/*.rs")
            .allowed_issuers([self.fhir.clone()])
            .http_client(self.http.clone())
            .build()?;
        let (url, pending) = app.standalone_launch(&self.fhir).await?;
        let r = self.http.get(url.as_str()).header(COOKIE, cookie).send().await?;
        let location = r.headers().get(LOCATION).context("authorize did not redirect")?.to_str()?;
        let query = location.split_once('?').map(|(_, q)| q).context("no query in the redirect")?;
        Ok(app.complete(&pending, query).await?)
    }

    async fn redeem(&self, code: &str, verifier: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/auth/token", self.args.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
                ("client_id", self.client_id.as_str()),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("token: {} {}", r.status(), r.text().await?);
        }
        Ok(r.json().await?)
    }

    async fn bare(&self) -> anyhow::Result<()> {
        let r = self.http.get(format!("{}{}", self.args.base, self.args.bare_path)).send().await?;
        if !r.status().is_success() {
            bail!("{}: {}", self.args.bare_path, r.status());
        }
        r.bytes().await?;
        Ok(())
    }

    async fn read(&self, token: &str, patient: &str) -> anyhow::Result<()> {
        let r = self.http.get(format!("{}/Patient/{patient}", self.fhir)).bearer_auth(token).send().await?;
        if !r.status().is_success() {
            bail!("read: {}", r.status());
        }
        r.bytes().await?;
        Ok(())
    }

    /// One backend-services token: a new assertion, `client_credentials`.
    async fn backend_token(&self) -> anyhow::Result<()> {
        let (client_id, key) = &self.backend;
        let token_url = format!("{}/auth/token", self.args.base);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let assertion = key.client_assertion(client_id, &token_url, now).map_err(anyhow::Error::msg)?;
        let r = self
            .http
            .post(token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs system/Observation.rs"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("client_credentials: {} {}", r.status(), r.text().await?);
        }
        r.bytes().await?;
        Ok(())
    }

    async fn refresh(&self, token: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/auth/token", self.args.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("refresh: {} {}", r.status(), r.text().await?);
        }
        let body: Value = r.json().await?;
        Ok(body["refresh_token"].as_str().context("no refresh_token")?.to_owned())
    }
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

async fn run(bench: Arc<Bench>, scenario: Scenario, workers: &[Worker]) -> anyhow::Result<(Outcome, Duration)> {
    let deadline = Instant::now() + Duration::from_secs(bench.args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in workers {
        let (bench, cookie) = (bench.clone(), worker.cookie.clone());
        let simulation = worker.simulation.clone().unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome { latencies: Vec::new(), errors: 0, first_error: None };
            let mut refresh_token = match scenario {
                Scenario::Refresh => match bench.launch(&cookie, CONSENT_SCOPE).await {
                    Ok(t) => t["refresh_token"].as_str().map(str::to_owned),
                    Err(e) => return Outcome { latencies: vec![], errors: 1, first_error: Some(e.to_string()) },
                },
                _ => None,
            };
            let reader = match scenario {
                Scenario::Read => bench.launch(&cookie, "launch/patient patient/*.rs").await.and_then(|t| {
                    Ok((
                        t["access_token"].as_str().context("no access_token")?.to_owned(),
                        t["patient"].as_str().context("no patient")?.to_owned(),
                    ))
                }),
                Scenario::ReadTraced => bench.traced_token().await,
                _ => Ok(Default::default()),
            };
            let (read_token, read_patient) = match reader {
                Ok(r) => r,
                Err(e) => return Outcome { latencies: vec![], errors: 1, first_error: Some(e.to_string()) },
            };
            let client = match scenario {
                Scenario::ReadClient => match bench.client_session(&cookie).await {
                    Ok(session) => Some((session.fhir(), session.context().patient.clone().unwrap_or_default())),
                    Err(e) => return Outcome { latencies: vec![], errors: 1, first_error: Some(e.to_string()) },
                },
                _ => None,
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = match scenario {
                    Scenario::Launch => bench.launch(&cookie, "launch/patient patient/*.rs").await.map(|_| ()),
                    Scenario::LaunchOpenid => {
                        bench.launch(&cookie, "launch/patient openid fhirUser patient/*.rs").await.map(|_| ())
                    }
                    Scenario::Sandbox => {
                        bench.sandbox_launch(&simulation, "launch/patient patient/*.rs").await.map(|_| ())
                    }
                    Scenario::SandboxOpenid => bench
                        .sandbox_launch(&simulation, "launch/patient openid fhirUser patient/*.rs")
                        .await
                        .map(|_| ()),
                    Scenario::Bare => bench.bare().await,
                    // Measured without the server (see `launch`).
                    Scenario::Rs256 => break,
                    Scenario::Refresh => {
                        let current = refresh_token.clone().unwrap_or_default();
                        bench.refresh(&current).await.map(|next| refresh_token = Some(next))
                    }
                    Scenario::Read | Scenario::ReadTraced => bench.read(&read_token, &read_patient).await,
                    Scenario::ReadClient => match &client {
                        Some((fhir, patient)) => fhir.read("Patient", patient).await.map(|_| ()).map_err(Into::into),
                        None => Ok(()),
                    },
                    Scenario::Backend => bench.backend_token().await,
                };
                match result {
                    Ok(()) => out.latencies.push(t.elapsed()),
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e.to_string());
                        if scenario == Scenario::Refresh {
                            break;
                        }
                    }
                }
            }
            out
        }));
    }
    let mut all = Outcome { latencies: Vec::new(), errors: 0, first_error: None };
    for t in tasks {
        let o = t.await?;
        all.latencies.extend(o.latencies);
        all.errors += o.errors;
        if all.first_error.is_none() {
            all.first_error = o.first_error;
        }
    }
    Ok((all, started.elapsed()))
}

/// The `code` of the redirect to the app that authorize answered with.
fn code_of(r: &reqwest::Response) -> anyhow::Result<String> {
    let location = r.headers().get(LOCATION).context("authorize did not redirect")?.to_str()?;
    url::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no code in {location}"))
}

/// The `name=value` of a cookie a response sets.
fn set_cookie(r: &reqwest::Response, prefix: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built together with `smartlaunch` (one `cargo build`), reqwest gets its rustls feature
    // without a provider: without this, the first `Client::build` panics "No provider set".
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match Cli::parse().command {
        Command::Launch(args) => launch(args).await,
        Command::Generate(args) => fhir::generate(args),
        Command::Fhir(args) => fhir::run(args).await,
        Command::Export(args) => export::run(args).await,
    }
}

async fn launch(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().redirect(Policy::none()).pool_max_idle_per_host(args.workers * 2).build()?;
    if let Some(pid) = args.server_pid {
        println!(
            "server RSS idle: {:.1} MiB",
            rss_kib(pid).context("cannot read the server's /proc status")? as f64 / 1024.0
        );
    }
    let registration: Value = http
        .post(format!("{}/auth/register", args.base))
        .json(&json!({
            "client_name": "smartlaunch-bench",
            "redirect_uris": [REDIRECT_URI],
            "initiate_login_uri": "http://127.0.0.1:9/bench/launch",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = SigningKey::generate(KeyKind::Es384).map_err(anyhow::Error::msg)?;
    let backend: Value = http
        .post(format!("{}/auth/register", args.base))
        .json(&json!({
            "client_name": "smartlaunch-bench backend",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": key.public_jwks(),
            "scope": "system/*.rs",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let bench = Arc::new(Bench {
        backend: (backend["client_id"].as_str().context("no client_id")?.to_owned(), key),
        fhir: format!("{}/fhir", args.base),
        client_id: registration["client_id"].as_str().context("no client_id")?.to_owned(),
        http,
        args: args.clone(),
    });
    let sandbox = args.scenario.iter().any(|s| matches!(s, Scenario::Sandbox | Scenario::SandboxOpenid));
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let cookie = bench.sign_in().await?;
        let simulation = if sandbox { Some(bench.simulation().await?) } else { None };
        workers.push(Worker { cookie, simulation });
    }
    println!(
        "{} workers signed in{}; {} s per scenario",
        args.workers,
        if sandbox { ", each with a launcher simulation" } else { "" },
        args.seconds
    );
    println!("{:<14} {:>9} {:>10} {:>9} {:>9} {:>7}", "scenario", "count", "per sec", "p50 ms", "p99 ms", "errors");
    let mut rates = ceiling::Rates::default();
    for scenario in &args.scenario {
        if *scenario == Scenario::Rs256 {
            let seconds = args.seconds;
            let per_sec = tokio::task::spawn_blocking(move || ceiling::rs256_per_sec(seconds)).await??;
            println!("{:<14} {:>9} {:>10.0}", scenario.name(), "", per_sec);
            rates.rs256 = Some(per_sec);
            continue;
        }
        let (mut outcome, elapsed) = run(bench.clone(), *scenario, &workers).await?;
        outcome.latencies.sort_unstable();
        let per_sec = outcome.latencies.len() as f64 / elapsed.as_secs_f64();
        rates.record(*scenario, per_sec);
        println!(
            "{:<14} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>7}",
            scenario.name(),
            outcome.latencies.len(),
            per_sec,
            percentile(&outcome.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&outcome.latencies, 0.99).as_secs_f64() * 1000.0,
            outcome.errors
        );
        if let Some(e) = outcome.first_error {
            println!("  first error: {e}");
        }
    }
    for line in rates.summary() {
        println!("{line}");
    }
    if let Some(pid) = args.server_pid {
        println!("server RSS after load: {:.1} MiB", rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
    }
    Ok(())
}
