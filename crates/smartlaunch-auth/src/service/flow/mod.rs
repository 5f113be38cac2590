//! The authorization flow: a validated request is kept server-side and advanced step by step
//! (sign-in → patient picker → encounter picker → consent) until a code is issued.  Each
//! browser step names the pending request by its unguessable id and must carry its CSRF token;
//! the server alone decides which step comes next, so no URL or form can skip one.
//!
//! Here: the request's start (`authorize`) and the outcome types; [`steps`] holds the browser
//! steps, [`advance`] the server's choice of the next step and the code, [`sessions`] the
//! signed-in sessions and password checks.

mod advance;
mod sessions;
mod steps;

use smart_scopes::ScopeSet;
use url::Url;

use crate::authorize::{self, AuthorizationRequest, Prompt};
use crate::error::{AuthorizeError, OAuthError};
use crate::inspect::{self, AuthorizeContext};
use crate::launch::{Launch, SimulatedError};
use crate::secrets::{hash_token, random_token};
use crate::store::{AuthStore, PendingAuthorization, Session};
use crate::users::User;
use crate::{AuthService, UnixTime};

use super::inspector::{describe_progress, AuthorizeNotes};
use super::launch::NamedLaunch;

pub use sessions::{Credentials, SignedIn};

/// The page the browser must show next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowStep {
    SignIn,
    /// Choose a patient: among `choices` when the launch limited them, else any.
    PickPatient {
        choices: Vec<String>,
    },
    /// The patient's encounters, newest first.
    PickEncounter {
        encounter_ids: Vec<String>,
    },
    Consent,
}

impl FlowStep {
    pub fn page_name(&self) -> &'static str {
        match self {
            FlowStep::SignIn => "sign-in",
            FlowStep::PickPatient { .. } => "patient picker",
            FlowStep::PickEncounter { .. } => "encounter picker",
            FlowStep::Consent => "consent",
        }
    }
}

/// Where an authorization stands after a request or a step.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step needs the user: show it for this pending request (and its signed-in user).
    /// `flow_key` is set when the request was just created: the browser must keep it as the
    /// flow cookie, and every later step must present it.
    Step { step: FlowStep, pending: Box<PendingAuthorization>, user: Option<Box<User>>, flow_key: Option<String> },
    /// Done: send the browser to the app with a `code` (this URL).
    Code(String),
    /// Done: send the browser to the app with an RFC 6749 §4.1.2.1 error such as
    /// `access_denied` (`url` carries `error`, `error_description` and `state`).
    ErrorRedirect { url: String, error: &'static str, description: String },
}

impl Progress {
    /// An error redirect to a verified `redirect_uri`.
    pub(super) fn refuse(redirect_uri: &str, state: &str, error: &'static str, description: &str) -> Progress {
        Progress::ErrorRedirect {
            url: error_redirect(redirect_uri, Some(state), error, description),
            error,
            description: description.to_owned(),
        }
    }
}

impl<S: AuthStore> AuthService<S> {
    /// Starts an authorization (`GET`/`POST /auth/authorize`).  With a live session and a
    /// remembered consent that needs no picker, it completes at once.  A request made for a
    /// launch is recorded for the launch inspector, mistakes and outcome included.
    pub async fn authorize(
        &self,
        request: AuthorizationRequest,
        session_cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let named = self.named_launch(&request).await;
        let traced = match named.as_ref().and_then(NamedLaunch::trace) {
            Some(traced) => Some(traced),
            None => self.switched_trace(&request, now).await,
        };
        let mut event = traced.as_ref().map(|(_, expected_aud)| {
            let ctx = AuthorizeContext { expected_aud, known_type: self.config.known_resource_type };
            inspect::authorize_event(&request, ctx, now)
        });
        let trace = traced.map(|(trace, _)| trace);
        let mut notes = AuthorizeNotes::default();
        let result = self.start_authorization(request, named, session_cookie, trace.clone(), &mut notes, now).await;
        if let (Some(trace), Some(event)) = (trace, event.as_mut()) {
            event.outcome = describe_progress(&result);
            event.simulated = notes.simulated;
            self.record(&trace, event.clone()).await;
            if let Some(decision) = notes.consent {
                self.record_unasked_consent(&trace, decision, &event.outcome, now).await;
            }
        }
        result
    }

    async fn start_authorization(
        &self,
        request: AuthorizationRequest,
        mut named: Option<NamedLaunch>,
        session_cookie: Option<&str>,
        trace: Option<String>,
        notes: &mut AuthorizeNotes,
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let client = match request.client_id.as_deref() {
            Some(id) => self.client(id, now).await?,
            None => None,
        };
        let v = authorize::validate(&request, client.as_deref(), &self.config)?;
        let prompt = v.prompt;
        // The session this browser already had when it started the request: the only one that
        // may join it without a sign-in inside the flow.
        let mut browser = match session_cookie.filter(|c| c.len() <= 64) {
            Some(c) => self.store.session_user(&hash_token(c), now).await?,
            None => None,
        };
        let launch = match &v.launch {
            None => None,
            Some(launch_id) => {
                let browser_user = browser.as_ref().map(|(_, u)| u.id.as_str());
                let read = NamedLaunch::row_for(&mut named, launch_id);
                match self.take_launch(launch_id, read, &v.client_id, browser_user, now).await {
                    Ok(Ok(launch)) => Some(launch),
                    Ok(Err(refused)) => {
                        return Ok(Progress::refuse(&v.redirect_uri, &v.state, "invalid_request", &refused.describe()))
                    }
                    Err(e) => return Err(AuthorizeError::Internal(e.to_string())),
                }
            }
        };
        // A developer-launcher simulation is named by its FHIR base, the request's `aud`.
        let launch = match (launch, self.config.simulation_of(&v.aud)) {
            (launch, None) => launch,
            (simulated, Some(id)) => {
                let found = match simulated {
                    Some(_) => Err("an EHR launch uses the FHIR base the EHR gave as iss, not a simulation's"),
                    None => self
                        .simulation(id, NamedLaunch::row_for(&mut named, id), &v.client_id, now)
                        .await
                        .map_err(|e| AuthorizeError::Internal(e.to_string()))?,
                };
                match found {
                    Ok(simulation) => Some(simulation),
                    Err(why) => return Ok(Progress::refuse(&v.redirect_uri, &v.state, "invalid_request", why)),
                }
            }
        };
        let flow_key = random_token(32);
        let mut pending = PendingAuthorization {
            id: random_token(32),
            client_id: v.client_id,
            redirect_uri: v.redirect_uri,
            state: v.state,
            code_challenge: v.code_challenge,
            aud: v.aud,
            nonce: v.nonce,
            scope: v.scope.to_string(),
            prompt: v.prompt,
            user_id: None,
            session_id: None,
            auth_time: None,
            patient: None,
            encounter: None,
            encounter_decided: false,
            approved: None,
            csrf: random_token(24),
            expires_at: now + self.config.pending_lifetime,
            ehr_launch: launch.as_ref().is_some_and(|l| !l.standalone),
            context: Default::default(),
            options: Default::default(),
            trace,
            patient_choices: Vec::new(),
            browser: hash_token(&flow_key),
            required_user: None,
        };
        let fresh_login = pending.prompt == Some(Prompt::Login);
        let mut signed_in = None;
        let mut launch_user = None;
        if let Some(launch) = launch {
            if let Some(refused) = simulated_authorize_error(&launch, &pending) {
                notes.simulated = true;
                return refused;
            }
            pending.options = launch.options;
            // The EHR session is the login; the launch's context needs no picker.
            pending.encounter_decided = launch.encounter.is_some();
            pending.patient = launch.patient;
            pending.patient_choices = launch.patient_choices;
            pending.encounter = launch.encounter;
            pending.context = launch.context;
            // A launch that names its user completes only for that user: in a browser that
            // holds their session, after they sign in inside the flow, or — when an authorized
            // caller asked for it — with no sign-in at all.
            if let Some(user) = launch.user_id {
                match browser.take() {
                    Some((session, u)) if u.id == user && !fresh_login => {
                        join_session(&mut pending, &session);
                        signed_in = Some(u);
                    }
                    _ if launch.options.skip_sign_in => {
                        pending.user_id = Some(user.clone());
                        pending.auth_time = Some(launch.created_at);
                    }
                    _ => pending.required_user = Some(user.clone()),
                }
                launch_user = Some(user);
            }
        }
        if launch_user.is_none() && !fresh_login {
            if let Some((session, u)) = browser {
                join_session(&mut pending, &session);
                signed_in = Some(u);
            }
        }
        let mut progress = self.advance(pending, false, signed_in, Some(&mut notes.consent), now).await?;
        if let Progress::Step { flow_key: key, .. } = &mut progress {
            *key = Some(flow_key);
        }
        match (&progress, prompt) {
            (Progress::Step { step, pending, .. }, Some(Prompt::None)) => {
                self.store.delete_pending(&pending.id).await?;
                let error = match step {
                    FlowStep::SignIn => "login_required",
                    FlowStep::Consent => "consent_required",
                    _ => "interaction_required",
                };
                Ok(Progress::refuse(
                    &pending.redirect_uri,
                    &pending.state,
                    error,
                    "prompt=none was requested but the user must act first",
                ))
            }
            _ => Ok(progress),
        }
    }

    /// Shows where a pending request stands (`GET /auth/flow/{id}`), to the browser that
    /// started it.  A session never joins a request here: only at its start or by a sign-in
    /// inside it.
    pub async fn resume(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let pending = self.load_pending(pending_id, flow_key, now).await?;
        self.advance(pending, true, None, None, now).await
    }
}

/// Puts the user of the browser's own session on the request.
fn join_session(pending: &mut PendingAuthorization, session: &Session) {
    pending.user_id = Some(session.user_id.clone());
    pending.auth_time = Some(session.created_at);
    pending.session_id = Some(session.id_hash.clone());
}

fn parse_scope(s: &str) -> Result<ScopeSet, AuthorizeError> {
    ScopeSet::parse(s).map_err(|e| AuthorizeError::Internal(format!("stored scope: {e}")))
}

/// An RFC 6749 §4.1.2.1 error redirect to a verified redirect_uri.
pub fn error_redirect(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error).append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    url.into()
}

impl AuthorizeError {
    /// The redirect of a redirectable error.
    pub fn redirect_url(&self) -> Option<String> {
        match self {
            AuthorizeError::Redirect { redirect_uri, state, error: OAuthError { error, error_description } } => {
                Some(error_redirect(redirect_uri, state.as_deref(), error, error_description))
            }
            _ => None,
        }
    }
}

/// The authorize-step failure a launch's developer options ask for, if any.
fn simulated_authorize_error(
    launch: &Launch,
    pending: &PendingAuthorization,
) -> Option<Result<Progress, AuthorizeError>> {
    let note = "(simulated by the developer launcher)";
    Some(match launch.options.simulate_error? {
        SimulatedError::AuthorizeInvalidClient => Err(AuthorizeError::NotRedirectable(format!(
            "The client_id “{}” is not registered with this server {note}.",
            pending.client_id
        ))),
        SimulatedError::AuthorizeInvalidRedirectUri => Err(AuthorizeError::NotRedirectable(format!(
            "The redirect_uri “{}” is not registered for this app {note}.",
            pending.redirect_uri
        ))),
        SimulatedError::AuthorizeInvalidScope => Ok(Progress::refuse(
            &pending.redirect_uri,
            &pending.state,
            "invalid_scope",
            &format!("the requested scope is invalid {note}"),
        )),
        _ => return None,
    })
}
