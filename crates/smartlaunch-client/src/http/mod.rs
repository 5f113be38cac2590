//! The HTTP layer: discovery, the two launches, the code exchange with id_token verification,
//! and sessions that refresh themselves.  reqwest over rustls (aws-lc-rs), redirects off.

mod backend;
mod bulk;
pub(crate) mod client_auth;
mod fhir;
mod jwks;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::ACCEPT;
use tokio::sync::RwLock;
use url::Url;

pub use backend::BackendService;
pub use bulk::{ExportFile, ExportJob, ExportManifest, ExportRequest};
pub use client_auth::{ClientAuth, PrivateKey};
pub use fhir::FhirClient;
pub use jwks::JwksCache;
pub use session::{LaunchContext, SavedSession, Session};

use crate::authorize::{AuthorizationRequest, PendingAuthorization};
use crate::discovery::{capability, SmartConfiguration};
use crate::error::OAuthErrorBody;
use crate::issuer::IssuerPolicy;
use crate::token::{code_exchange_form, TokenResponse};
use crate::Error;

/// A discovered configuration is used this long, then fetched again.
const CONFIGURATION_FRESH_FOR: Duration = Duration::from_secs(3600);
/// At most this many servers' configurations are kept (with `allow_any_issuer`, any number of
/// servers may be named).
const MAX_CONFIGURATIONS: usize = 1000;

/// Seconds since the Unix epoch; tests give their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// A reqwest client for SMART: rustls with aws-lc-rs and the system's roots, no redirects
/// (a token endpoint that redirects would lose the form, and a FHIR redirect could carry the
/// bearer token elsewhere), timeouts.
pub fn http_client() -> Result<reqwest::Client, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot read is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("smartlaunch-client/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The most a token response, a smart-configuration, a CapabilityStatement or a JWK Set may
/// be: a hostile server cannot make the app buffer more.
pub(crate) const SMALL_BODY: usize = 1024 * 1024;

/// Reads a response body of at most `limit` bytes (a longer one is an error, not buffered).
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<bytes::Bytes, Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Error::BadResponse(format!("the response is larger than {limit} bytes")));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(Error::BadResponse(format!("the response is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Posts a form to a token endpoint and reads the response (RFC 6749 §5.1/§5.2).
pub(crate) async fn post_token(
    http: &reqwest::Client,
    auth: &ClientAuth,
    client_id: &str,
    token_endpoint: &str,
    mut form: Vec<(&'static str, String)>,
    now: u64,
) -> Result<TokenResponse, Error> {
    let request = http.post(token_endpoint).header(ACCEPT, "application/json");
    let request = auth.apply(request, &mut form, client_id, token_endpoint, now)?;
    let response = request.form(&form).send().await?;
    let status = response.status();
    let body = read_limited(response, SMALL_BODY).await?;
    if status.is_success() {
        return TokenResponse::parse(&body);
    }
    match serde_json::from_slice::<OAuthErrorBody>(&body) {
        Ok(e) => Err(Error::OAuth(e.into())),
        Err(_) => Err(Error::BadResponse(format!("the token endpoint answered {status} without an RFC 6749 error"))),
    }
}

/// Fetches a server's SMART configuration: `.well-known/smart-configuration`, else the
/// CapabilityStatement's `oauth-uris` (SMART 2.2 §"Conformance").
pub async fn discover(http: &reqwest::Client, fhir_base: &str) -> Result<SmartConfiguration, Error> {
    let failed = |reason: String| Error::Discovery { iss: fhir_base.to_owned(), reason };
    let well_known = format!("{fhir_base}/.well-known/smart-configuration");
    let r = http.get(&well_known).header(ACCEPT, "application/json").send().await?;
    let first = if r.status().is_success() {
        match SmartConfiguration::from_well_known(&read_limited(r, SMALL_BODY).await?) {
            Ok(config) => return Ok(config),
            Err(e) => e,
        }
    } else {
        format!("{well_known} answered {}", r.status())
    };
    let r = http.get(format!("{fhir_base}/metadata")).header(ACCEPT, "application/fhir+json").send().await?;
    if !r.status().is_success() {
        return Err(failed(format!("{first}; and /metadata answered {}", r.status())));
    }
    let statement: serde_json::Value = serde_json::from_slice(&read_limited(r, SMALL_BODY).await?)
        .map_err(|e| failed(format!("{first}; and /metadata is not JSON: {e}")))?;
    SmartConfiguration::from_capability_statement(&statement).map_err(|e| failed(format!("{first}; and {e}")))
}

/// An app's registration and settings: what it needs to launch against the servers it allows.
pub struct SmartApp {
    pub(crate) client_id: String,
    redirect_uri: String,
    scope: String,
    pub(crate) auth: ClientAuth,
    issuers: IssuerPolicy,
    pub(crate) http: reqwest::Client,
    pub(crate) jwks: Arc<JwksCache>,
    pub(crate) clock: Clock,
    /// Discovered configurations and when: used for an hour, at most [`MAX_CONFIGURATIONS`].
    configurations: RwLock<HashMap<String, (Arc<SmartConfiguration>, std::time::Instant)>>,
}

/// Builds a [`SmartApp`].
pub struct SmartAppBuilder {
    client_id: String,
    redirect_uri: String,
    scope: String,
    auth: ClientAuth,
    issuers: IssuerPolicy,
    http: Option<reqwest::Client>,
    clock: Option<Clock>,
}

impl SmartAppBuilder {
    /// The scopes to ask for (default `openid fhirUser launch/patient patient/*.rs`).
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_owned();
        self
    }

    /// How the app authenticates at the token endpoint (default: public).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The FHIR servers the app accepts as `iss` (nothing is accepted until this is set).
    pub fn allowed_issuers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, issuers: I) -> Self {
        self.issuers = IssuerPolicy::AllowList(issuers.into_iter().map(Into::into).collect());
        self
    }

    /// Accept any https FHIR server as `iss`: only for apps that must (see [`IssuerPolicy`]).
    pub fn allow_any_issuer(mut self) -> Self {
        self.issuers = IssuerPolicy::AnyIssuer;
        self
    }

    /// A reqwest client of the app's own (it should not follow redirects).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The clock (Unix seconds) tokens' expiry is judged by.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn build(self) -> Result<SmartApp, Error> {
        let shared_secret = matches!(self.auth, ClientAuth::SecretBasic(_) | ClientAuth::SecretPost(_));
        if shared_secret && matches!(self.issuers, IssuerPolicy::AnyIssuer) {
            // Any server's discovery names the token endpoint: the secret would go to whoever
            // a launch link names.
            return Err(Error::Config(
                "a client secret cannot be used with allow_any_issuer: list the servers with allowed_issuers, \
                 or authenticate with private_key_jwt (whose assertions name their token endpoint)"
                    .into(),
            ));
        }
        Url::parse(&self.redirect_uri).map_err(|e| Error::BadUrl {
            what: "redirect_uri",
            url: self.redirect_uri.clone(),
            reason: e.to_string(),
        })?;
        Ok(SmartApp {
            client_id: self.client_id,
            redirect_uri: self.redirect_uri,
            scope: self.scope,
            auth: self.auth,
            issuers: self.issuers,
            http: match self.http {
                Some(h) => h,
                None => http_client()?,
            },
            jwks: Arc::default(),
            clock: self.clock.unwrap_or_else(system_clock),
            configurations: RwLock::default(),
        })
    }
}

impl SmartApp {
    pub fn builder(client_id: &str, redirect_uri: &str) -> SmartAppBuilder {
        SmartAppBuilder {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope: "openid fhirUser launch/patient patient/*.rs".to_owned(),
            auth: ClientAuth::Public,
            issuers: IssuerPolicy::default(),
            http: None,
            clock: None,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The SMART configuration of an allowed FHIR server, discovered once and kept.
    pub async fn configuration(&self, fhir_base: &str) -> Result<Arc<SmartConfiguration>, Error> {
        let base = self.issuers.check(fhir_base)?;
        if let Some((c, at)) = self.configurations.read().await.get(&base) {
            if at.elapsed() < CONFIGURATION_FRESH_FOR {
                return Ok(c.clone());
            }
        }
        let config = discover(&self.http, &base).await?;
        if matches!(self.issuers, IssuerPolicy::AnyIssuer) {
            // A server nobody vetted: its endpoints must at least be https (or loopback).
            for (what, url) in [
                ("authorization_endpoint", config.authorization_endpoint.as_deref()),
                ("token_endpoint", Some(config.token_endpoint.as_str())),
                ("jwks_uri", config.jwks_uri.as_deref()),
            ] {
                if let Some(url) = url.filter(|u| !crate::issuer::is_https_or_loopback(u)) {
                    return Err(Error::BadUrl {
                        what,
                        url: url.to_owned(),
                        reason: "an https URL is required of a server outside the allow-list".into(),
                    });
                }
            }
        }
        let config = Arc::new(config);
        let mut configurations = self.configurations.write().await;
        if configurations.len() >= MAX_CONFIGURATIONS {
            configurations.retain(|_, (_, at)| at.elapsed() < CONFIGURATION_FRESH_FOR);
            if configurations.len() >= MAX_CONFIGURATIONS {
                configurations.clear();
            }
        }
        configurations.insert(base, (config.clone(), std::time::Instant::now()));
        Ok(config)
    }

    async fn begin(&self, iss: &str, launch: Option<&str>) -> Result<(Url, PendingAuthorization), Error> {
        let base = self.issuers.check(iss)?;
        let config = self.configuration(&base).await?;
        match launch {
            Some(_) => config.require(capability::LAUNCH_EHR, "an EHR launch")?,
            None => config.require(capability::LAUNCH_STANDALONE, "a standalone launch")?,
        }
        config.require_auth_method(self.auth.method())?;
        if self.scope.split(' ').any(|s| s == "openid") {
            config.require(capability::SSO_OPENID_CONNECT, "the openid scope (an id_token)")?;
        }
        AuthorizationRequest {
            client_id: &self.client_id,
            redirect_uri: &self.redirect_uri,
            scope: &self.scope,
            fhir_base: &base,
            launch,
        }
        .build(&config, self.now())
    }

    /// Starts an EHR launch (SMART 2.2 §"EHR launch"): checks `iss` against the allow-list,
    /// discovers, and returns the URL to send the browser to and what to keep for the callback.
    pub async fn ehr_launch(&self, iss: &str, launch: &str) -> Result<(Url, PendingAuthorization), Error> {
        if launch.is_empty() {
            return Err(Error::BadCallback("the launch URL has an empty launch parameter"));
        }
        self.begin(iss, Some(launch)).await
    }

    /// Starts a standalone launch against `fhir_base` (SMART 2.2 §"Standalone launch").
    ///
    /// ```no_run
    /// use smartlaunch_client::{AuthorizationStore, ClientAuth, SignedCookieStore, SmartApp};
    ///
    /// # async fn run(callback_query: &str, cookie_key: &[u8]) -> Result<(), smartlaunch_client::Error> {
    /// let app = SmartApp::builder("my-app", "https://app.example/callback")
    ///     .scope("launch/patient openid fhirUser patient/*.rs offline_access")
    ///     .client_auth(ClientAuth::SecretBasic("the secret".into()))
    ///     .allowed_issuers(["https://ehr.example/fhir"])
    ///     .build()?;
    /// // Nothing kept on the server: the pending authorization rides in a signed cookie.
    /// let store = SignedCookieStore::new(cookie_key)?;
    /// let (authorize_url, pending) = app.standalone_launch("https://ehr.example/fhir").await?;
    /// let cookie = store.save(&pending)?;
    /// # let _ = authorize_url;
    /// // … the user signs in, picks a patient, approves; the browser returns with the cookie:
    /// let session = app.complete(&store.take(Some(&cookie), smartlaunch_client::unix_now())?, callback_query).await?;
    /// assert!(session.context().patient.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn standalone_launch(&self, fhir_base: &str) -> Result<(Url, PendingAuthorization), Error> {
        self.begin(fhir_base, None).await
    }

    /// Finishes a launch: checks the callback against what this browser started, exchanges
    /// the code, verifies the id_token, and returns the session.
    pub async fn complete(&self, pending: &PendingAuthorization, callback_query: &str) -> Result<Session, Error> {
        let code = pending.accept_callback(callback_query)?;
        if pending.client_id != self.client_id {
            return Err(Error::StateMismatch("the pending authorization belongs to another app"));
        }
        // The FHIR base must still be allowed (the allow-list may have changed since).
        self.issuers.check(&pending.fhir_base)?;
        let now = self.now();
        let form = code_exchange_form(&code, &pending.redirect_uri, &pending.code_verifier);
        let tokens = post_token(&self.http, &self.auth, &self.client_id, &pending.token_endpoint, form, now).await?;
        let id_token = match (&tokens.id_token, pending.nonce.as_deref()) {
            (Some(id_token), nonce) => Some(self.verify_id_token(pending, id_token, nonce).await?),
            (None, Some(_)) if tokens.granted_scopes(&pending.scope)?.contains(&smart_scopes::Scope::OpenId) => {
                return Err(Error::InvalidIdToken("openid was granted but no id_token came back".into()))
            }
            (None, _) => None,
        };
        Session::start(self, pending, tokens, id_token)
    }

    async fn verify_id_token(
        &self,
        pending: &PendingAuthorization,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<crate::id_token::IdTokenClaims, Error> {
        let (Some(issuer), Some(jwks_uri)) = (&pending.issuer, &pending.jwks_uri) else {
            return Err(Error::InvalidIdToken(
                "the server announced no issuer and jwks_uri in its smart-configuration, so the id_token cannot be verified".into(),
            ));
        };
        let now = self.now();
        self.jwks
            .verify_id_token(&self.http, jwks_uri, id_token, |claims| claims.check(issuer, &self.client_id, nonce, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_secret_is_never_offered_to_any_issuer() {
        for auth in [ClientAuth::SecretBasic("s".into()), ClientAuth::SecretPost("s".into())] {
            let built = SmartApp::builder("app", "https://app.example/cb").client_auth(auth).allow_any_issuer().build();
            assert!(matches!(built, Err(Error::Config(_))));
        }
        assert!(SmartApp::builder("app", "https://app.example/cb").allow_any_issuer().build().is_ok());
        assert!(SmartApp::builder("app", "not a url").build().is_err());
    }
}
