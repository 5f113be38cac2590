//! Backend services (SMART 2.2 §"Backend services"): `client_credentials` with a
//! `private_key_jwt` assertion, the token kept until shortly before it expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};

use super::{discover, http_client, post_token, system_clock, ClientAuth, Clock, FhirClient, PrivateKey};
use crate::discovery::capability;
use crate::token::client_credentials_form;
use crate::Error;

/// A new token is fetched this long before the current one expires (seconds).
const RENEW_EARLY: u64 = 60;

struct Cached {
    access_token: String,
    expires_at: Option<u64>,
    generation: u64,
}

struct BackendInner {
    http: reqwest::Client,
    client_id: String,
    auth: ClientAuth,
    token_endpoint: String,
    fhir_base: String,
    scope: String,
    clock: Clock,
    token: RwLock<Option<Cached>>,
    renewing: Mutex<()>,
    fetched: AtomicU64,
}

/// A backend service's connection to one FHIR server.  Cheap to clone.
///
/// ```no_run
/// use futures_util::TryStreamExt;
/// use smartlaunch_client::{BackendService, ExportRequest, PrivateKey};
///
/// # async fn run(pem: &str) -> Result<(), smartlaunch_client::Error> {
/// let key = PrivateKey::es384("my-key-id", pem)?;
/// let service = BackendService::builder("my-service", key)
///     .scope("system/Patient.rs system/Observation.rs")
///     .connect("https://ehr.example/fhir")
///     .await?;
/// let fhir = service.fhir();
/// let job = fhir.export(&ExportRequest::system().types(["Patient", "Observation"])).await?;
/// let manifest = job.wait().await?; // polls as often as Retry-After says
/// for file in &manifest.output {
///     let resources: Vec<serde_json::Value> = job.download(&manifest, file).await?.try_collect().await?;
///     println!("{}: {}", file.resource_type, resources.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BackendService {
    inner: Arc<BackendInner>,
}

/// Builds a [`BackendService`].
pub struct BackendServiceBuilder {
    client_id: String,
    key: PrivateKey,
    scope: String,
    http: Option<reqwest::Client>,
    clock: Option<Clock>,
}

impl BackendServiceBuilder {
    /// The `system/` scopes to ask for (default `system/*.rs`).
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_owned();
        self
    }

    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Discovers `fhir_base` and checks that it offers backend services.  No token is fetched
    /// until the first call.
    pub async fn connect(self, fhir_base: &str) -> Result<BackendService, Error> {
        let http = match self.http {
            Some(h) => h,
            None => http_client()?,
        };
        let base = crate::issuer::normalize(fhir_base).to_owned();
        let config = discover(&http, &base).await?;
        config.require(capability::CLIENT_CONFIDENTIAL_ASYMMETRIC, "backend services (private_key_jwt)")?;
        config.require_auth_method("private_key_jwt")?;
        if !config.grant_types_supported.is_empty()
            && !config.grant_types_supported.iter().any(|g| g == "client_credentials")
        {
            return Err(Error::MissingCapability {
                capability: "grant type client_credentials".into(),
                needed_for: "backend services",
            });
        }
        Ok(BackendService {
            inner: Arc::new(BackendInner {
                http,
                client_id: self.client_id,
                auth: ClientAuth::PrivateKeyJwt(self.key),
                token_endpoint: config.token_endpoint.clone(),
                fhir_base: base,
                scope: self.scope,
                clock: self.clock.unwrap_or_else(system_clock),
                token: RwLock::new(None),
                renewing: Mutex::new(()),
                fetched: AtomicU64::new(0),
            }),
        })
    }
}

impl BackendService {
    pub fn builder(client_id: &str, key: PrivateKey) -> BackendServiceBuilder {
        BackendServiceBuilder {
            client_id: client_id.to_owned(),
            key,
            scope: "system/*.rs".into(),
            http: None,
            clock: None,
        }
    }

    /// A FHIR client for the server, with this service's token.
    pub fn fhir(&self) -> FhirClient {
        FhirClient::for_backend(self.clone(), self.inner.fhir_base.clone(), self.inner.http.clone())
    }

    /// How many tokens this service has fetched.
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.fetched.load(Ordering::Relaxed)
    }

    /// The cached token, or a new one when there is none or it expires within a minute.
    pub(crate) async fn bearer(&self) -> Result<(String, u64), Error> {
        let now = (self.inner.clock)();
        let generation = {
            let t = self.inner.token.read().await;
            match &*t {
                Some(c) if c.expires_at.is_none_or(|at| at > now.saturating_add(RENEW_EARLY)) => {
                    return Ok((c.access_token.clone(), c.generation))
                }
                Some(c) => c.generation,
                None => 0,
            }
        };
        self.renew_after(generation).await
    }

    /// Fetches a new token unless another task already replaced the one of `generation`.
    pub(crate) async fn renew_after(&self, generation: u64) -> Result<(String, u64), Error> {
        let _one_at_a_time = self.inner.renewing.lock().await;
        if let Some(c) = &*self.inner.token.read().await {
            if c.generation != generation {
                return Ok((c.access_token.clone(), c.generation));
            }
        }
        let inner = &self.inner;
        let now = (inner.clock)();
        let form = client_credentials_form(&inner.scope);
        let t = post_token(&inner.http, &inner.auth, &inner.client_id, &inner.token_endpoint, form, now).await?;
        inner.fetched.fetch_add(1, Ordering::Relaxed);
        let generation = generation + 1;
        let cached = Cached {
            access_token: t.access_token,
            expires_at: t.expires_in.map(|s| now.saturating_add(s)),
            generation,
        };
        let token = cached.access_token.clone();
        *inner.token.write().await = Some(cached);
        Ok((token, generation))
    }
}
