//! Test support: a real server on an ephemeral port, and a scripted browser that follows the
//! server's HTML forms by their field names (no mocks of our own server).

mod backend;
mod fhir;
// The two-node suite is in tests/http.rs only; tests/http_postgres.rs compiles this module unused.
#[allow(dead_code)]
mod nodes;
mod postgres;
mod process;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use smartlaunch::{start, Running, Settings, SystemClock};

pub use backend::*;
pub use fhir::*;
pub use nodes::*;
pub use postgres::{database_for, drop_database_of};
pub use process::Process;

pub struct Server {
    pub running: Option<Running>,
    pub clock: Arc<SystemClock>,
    pub base: String,
    pub fhir: String,
    pub http: reqwest::Client,
    pub dir: std::path::PathBuf,
    /// The PostgreSQL database of the server (the suites on PostgreSQL), else `None`: SQLite
    /// in `dir`.
    pub database_url: Option<String>,
    /// Whether [`Server::stop`] drops that database: not when the test chose the data
    /// directory (to start another server on it).
    pub owns_database: bool,
}

pub fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(None).await
    }

    pub async fn start_with(registration_token: Option<&str>) -> Server {
        Server::start_configured(|s| s.registration_token = registration_token.map(str::to_owned)).await
    }

    /// A server whose settings `configure` adjusts ([`test_settings`] before).
    pub async fn start_configured(configure: impl FnOnce(&mut Settings)) -> Server {
        let dir = std::env::temp_dir().join(format!("smartlaunch-it-{}", random(8)));
        let clock = Arc::new(SystemClock::default());
        let mut settings = test_settings(&dir, None);
        configure(&mut settings);
        if settings.database_url.is_none() {
            settings.database_url = database_for(&settings.data_dir).await;
        }
        let database_url = settings.database_url.clone();
        let owns_database = settings.data_dir == dir;
        let running = start(settings, clock.clone()).await.expect("server starts");
        let base = running.public_url.clone();
        Server {
            fhir: format!("{base}/fhir"),
            base,
            clock,
            http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            running: Some(running),
            dir,
            database_url,
            owns_database,
        }
    }

    /// A handle for requests to a server running in another process ([`Process`]).
    pub fn at(base: &str) -> Server {
        Server {
            running: None,
            clock: Default::default(),
            base: base.to_owned(),
            fhir: format!("{base}/fhir"),
            http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            dir: std::path::PathBuf::new(),
            database_url: None,
            owns_database: false,
        }
    }

    /// Fills `base` and `fhir` from the running server, with a client that does not follow
    /// redirects.
    pub fn with_urls(mut self) -> Server {
        let base = self.running.as_ref().expect("running").public_url.clone();
        self.fhir = format!("{base}/fhir");
        self.base = base;
        self.http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        self
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        std::fs::remove_dir_all(&self.dir).ok();
        if self.owns_database {
            drop_database_of(&self.dir).await;
        }
    }

    /// The command line's arguments naming the server's database: `--data` and, on
    /// PostgreSQL, `--database`.
    pub fn database_args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_owned(), self.dir.to_string_lossy().into_owned()];
        if let Some(url) = &self.database_url {
            args.extend(["--database".to_owned(), url.clone()]);
        }
        args
    }

    /// Opens the server's database (SQLite in `dir`, or its PostgreSQL database), to look at
    /// what it stored.
    pub async fn open_db(&self) -> smartlaunch_store::Db {
        let config = smartlaunch_store::DatabaseConfig::choose(self.database_url.as_deref(), &self.dir, 2).unwrap();
        smartlaunch_store::Db::open(&config).await.unwrap()
    }

    pub fn redirect_uri(&self) -> String {
        "http://127.0.0.1:9/app/callback".into()
    }

    /// Registers an app through RFC 7591 and returns the registration response.
    pub async fn register(&self, metadata: Value) -> Value {
        let r = self.http.post(format!("{}/auth/register", self.base)).json(&metadata).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "registration failed: {body}");
        body
    }

    pub async fn public_app(&self) -> String {
        let reg = self
            .register(json!({
                "client_name": "Test App",
                "redirect_uris": [self.redirect_uri()],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }))
            .await;
        reg["client_id"].as_str().unwrap().to_owned()
    }

    pub async fn confidential_app(&self, method: &str) -> (String, String) {
        let reg = self
            .register(json!({
                "client_name": "Confidential App",
                "redirect_uris": [self.redirect_uri()],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": method,
            }))
            .await;
        (reg["client_id"].as_str().unwrap().to_owned(), reg["client_secret"].as_str().unwrap().to_owned())
    }

    /// Authorization parameters of a valid standalone launch.
    pub fn authorize_params(&self, client_id: &str, scope: &str, verifier: &str) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", &self.redirect_uri()),
            ("scope", scope),
            ("state", "state-0123456789abcdef"),
            ("aud", &self.fhir),
            ("code_challenge", &s256(verifier)),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn authorize_url(&self, params: &[(String, String)]) -> String {
        format!("{}/auth/authorize?{}", self.base, serde_urlencoded::to_string(params).unwrap())
    }

    /// Exchanges a code at the token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.http.post(format!("{}/auth/token", self.base)).form(form).send().await.unwrap()
    }

    pub async fn read(&self, path: &str, access_token: &str) -> Response {
        self.http.get(format!("{}/{path}", self.fhir)).bearer_auth(access_token).send().await.unwrap()
    }
}

/// A scripted browser: keeps the session cookie, follows the server's own redirects, and
/// fills the forms it is shown.
pub struct Browser<'a> {
    pub server: &'a Server,
    /// The session cookie.
    pub cookie: Option<String>,
    /// Other cookies the server set (form tokens).
    pub other_cookies: std::collections::BTreeMap<String, String>,
    pub page: String,
    pub url: String,
}

/// Where a browser step ended.
#[derive(Debug)]
pub enum Landing {
    /// A page of the server (its path).
    Page(String),
    /// The app's redirect_uri was reached (the full URL).
    App(String),
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a Server) -> Browser<'a> {
        Browser { server, cookie: None, other_cookies: Default::default(), page: String::new(), url: String::new() }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut cookies: Vec<String> = self.other_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(c) = &self.cookie {
            cookies.push(format!("smartlaunch_session={c}"));
        }
        if !cookies.is_empty() {
            h.insert(COOKIE, cookies.join("; ").parse().unwrap());
        }
        h
    }

    pub fn take_cookie(&mut self, r: &Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            if let Some(rest) = v.strip_prefix("smartlaunch_session=") {
                let value = rest.split(';').next().unwrap();
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            } else if let Some((name, rest)) = v.split_once('=') {
                self.other_cookies.insert(name.to_owned(), rest.split(';').next().unwrap().to_owned());
            }
        }
    }

    /// Follows redirects while they stay on our server; stops at the app.
    async fn follow(&mut self, mut r: Response) -> Landing {
        loop {
            self.take_cookie(&r);
            if r.status().is_redirection() {
                let loc = r.headers()[LOCATION].to_str().unwrap().to_owned();
                let absolute = if loc.starts_with('/') { format!("{}{loc}", self.server.base) } else { loc };
                if !absolute.starts_with(&self.server.base) {
                    return Landing::App(absolute);
                }
                r = self.server.http.get(&absolute).headers(self.headers()).send().await.unwrap();
                self.url = absolute;
                continue;
            }
            self.page = r.text().await.unwrap();
            return Landing::Page(self.url.clone());
        }
    }

    pub async fn get(&mut self, url: &str) -> Landing {
        self.url = url.to_owned();
        let r = self.server.http.get(url).headers(self.headers()).send().await.unwrap();
        self.follow(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Landing {
        let r = self
            .server
            .http
            .post(format!("{}{path}", self.server.base))
            .headers(self.headers())
            .form(form)
            .send()
            .await
            .unwrap();
        self.follow(r).await
    }

    /// Posts a form with this browser's cookies and returns the status, following nothing.
    pub async fn post_status(&self, path: &str, form: &[(&str, &str)]) -> StatusCode {
        let url = format!("{}{path}", self.server.base);
        self.server.http.post(url).headers(self.headers()).form(form).send().await.unwrap().status()
    }

    /// The value of the first hidden `csrf` field on the page.
    pub fn csrf(&self) -> String {
        attr_after(&self.page, "name=\"csrf\" value=\"").expect("the page has a CSRF field")
    }

    /// The pending request id of the current page.
    pub fn flow_id(&self) -> String {
        attr_after(&self.page, "action=\"/auth/flow/").unwrap().split('/').next().unwrap().to_owned()
    }

    pub fn is_sign_in(&self) -> bool {
        self.page.contains("<h1>Sign in</h1>")
    }
    pub fn is_patient_picker(&self) -> bool {
        self.page.contains("<h1>Choose a patient</h1>")
    }
    pub fn is_encounter_picker(&self) -> bool {
        self.page.contains("<h1>Choose an encounter</h1>")
    }
    pub fn is_consent(&self) -> bool {
        self.page.contains("name=\"decision\" value=\"allow\"")
    }

    pub async fn sign_in(&mut self, username: &str, password: &str) -> Landing {
        let (id, csrf) = (self.flow_id(), self.csrf());
        self.post(
            &format!("/auth/flow/{id}/signin"),
            &[("csrf", &csrf), ("username", username), ("password", password)],
        )
        .await
    }

    pub async fn pick_patient(&mut self, patient: &str) -> Landing {
        let (id, csrf) = (self.flow_id(), self.csrf());
        self.post(&format!("/auth/flow/{id}/patient"), &[("csrf", &csrf), ("patient", patient)]).await
    }

    pub async fn pick_encounter(&mut self, encounter: &str) -> Landing {
        let (id, csrf) = (self.flow_id(), self.csrf());
        self.post(&format!("/auth/flow/{id}/encounter"), &[("csrf", &csrf), ("encounter", encounter)]).await
    }

    /// The scopes offered on the consent page, in order.
    pub fn offered_scopes(&self) -> Vec<String> {
        self.page
            .split("name=\"scope\" value=\"")
            .skip(1)
            .map(|s| html_unescape(s.split('"').next().unwrap()))
            .collect()
    }

    /// Consents with the given scopes (`None`: everything offered).
    pub async fn consent(&mut self, allow: bool, scopes: Option<&[&str]>) -> Landing {
        let (id, csrf) = (self.flow_id(), self.csrf());
        let offered = self.offered_scopes();
        let chosen: Vec<String> = match scopes {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => offered,
        };
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("decision", if allow { "allow" } else { "deny" })];
        for s in &chosen {
            form.push(("scope", s));
        }
        self.post(&format!("/auth/flow/{id}/consent"), &form).await
    }
}

pub fn attr_after(page: &str, marker: &str) -> Option<String> {
    let start = page.find(marker)? + marker.len();
    Some(html_unescape(&page[start..start + page[start..].find('"')?]))
}

pub fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The claims of a JWT, without verification.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A complete standalone launch for `user`, picking `patient` when asked; returns the code
/// and the PKCE verifier.
pub async fn launch(
    server: &Server,
    client_id: &str,
    scope: &str,
    user: &str,
    patient: Option<&str>,
) -> (String, String) {
    let verifier = random(32);
    let mut browser = Browser::new(server);
    let mut landing = browser.get(&server.authorize_url(&server.authorize_params(client_id, scope, &verifier))).await;
    loop {
        match landing {
            Landing::App(url) => {
                let q = query_of(&url);
                assert_eq!(q.get("state").map(String::as_str), Some("state-0123456789abcdef"));
                return (q.get("code").cloned().unwrap_or_else(|| panic!("no code in {url}")), verifier);
            }
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in(user, user).await,
            Landing::Page(_) if browser.is_patient_picker() => {
                landing = browser.pick_patient(patient.expect("a patient to pick")).await
            }
            Landing::Page(_) if browser.is_encounter_picker() => {
                let first = attr_after(&browser.page, "name=\"encounter\" value=\"").unwrap();
                landing = browser.pick_encounter(&first).await
            }
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(true, None).await,
            Landing::Page(p) => panic!("unexpected page {p}: {}", browser.page),
        }
    }
}

/// Redeems a code for a public client and returns the token response.
pub async fn redeem(server: &Server, client_id: &str, code: &str, verifier: &str) -> Value {
    let r = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &server.redirect_uri()),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The settings of a test server: data in `dir`, on `database_url` (or SQLite), a free port on
/// loopback, the test key encryption key, everything else as `smartlaunch serve` defaults.
pub fn test_settings(dir: &std::path::Path, database_url: Option<String>) -> Settings {
    Settings {
        data_dir: dir.to_owned(),
        database_url,
        database_connections: 4,
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        registration_token: None,
        admin_token: None,
        open_sandbox: false,
        rate_limits: Default::default(),
        trusted_proxies: Default::default(),
        key_encryption_key: test_key_encryption_key(),
    }
}
