//! The authorization flow: a validated request is kept server-side and advanced step by step
//! (sign-in → patient picker → encounter picker → consent) until a code is issued.  Each
//! browser step names the pending request by its unguessable id and must carry its CSRF token;
//! the server alone decides which step comes next, so no URL or form can skip one.

use smart_scopes::{Scope, ScopeSet};
use url::Url;

use crate::authorize::{self, needs_encounter, needs_patient, AuthorizationRequest};
use crate::error::{AuthorizeError, OAuthError};
use crate::inspect::{self, AuthorizeContext, ConsentOutcome, LaunchEvent, Step};
use crate::launch::{Launch, SimulatedError};
use crate::secrets::{hash_token, random_token, secrets_equal};
use crate::service::consent::consent_forced;
use crate::store::{AuthStore, CodeGrant, PendingAuthorization, Session};
use crate::throttle::Attempt;
use crate::users::User;
use crate::{AuthService, UnixTime};

use super::inspector::{describe_progress, unasked_consent, AuthorizeNotes};

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

/// A successful sign-in: the session cookie value to set.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_cookie: String,
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
        let traced = match self.trace_of_request(&request).await {
            Some(traced) => Some(traced),
            None => self.switched_trace(&request, now).await,
        };
        let mut event = traced.as_ref().map(|(_, expected_aud)| {
            let ctx = AuthorizeContext { expected_aud, known_type: self.config.known_resource_type };
            inspect::authorize_event(&request, ctx, now)
        });
        let trace = traced.map(|(trace, _)| trace);
        let mut notes = AuthorizeNotes::default();
        let result = self.start_authorization(request, session_cookie, trace.clone(), &mut notes, now).await;
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
                match self.take_launch(launch_id, &v.client_id, browser_user, now).await {
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
                        .simulation(id, &v.client_id, now)
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
        let fresh_login = pending.prompt.as_deref() == Some("login");
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
        match (&progress, request.prompt.as_deref()) {
            (Progress::Step { step, pending, .. }, Some("none")) => {
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

    /// The sign-in step.  Wrong credentials → [`AuthorizeError::SignInFailed`].
    pub async fn sign_in(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        csrf: &str,
        credentials: Credentials<'_>,
        now: UnixTime,
    ) -> Result<SignedIn, AuthorizeError> {
        let mut pending = self.load_pending(pending_id, flow_key, now).await?;
        check_csrf(&pending, csrf)?;
        if pending.user_id.is_some() {
            return Err(AuthorizeError::BadStep("You are already signed in for this request."));
        }
        let user = self.check_password(credentials, now).await?;
        if let Some(required) = pending.required_user.as_deref().filter(|r| *r != user.id) {
            let name = self.store.user(required).await?.map_or_else(|| required.to_owned(), |u| u.username);
            return Err(AuthorizeError::WrongUser(name));
        }
        let (signed_in, session) = self.start_session(&user, now).await?;
        pending.user_id = Some(user.id);
        pending.session_id = Some(session.id_hash);
        pending.auth_time = Some(now);
        self.store.update_pending(&pending).await?;
        Ok(signed_in)
    }

    /// Checks a password and opens a signed-in session (also used outside an authorization,
    /// by the management page, the EHR and the portal).
    pub async fn open_session(
        &self,
        credentials: Credentials<'_>,
        now: UnixTime,
    ) -> Result<(SignedIn, Session, User), AuthorizeError> {
        let user = self.check_password(credentials, now).await?;
        let (signed_in, session) = self.start_session(&user, now).await?;
        Ok((signed_in, session, user))
    }

    /// Opens a session for a user whose password was checked.
    async fn start_session(&self, user: &User, now: UnixTime) -> Result<(SignedIn, Session), AuthorizeError> {
        let cookie = random_token(32);
        let session = Session {
            id_hash: hash_token(&cookie),
            user_id: user.id.clone(),
            csrf: random_token(24),
            created_at: now,
            expires_at: now + self.config.session_lifetime,
        };
        self.store.insert_session(&session).await?;
        Ok((SignedIn { session_cookie: cookie }, session))
    }

    /// The patient-picker step: only a real patient, only while the step is due.
    pub async fn choose_patient(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        csrf: &str,
        patient_id: &str,
        now: UnixTime,
    ) -> Result<(), AuthorizeError> {
        let mut pending = self.load_pending(pending_id, flow_key, now).await?;
        check_csrf(&pending, csrf)?;
        let Some(FlowStep::PickPatient { choices }) = self.current_step(&pending).await? else {
            return Err(AuthorizeError::BadStep("A patient cannot be chosen at this point of the sign-in."));
        };
        if patient_id.is_empty() || patient_id.len() > 64 || !self.store.patient_exists(patient_id).await? {
            return Err(AuthorizeError::BadStep("That patient does not exist."));
        }
        if !choices.is_empty() && !choices.iter().any(|c| c == patient_id) {
            return Err(AuthorizeError::BadStep("That patient is not one this launch offers."));
        }
        pending.patient = Some(patient_id.to_owned());
        self.store.update_pending(&pending).await?;
        Ok(())
    }

    /// The encounter-picker step: one of the patient's encounters.
    pub async fn choose_encounter(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        csrf: &str,
        encounter_id: &str,
        now: UnixTime,
    ) -> Result<(), AuthorizeError> {
        let mut pending = self.load_pending(pending_id, flow_key, now).await?;
        check_csrf(&pending, csrf)?;
        match self.current_step(&pending).await? {
            Some(FlowStep::PickEncounter { encounter_ids }) if encounter_ids.iter().any(|e| e == encounter_id) => {}
            Some(FlowStep::PickEncounter { .. }) => {
                return Err(AuthorizeError::BadStep("That encounter is not one of this patient's."))
            }
            _ => return Err(AuthorizeError::BadStep("An encounter cannot be chosen at this point of the sign-in.")),
        }
        pending.encounter = Some(encounter_id.to_owned());
        pending.encounter_decided = true;
        self.store.update_pending(&pending).await?;
        Ok(())
    }

    /// The consent step.  `approved` holds the scopes left checked; anything not requested is
    /// ignored, so a tampered form can only narrow the grant.  Deny → `access_denied`.
    pub async fn consent(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        csrf: &str,
        allow: bool,
        approved: &[String],
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let mut pending = self.load_pending(pending_id, flow_key, now).await?;
        check_csrf(&pending, csrf)?;
        if !matches!(self.current_step(&pending).await?, Some(FlowStep::Consent)) {
            return Err(AuthorizeError::BadStep("There is nothing to approve at this point of the sign-in."));
        }
        let requested = parse_scope(&pending.scope)?;
        let granted = requested.retain(|s| approved.iter().any(|a| *a == s.to_string()));
        let trace = pending.trace.clone();
        let (decision, result) = if !allow || granted.is_empty() {
            self.store.delete_pending(&pending.id).await?;
            let why = if allow {
                "the user approved none of the requested permissions"
            } else {
                "the user denied the request"
            };
            let refused = Progress::refuse(&pending.redirect_uri, &pending.state, "access_denied", why);
            (ConsentOutcome::Denied { approved_none: allow }, Ok(refused))
        } else {
            let user_id = pending.user_id.clone().ok_or(AuthorizeError::BadStep("Sign in first."))?;
            self.store.put_consent(&user_id, &pending.client_id, &granted.to_string(), now).await?;
            pending.approved = Some(granted.to_string());
            let scopes = granted.iter().map(ToString::to_string).collect();
            (
                ConsentOutcome::Approved { scopes, requested: requested.len() },
                self.advance(pending, true, None, None, now).await,
            )
        };
        if let Some(trace) = trace {
            let outcome = format!("{}: {}", decision.describe(), describe_progress(&result));
            let event = LaunchEvent {
                consent: Some(decision),
                ..LaunchEvent::new(Step::Consent, "POST /auth/flow/…/consent", outcome, now)
            };
            self.record(&trace, event).await;
        }
        result
    }

    /// “Not you? Sign out” during a request: ends the session and sends the request back to
    /// the sign-in step, forgetting the user's choices.
    pub async fn sign_out_of_flow(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        csrf: &str,
        session_cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<(), AuthorizeError> {
        let mut pending = self.load_pending(pending_id, flow_key, now).await?;
        check_csrf(&pending, csrf)?;
        if let Some(cookie) = session_cookie {
            self.store.delete_session(&hash_token(cookie)).await?;
        }
        if let Some(session) = &pending.session_id {
            self.store.delete_session(session).await?;
        }
        pending.user_id = None;
        pending.session_id = None;
        pending.auth_time = None;
        pending.patient = None;
        pending.encounter = None;
        pending.encounter_decided = false;
        pending.approved = None;
        // After an explicit sign-out, do not adopt another live session silently.
        pending.prompt = Some("login".into());
        self.store.update_pending(&pending).await?;
        Ok(())
    }

    /// Ends a signed-in session (the sign-out link).
    pub async fn sign_out(&self, session_cookie: &str, csrf: &str, now: UnixTime) -> Result<(), AuthorizeError> {
        let id_hash = hash_token(session_cookie);
        match self.store.session(&id_hash, now).await? {
            Some(s) if secrets_equal(&s.csrf, csrf) => Ok(self.store.delete_session(&id_hash).await?),
            Some(_) => Err(AuthorizeError::BadStep("The sign-out form has expired; please try again.")),
            None => Ok(()),
        }
    }

    /// The signed-in user of a session cookie, with the session (for sign-out forms).
    pub async fn session_user(
        &self,
        session_cookie: &str,
        now: UnixTime,
    ) -> Result<Option<(Session, User)>, AuthorizeError> {
        Ok(self.store.session_user(&hash_token(session_cookie), now).await?)
    }

    /// Checks a username and password: refused at once while the account or the address is
    /// throttled (growing delays after repeated failures, never a permanent lockout), else
    /// argon2id on the bounded hashing pool.
    pub async fn check_password(&self, credentials: Credentials<'_>, now: UnixTime) -> Result<User, AuthorizeError> {
        let Credentials { username, password, client_addr } = credentials;
        if username.len() > 256 || password.len() > 1024 {
            return Err(AuthorizeError::SignInFailed);
        }
        let user = self.store.user_by_username(username).await?;
        let attempt = Attempt::new(username, user.is_some(), client_addr);
        if let Err(retry_after) = self.sign_ins.begin(&attempt, now) {
            return Err(AuthorizeError::Throttled { retry_after });
        }
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.hashing.verify(hash, password.to_owned()).await.map_err(AuthorizeError::Internal)?;
        match user {
            Some(u) if ok => {
                self.sign_ins.succeeded(&attempt);
                Ok(u)
            }
            _ => Err(AuthorizeError::SignInFailed),
        }
    }

    /// Loads a pending request for the browser that started it (its flow cookie).
    async fn load_pending(
        &self,
        pending_id: &str,
        flow_key: Option<&str>,
        now: UnixTime,
    ) -> Result<PendingAuthorization, AuthorizeError> {
        if pending_id.len() > 64 {
            return Err(AuthorizeError::UnknownRequest);
        }
        let pending = self.store.pending(pending_id, now).await?.ok_or(AuthorizeError::UnknownRequest)?;
        match flow_key.filter(|k| k.len() <= 64) {
            Some(key) if !pending.browser.is_empty() && secrets_equal(&hash_token(key), &pending.browser) => {
                Ok(pending)
            }
            _ => Err(AuthorizeError::OtherBrowser),
        }
    }

    /// The step due for a stored request, without changing it (`None`: nothing is due).
    async fn current_step(&self, pending: &PendingAuthorization) -> Result<Option<FlowStep>, AuthorizeError> {
        let user = match &pending.user_id {
            Some(id) => self.store.user(id).await?,
            None => None,
        };
        self.step_for(pending, user.as_ref()).await
    }

    /// The step due for a request whose signed-in user (if any) is already loaded.
    async fn step_for(
        &self,
        pending: &PendingAuthorization,
        user: Option<&User>,
    ) -> Result<Option<FlowStep>, AuthorizeError> {
        let Some(user) = user else {
            return Ok(Some(FlowStep::SignIn));
        };
        let user_id = &user.id;
        let scope = parse_scope(&pending.scope)?;
        if needs_patient(&scope) && pending.patient.is_none() && user.patient_id().is_none() {
            return Ok(Some(FlowStep::PickPatient { choices: pending.patient_choices.clone() }));
        }
        if needs_encounter(&scope) && !pending.encounter_decided {
            let patient = pending.patient.as_deref().or(user.patient_id()).unwrap_or_default();
            let encounter_ids = self.store.patient_encounters(patient).await?;
            if !encounter_ids.is_empty() {
                return Ok(Some(FlowStep::PickEncounter { encounter_ids }));
            }
        }
        if pending.approved.is_none() {
            let remembered = match consent_forced(pending.prompt.as_deref(), &pending.options) {
                Some(_) => None,
                None => self.store.consent(user_id, &pending.client_id).await?,
            };
            let covered = remembered.and_then(|r| ScopeSet::parse(&r).ok()).is_some_and(|r| scope.is_subset_of(&r));
            if !covered {
                return Ok(Some(FlowStep::Consent));
            }
        }
        Ok(None)
    }

    /// Moves a request forward: fills what the server knows (a patient user's own record, an
    /// empty encounter list), then shows the next step or completes with a code.  When it
    /// completes without the consent page (remembered consent, or the launcher's skip
    /// consent), the inspector learns why: into `deferred` when the caller records it after its
    /// own event, else at once.
    async fn advance(
        &self,
        mut pending: PendingAuthorization,
        stored: bool,
        signed_in: Option<User>,
        deferred: Option<&mut Option<ConsentOutcome>>,
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let user = match (signed_in, &pending.user_id) {
            (Some(user), _) => Some(user),
            (None, Some(id)) => self.store.user(id).await?,
            (None, None) => None,
        };
        let mut changed = false;
        if let Some(u) = &user {
            // A patient user shares only their own record, whatever a launch put in context.
            if let Some(own) = u.patient_id() {
                let offered = pending.patient.as_deref().is_none_or(|p| p == own)
                    && (pending.patient_choices.is_empty() || pending.patient_choices.iter().any(|c| c == own));
                if !offered {
                    if stored {
                        self.store.delete_pending(&pending.id).await?;
                    }
                    return Ok(Progress::refuse(
                        &pending.redirect_uri,
                        &pending.state,
                        "access_denied",
                        "the launch is for another patient's record; a patient user can share only their own",
                    ));
                }
            }
            let scope = parse_scope(&pending.scope)?;
            if pending.options.skip_consent && pending.approved.is_none() {
                // The developer launcher's "skip consent": the requested scopes, unremembered.
                pending.approved = Some(pending.scope.clone());
                changed = true;
            }
            if needs_patient(&scope) && pending.patient.is_none() {
                if let Some(own) = u.patient_id() {
                    pending.patient = Some(own.to_owned());
                    changed = true;
                }
            }
            if needs_encounter(&scope) && !pending.encounter_decided {
                if let Some(p) = &pending.patient {
                    if self.store.patient_encounters(p).await?.is_empty() {
                        pending.encounter_decided = true;
                        changed = true;
                    }
                }
            }
        }
        match (self.step_for(&pending, user.as_ref()).await?, user) {
            (Some(step), user) => {
                if !stored {
                    self.store.insert_pending(&pending).await?;
                } else if changed {
                    self.store.update_pending(&pending).await?;
                }
                Ok(Progress::Step { step, pending: Box::new(pending), user: user.map(Box::new), flow_key: None })
            }
            (None, Some(user)) => {
                if stored && !self.store.delete_pending(&pending.id).await? {
                    return Err(AuthorizeError::UnknownRequest);
                }
                let unasked = pending.trace.as_ref().and_then(|_| unasked_consent(&pending));
                let result = self.issue_code(&pending, &user, now).await.map(Progress::Code);
                match (unasked, deferred, &pending.trace) {
                    (Some(decision), Some(slot), _) => *slot = Some(decision),
                    (Some(decision), None, Some(trace)) => {
                        self.record_unasked_consent(trace, decision, &describe_progress(&result), now).await
                    }
                    _ => {}
                }
                result
            }
            (None, None) => Err(AuthorizeError::Internal("a request completed without a user".into())),
        }
    }

    /// Issues the authorization code and returns the redirect to the app (checklist 30–31).
    async fn issue_code(
        &self,
        pending: &PendingAuthorization,
        user: &User,
        now: UnixTime,
    ) -> Result<String, AuthorizeError> {
        let mut granted = parse_scope(pending.approved.as_deref().unwrap_or(&pending.scope))?;
        if pending.session_id.is_none() {
            // online_access lives as long as the user's session; a launch made without one
            // (the launch API vouching for a user) cannot have it.
            granted = granted.retain(|s| *s != Scope::OnlineAccess);
        }
        let grant = CodeGrant {
            grant_id: random_token(16),
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            aud: pending.aud.clone(),
            user_id: user.id.clone(),
            fhir_user: user.fhir_user.clone(),
            user_name: user.display_name.clone(),
            scope: granted.to_string(),
            // An EHR launch returns the context the EHR gave (unsolicited context is allowed,
            // scopes:527-530); a standalone launch only what the scopes asked for.
            patient: pending.patient.clone().filter(|_| pending.ehr_launch || needs_patient(&granted)),
            encounter: pending.encounter.clone().filter(|_| pending.ehr_launch || needs_encounter(&granted)),
            nonce: pending.nonce.clone(),
            session_id: pending.session_id.clone().filter(|_| granted.contains(&Scope::OnlineAccess)),
            auth_time: pending.auth_time.unwrap_or(now),
            context: pending.context.clone(),
            simulate_error: pending.options.simulate_error,
            trace: pending.trace.clone(),
        };
        let code = random_token(32);
        self.store.insert_code(&hash_token(&code), &grant, now + self.config.code_lifetime).await?;
        let mut url = Url::parse(&pending.redirect_uri).map_err(|e| AuthorizeError::Internal(e.to_string()))?;
        url.query_pairs_mut().append_pair("code", &code).append_pair("state", &pending.state);
        Ok(url.into())
    }
}

/// A sign-in's credentials and the address it came from (for throttling).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address as the server sees it (`None`: unknown).
    pub client_addr: Option<&'a str>,
}

/// Puts the user of the browser's own session on the request.
fn join_session(pending: &mut PendingAuthorization, session: &Session) {
    pending.user_id = Some(session.user_id.clone());
    pending.auth_time = Some(session.created_at);
    pending.session_id = Some(session.id_hash.clone());
}

fn check_csrf(pending: &PendingAuthorization, csrf: &str) -> Result<(), AuthorizeError> {
    if secrets_equal(&pending.csrf, csrf) {
        Ok(())
    } else {
        Err(AuthorizeError::BadStep(
            "The form has expired or did not come from this page; please go back to the app and try again.",
        ))
    }
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
