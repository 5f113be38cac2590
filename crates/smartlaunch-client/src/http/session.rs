//! A signed-in user's session: the launch context, and tokens that refresh themselves — before
//! they expire and after one 401 — with a single refresh in flight however many requests wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smart_scopes::ScopeSet;
use tokio::sync::{Mutex, RwLock};

use super::{post_token, ClientAuth, Clock, FhirClient, SmartApp};
use crate::authorize::PendingAuthorization;
use crate::error::OAuthErrorCode;
use crate::id_token::{FhirUser, IdTokenClaims};
use crate::token::{refresh_form, FhirContextItem, TokenResponse};
use crate::Error;

/// Refresh this long before the access token expires (seconds).
const REFRESH_EARLY: u64 = 60;

/// What the launch told the app (SMART 2.2 §"Launch context arrives with your access_token").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchContext {
    pub fhir_base: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    #[serde(default)]
    pub fhir_context: Vec<FhirContextItem>,
    pub intent: Option<String>,
    pub tenant: Option<String>,
    /// Whether the app draws its own patient banner: false only when the launch said so (an
    /// EHR that shows its own around the app); see [`crate::TokenResponse::needs_patient_banner`].
    pub need_patient_banner: bool,
    pub smart_style_url: Option<String>,
    /// The granted scopes, as the server wrote them.
    pub scope: String,
    /// The verified id_token's claims (`openid` granted).
    pub id_token: Option<IdTokenClaims>,
}

impl LaunchContext {
    /// The granted scopes, parsed (smart-scopes' grammar).
    pub fn granted_scopes(&self) -> ScopeSet {
        ScopeSet::parse(&self.scope).unwrap_or_default()
    }

    /// The signed-in user's FHIR resource, from the verified id_token.
    pub fn fhir_user(&self) -> Option<FhirUser> {
        self.id_token.as_ref().and_then(IdTokenClaims::fhir_user)
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct Tokens {
    access_token: String,
    /// Unix seconds; `None` when the server gave no `expires_in`.
    expires_at: Option<u64>,
    refresh_token: Option<String>,
    /// Bumped at every refresh, so a request knows whether the token it used is still current.
    #[serde(skip)]
    generation: u64,
}

/// A session as saved to disk or a database, to resume after a restart (with `offline_access`,
/// its refresh token outlives the browser).  It holds secrets: store it as such (its `Debug`
/// shows none).
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub context: LaunchContext,
    tokens: Tokens,
    token_endpoint: String,
}

impl std::fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedSession")
            .field("fhir_base", &self.context.fhir_base)
            .field("patient", &self.context.patient)
            .field("expires_at", &self.tokens.expires_at)
            .finish_non_exhaustive()
    }
}

pub(crate) struct SessionInner {
    pub(crate) http: reqwest::Client,
    client_id: String,
    auth: ClientAuth,
    token_endpoint: String,
    clock: Clock,
    context: LaunchContext,
    tokens: RwLock<Tokens>,
    refreshing: Mutex<()>,
    refreshes: AtomicU64,
}

/// A user's authorized session with one FHIR server.  Cheap to clone; clones share tokens.
///
/// ```no_run
/// use futures_util::TryStreamExt;
/// use smartlaunch_client::{Session, SmartApp};
///
/// # async fn run(app: &SmartApp, session: Session) -> Result<(), smartlaunch_client::Error> {
/// // Calls refresh the token when it is due, or after a 401, one refresh at a time.
/// let fhir = session.fhir();
/// let weights: Vec<serde_json::Value> =
///     fhir.search_patient("Observation", &[("code", "http://loinc.org|29463-7")])?.try_collect().await?;
/// println!("{} weights", weights.len());
/// // With offline_access, keep it across restarts (it holds the refresh token: store it safely).
/// let saved = serde_json::to_string(&session.save().await).map_err(|e| smartlaunch_client::Error::Config(e.to_string()))?;
/// let again = Session::restore(app, serde_json::from_str(&saved).map_err(|e| smartlaunch_client::Error::Config(e.to_string()))?);
/// let patient = again.fhir().read_patient().await?;
/// # let _ = patient;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

impl Session {
    pub(crate) fn start(
        app: &SmartApp,
        pending: &PendingAuthorization,
        t: TokenResponse,
        id_token: Option<IdTokenClaims>,
    ) -> Result<Session, Error> {
        let scope = t.granted_scopes(&pending.scope)?.to_string();
        let now = app.now();
        let context = LaunchContext {
            fhir_base: pending.fhir_base.clone(),
            need_patient_banner: t.needs_patient_banner(),
            patient: t.patient,
            encounter: t.encounter,
            fhir_context: t.fhir_context,
            intent: t.intent,
            tenant: t.tenant,
            smart_style_url: t.smart_style_url,
            scope,
            id_token,
        };
        let tokens = Tokens {
            access_token: t.access_token,
            expires_at: t.expires_in.map(|s| now.saturating_add(s)),
            refresh_token: t.refresh_token,
            generation: 0,
        };
        Ok(Session::assemble(app, context, tokens, pending.token_endpoint.clone()))
    }

    fn assemble(app: &SmartApp, context: LaunchContext, tokens: Tokens, token_endpoint: String) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                http: app.http.clone(),
                client_id: app.client_id.clone(),
                auth: app.auth.clone(),
                token_endpoint,
                clock: app.clock.clone(),
                context,
                tokens: RwLock::new(tokens),
                refreshing: Mutex::new(()),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// Resumes a saved session with `app`'s client authentication.
    pub fn restore(app: &SmartApp, saved: SavedSession) -> Session {
        Session::assemble(app, saved.context, saved.tokens, saved.token_endpoint)
    }

    /// The session as it stands, to save.
    pub async fn save(&self) -> SavedSession {
        SavedSession {
            context: self.inner.context.clone(),
            tokens: self.inner.tokens.read().await.clone(),
            token_endpoint: self.inner.token_endpoint.clone(),
        }
    }

    pub fn context(&self) -> &LaunchContext {
        &self.inner.context
    }

    /// A FHIR client that calls the session's server with its token.
    pub fn fhir(&self) -> FhirClient {
        FhirClient::for_session(self.clone())
    }

    /// How many refreshes this session has made.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// Whether the session can refresh (a refresh token was granted).
    pub async fn can_refresh(&self) -> bool {
        self.inner.tokens.read().await.refresh_token.is_some()
    }

    /// A current access token and its generation, refreshing first when it expires within a
    /// minute.
    pub(crate) async fn bearer(&self) -> Result<(String, u64), Error> {
        let now = (self.inner.clock)();
        let (token, generation, due) = {
            let t = self.inner.tokens.read().await;
            let due = t.expires_at.is_some_and(|at| at <= now.saturating_add(REFRESH_EARLY));
            if due && t.refresh_token.is_none() && t.expires_at.is_some_and(|at| at <= now) {
                return Err(Error::Expired);
            }
            (t.access_token.clone(), t.generation, due && t.refresh_token.is_some())
        };
        if due {
            return self.refresh_after(generation).await;
        }
        Ok((token, generation))
    }

    /// Refreshes unless another task already replaced the token of `generation`; returns the
    /// current token.  One refresh at a time: the others wait and take its result.
    pub(crate) async fn refresh_after(&self, generation: u64) -> Result<(String, u64), Error> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let refresh_token = {
            let t = self.inner.tokens.read().await;
            if t.generation != generation {
                return Ok((t.access_token.clone(), t.generation));
            }
            t.refresh_token.clone().ok_or(Error::Expired)?
        };
        let now = (self.inner.clock)();
        let inner = &self.inner;
        let result = post_token(
            &inner.http,
            &inner.auth,
            &inner.client_id,
            &inner.token_endpoint,
            refresh_form(&refresh_token),
            now,
        )
        .await;
        let fresh = match result {
            Ok(fresh) => fresh,
            Err(e) => {
                if matches!(&e, Error::OAuth(o) if o.code == OAuthErrorCode::InvalidGrant) {
                    // The refresh token is dead (expired, revoked, or reused elsewhere): the
                    // requests waiting behind this one fail at once instead of trying it again.
                    inner.tokens.write().await.refresh_token = None;
                }
                return Err(e);
            }
        };
        inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let mut t = inner.tokens.write().await;
        t.access_token = fresh.access_token;
        t.expires_at = fresh.expires_in.map(|s| now.saturating_add(s));
        // Rotation: a new refresh token replaces the old, which the server now refuses.
        if let Some(rotated) = fresh.refresh_token {
            t.refresh_token = Some(rotated);
        }
        t.generation += 1;
        Ok((t.access_token.clone(), t.generation))
    }

    /// Refreshes now (e.g. after the user changed something server-side).
    pub async fn refresh(&self) -> Result<(), Error> {
        let generation = self.inner.tokens.read().await.generation;
        self.refresh_after(generation).await.map(|_| ())
    }
}
