//! Creating EHR launches, and resolving the `launch` parameter of an authorization request
//! (checklist items 19, 20, 26).

use crate::authorize::AuthorizationRequest;
use crate::client::TokenEndpointAuthMethod;
use crate::error::LaunchError;
use crate::inspect::LaunchEvent;
use crate::launch::{
    launch_url, standalone_url, BackendSession, FhirContextItem, Launch, LaunchContext, LaunchOptions, LaunchRefused,
    LaunchUse, SimulatedError,
};
use crate::secrets::{hash_token, random_token, secrets_equal};
use crate::store::{AuthStore, InspectorStore, LaunchRedemption, LaunchStore};
use crate::{AuthService, UnixTime};

/// How long a launch id may wait for the app's authorization request.
pub const LAUNCH_LIFETIME: i64 = 300;

/// How long a standalone simulation's FHIR base works (a developer pastes it into an app).
pub const SIMULATION_LIFETIME: i64 = 24 * 3600;

/// What an EHR asks for: the simulator, the portal or the launch API.
#[derive(Debug, Clone, Default)]
pub struct NewLaunch {
    pub client_id: String,
    /// The user account the EHR vouches for; `None`: the user signs in at authorize.
    pub user_id: Option<String>,
    /// The EHR session that launches, when there is one.
    pub session_id: Option<String>,
    pub patient: Option<String>,
    /// Without a `patient`: the patients the picker offers (empty: any).
    pub patient_choices: Vec<String>,
    pub encounter: Option<String>,
    pub context: LaunchContext,
    pub options: LaunchOptions,
    /// A standalone simulation (the developer launcher) instead of an EHR launch.
    pub standalone: bool,
    /// An EHR launch usable any number of times for this many seconds (at most
    /// [`REUSABLE_MAX`]); `None`: single use, within [`LAUNCH_LIFETIME`].
    pub reusable_for: Option<i64>,
}

/// The longest a reusable (development) launch lives: an hour.
pub const REUSABLE_MAX: i64 = 3600;

/// A created launch: the opaque id (shown once), the FHIR base the app uses, and the app's
/// launch URL (always for an EHR launch; for a simulation when the app has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLaunch {
    pub launch: String,
    pub fhir_base: String,
    pub launch_url: Option<String>,
    /// The launch inspector's key (`/launcher/inspect/{trace_id}`).
    pub trace_id: String,
    /// [`Launch::kind_label`]: single use, reusable (dev), or a standalone simulation.
    pub kind: &'static str,
    pub expires_at: UnixTime,
}

/// A backend-service session as the launcher shows it: what the service needs to get tokens,
/// and the inspector's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedBackendSession {
    pub client_id: String,
    pub client_name: String,
    pub token_url: String,
    pub fhir_base: String,
    /// The `system/` scopes the client is pre-authorized for.
    pub scope: String,
    pub simulate_error: Option<SimulatedError>,
    /// The launch inspector's key (`/launcher/inspect/{trace_id}`).
    pub trace_id: String,
    pub expires_at: UnixTime,
}

impl<S: AuthStore> AuthService<S> {
    /// Guards the open-sandbox powers (the launch API, the launcher, skip sign-in, skip
    /// consent, ad-hoc apps, the recent-launches list): with an admin token configured the
    /// caller must present it; without one they are on only in an open sandbox (loopback, or
    /// `--open-sandbox`).
    pub fn check_powers(&self, bearer: Option<&str>, host: Option<&str>) -> Result<(), LaunchError> {
        match (&self.config.admin_token, bearer) {
            (Some(expected), Some(given)) if secrets_equal(given, expected) => Ok(()),
            (Some(_), Some(_)) => Err(LaunchError::Unauthorized("the admin token is not valid".into())),
            (Some(_), None) => Err(LaunchError::Unauthorized(
                "this server requires its admin token for the launch API: send `Authorization: Bearer <token>`".into(),
            )),
            (None, _) if self.config.open_sandbox && !self.config.loopback_sandbox => Ok(()),
            (None, _) if self.config.open_sandbox && host.is_some_and(|h| self.is_own_host(h)) => Ok(()),
            (None, _) if self.config.open_sandbox => Err(LaunchError::Forbidden(
                "a sandbox open on loopback answers its launch API and launcher only at a loopback address \
                 (localhost, 127.0.0.1) or its public URL, never at another name (DNS rebinding)"
                    .into(),
            )),
            (None, _) => Err(LaunchError::Forbidden(
                "the launch API and the launcher are off: this server listens beyond loopback without an admin \
                 token; start it with --admin-token TOKEN (or --open-sandbox to open them to everyone)"
                    .into(),
            )),
        }
    }

    /// Whether a request's `Host` is this server: a loopback name, or its public URL's host.
    fn is_own_host(&self, host: &str) -> bool {
        let public = url::Url::parse(&self.config.public_url).ok();
        let public_authority = public.as_ref().map(|u| match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        });
        crate::config::is_loopback_host(host) || public_authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
    }

    /// Creates a launch after checking that everything it names exists and fits together.
    pub async fn create_launch(&self, new: NewLaunch, now: UnixTime) -> Result<IssuedLaunch, LaunchError> {
        let invalid = |m: String| Err(LaunchError::Invalid(m));
        let Some(client) = self.client(&new.client_id, now).await? else {
            return invalid(format!("no registered app has the client_id “{}”", new.client_id));
        };
        let initiate = client.metadata.initiate_login_uri.as_deref();
        if initiate.is_none() && !new.standalone {
            return invalid(format!(
                "the app “{}” has no launch URL: register one (initiate_login_uri) to launch it from the EHR",
                client.metadata.client_name
            ));
        }
        if let Some(user) = &new.user_id {
            let Some(user) = self.store.user(user).await? else {
                return invalid("the user does not exist".into());
            };
            if let Some(own) = user.patient_id() {
                let others = new.patient.iter().chain(&new.patient_choices).any(|p| p != own);
                if others {
                    return invalid(format!(
                        "a patient user ({}) can launch only with their own record",
                        user.username
                    ));
                }
            }
        }
        for patient in new.patient.iter().chain(&new.patient_choices) {
            if !self.store.patient_exists(patient).await? {
                return invalid(format!("Patient/{patient} does not exist"));
            }
        }
        if let Some(encounter) = &new.encounter {
            let Some(patient) = &new.patient else {
                return invalid("an encounter needs its patient in the launch too".into());
            };
            if !self.store.patient_encounters(patient).await?.contains(encounter) {
                return invalid(format!("Encounter/{encounter} is not one of Patient/{patient}'s encounters"));
            }
        }
        new.context.fhir_context.iter().try_for_each(FhirContextItem::check).map_err(LaunchError::Invalid)?;
        new.options.check().map_err(LaunchError::Invalid)?;
        if let Some(e) = new.options.simulate_error.filter(|e| e.is_backend()) {
            return invalid(format!(
                "the simulated error `{}` is for a backend-service session (the launcher's “Backend service” type), not for an app launch",
                e.name()
            ));
        }
        let (reuse, lifetime) = match (new.reusable_for, new.standalone) {
            (None, true) => (LaunchUse::SingleUse, SIMULATION_LIFETIME),
            (None, false) => (LaunchUse::SingleUse, LAUNCH_LIFETIME),
            (Some(_), true) => {
                return invalid(
                    "a standalone simulation is reusable already; only an EHR launch can be made reusable".into(),
                )
            }
            (Some(s), false) if !(1..=REUSABLE_MAX).contains(&s) => {
                return invalid(format!("a reusable launch lives at most {} minutes", REUSABLE_MAX / 60))
            }
            (Some(s), false) => (LaunchUse::Reusable, s),
        };
        let id = random_token(32);
        let launch = Launch {
            id_hash: hash_token(&id),
            client_id: client.client_id.clone(),
            user_id: new.user_id,
            session_id: new.session_id,
            patient: new.patient,
            patient_choices: new.patient_choices,
            encounter: new.encounter,
            context: new.context,
            options: new.options,
            standalone: new.standalone,
            trace_id: random_token(16),
            reuse,
            created_at: now,
            expires_at: now + lifetime,
        };
        let fhir_base = if new.standalone { self.config.simulation_base(&id) } else { self.config.fhir_base() };
        let launch_url = match initiate {
            // A simulation's app starts a standalone launch: `iss` only.
            Some(uri) if new.standalone => standalone_url(uri, &fhir_base),
            Some(uri) => launch_url(uri, &fhir_base, &id),
            None => None,
        };
        if initiate.is_some() && launch_url.is_none() {
            return invalid("the app's launch URL is not a URL".into());
        }
        self.store.insert_launch(&launch).await?;
        let kind = launch.kind_label();
        Ok(IssuedLaunch {
            launch: id,
            fhir_base,
            launch_url,
            trace_id: launch.trace_id,
            kind,
            expires_at: launch.expires_at,
        })
    }

    /// Starts a backend-service session for a registered `private_key_jwt` client with the
    /// `client_credentials` grant: from now until it expires (as long as a simulation), every
    /// token request of the client is recorded for the launch inspector and `simulate_error`
    /// (a backend one) happens at each.  It replaces the client's previous session.  This node
    /// sees it at once; another node sharing the database when its cached entry for the client
    /// expires (at most [`TTL`](crate::client_cache::TTL) seconds).
    pub async fn create_backend_session(
        &self,
        client_id: &str,
        simulate_error: Option<SimulatedError>,
        now: UnixTime,
    ) -> Result<IssuedBackendSession, LaunchError> {
        let invalid = |m: String| Err(LaunchError::Invalid(m));
        let Some(client) = self.client(client_id, now).await? else {
            return invalid(format!("no registered client has the client_id “{client_id}”"));
        };
        let name = &client.metadata.client_name;
        if !client.allows_grant("client_credentials") {
            return invalid(format!(
                "“{name}” is not a backend service: register it with grant_types [\"client_credentials\"] and the system/ scopes it may have"
            ));
        }
        if client.metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt {
            return invalid(format!(
                "“{name}” authenticates with a client secret; the launcher's backend-service type is for private_key_jwt clients (a JWK Set or a JWKS URL)"
            ));
        }
        if let Some(e) = simulate_error.filter(|e| !e.is_backend()) {
            return invalid(format!(
                "the simulated error `{}` is for app launches; a backend service can simulate backend_invalid_client_assertion or backend_invalid_scope",
                e.name()
            ));
        }
        let session = BackendSession {
            client_id: client.client_id.clone(),
            trace_id: random_token(16),
            simulate_error,
            created_at: now,
            expires_at: now + SIMULATION_LIFETIME,
        };
        self.store.put_backend_session(&session).await?;
        self.clients.forget(&client.client_id);
        let scope = client.allowed_scopes().unwrap_or_default().retain(smart_scopes::Scope::is_system);
        Ok(IssuedBackendSession {
            client_id: session.client_id,
            client_name: name.clone(),
            token_url: self.config.token_endpoint(),
            fhir_base: self.config.fhir_base(),
            scope: scope.to_string(),
            simulate_error,
            trace_id: session.trace_id,
            expires_at: session.expires_at,
        })
    }
}

/// A launch as read from the store by the hash of its id, with when it was used.
pub(super) type LaunchRow = Option<(Launch, Option<UnixTime>)>;

/// The launch an authorization request names, as read once for that request
/// ([`AuthService::named_launch`]).
pub(super) struct NamedLaunch {
    /// The id the request gave (its `launch`, or the simulation id in its `aud`).
    pub id: String,
    /// The FHIR base the request's `aud` must name.
    pub expected_aud: String,
    pub row: LaunchRow,
}

impl NamedLaunch {
    /// The inspector key and expected FHIR base, when the launch is traced.
    pub fn trace(&self) -> Option<(String, String)> {
        let (launch, _) = self.row.as_ref()?;
        (!launch.trace_id.is_empty()).then(|| (launch.trace_id.clone(), self.expected_aud.clone()))
    }

    /// The row, when it was read for `id` (else the caller reads it).
    pub fn row_for(named: &mut Option<NamedLaunch>, id: &str) -> Option<LaunchRow> {
        named.take().filter(|n| n.id == id).map(|n| n.row)
    }
}

/// Resolving a launch needs only the launch ports.
impl<S: LaunchStore + LaunchRedemption> AuthService<S> {
    /// Resolves the `launch` parameter of an authorization request and uses it up: it must be
    /// live, unused (unless reusable), for this client, and — when the browser is signed in —
    /// for that user ([`Launch::refusal`]).
    pub(super) async fn take_launch(
        &self,
        launch_id: &str,
        read: Option<LaunchRow>,
        client_id: &str,
        browser_user: Option<&str>,
        now: UnixTime,
    ) -> Result<Result<Launch, LaunchRefused>, LaunchError> {
        if launch_id.len() > 128 {
            return Ok(Err(LaunchRefused::Unknown));
        }
        let id_hash = hash_token(launch_id);
        let row = match read {
            Some(row) => row,
            None => self.store.launch(&id_hash).await?,
        };
        let Some((launch, used_at)) = row else {
            return Ok(Err(LaunchRefused::Unknown));
        };
        if let Some(r) = launch.refusal(used_at, client_id, browser_user, now) {
            return Ok(Err(r));
        }
        // A single-use launch is spent here, atomically (two racing requests: one wins); a
        // reusable one is only marked as used (the inspector and the launcher show it).
        if !self.store.use_launch(&id_hash, now).await? && launch.reuse == LaunchUse::SingleUse {
            return Ok(Err(LaunchRefused::Used));
        }
        Ok(Ok(launch))
    }

    /// The standalone simulation an authorization request's `aud` names: live, and for this
    /// client (a simulation vouches for its user, so no other app may use it).
    pub(super) async fn simulation(
        &self,
        id: &str,
        read: Option<LaunchRow>,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Result<Launch, &'static str>, LaunchError> {
        let found = match read {
            Some(row) => row,
            None => self.store.launch(&hash_token(id)).await?,
        };
        Ok(match found {
            Some((launch, _)) if launch.standalone && launch.client_id == client_id && launch.expires_at > now => {
                Ok(launch)
            }
            Some((launch, _)) if launch.standalone && launch.client_id != client_id => {
                Err("this simulation's FHIR base was made for another app; create one for this app in the launcher")
            }
            _ => Err("the simulation is unknown or has expired (they last a day); create a new one in the launcher"),
        })
    }

    /// The launch an authorization request names (by its `launch`, or by a simulation's base in
    /// `aud`), whatever else is wrong with the request: read once, for the launch inspector and
    /// for the launch checks of the same request.  `None` when it names none or the read failed
    /// (the checks then read again and report the failure).
    pub(super) async fn named_launch(&self, request: &AuthorizationRequest) -> Option<NamedLaunch> {
        let aud = request.aud.as_deref().or(request.resource.as_deref()).unwrap_or_default();
        let (id, expected_aud) = match (request.launch.as_deref(), self.config.simulation_of(aud)) {
            (Some(launch), _) => (launch, self.config.fhir_base()),
            (None, Some(sim)) => (sim, self.config.simulation_base(sim)),
            (None, None) => return None,
        };
        if id.len() > 128 {
            return None;
        }
        let row = self.store.launch(&hash_token(id)).await.ok()?;
        Some(NamedLaunch { id: id.to_owned(), expected_aud, row })
    }

    /// The inspector key of a simulation, by its id (discovery requests at its base).
    pub async fn trace_of_simulation(&self, id: &str) -> Option<String> {
        let (launch, _) = self.store.launch(&hash_token(id)).await.ok()??;
        (launch.standalone && !launch.trace_id.is_empty()).then_some(launch.trace_id)
    }
}

/// The launch inspector's record needs only its own port.
impl<S: InspectorStore> AuthService<S> {
    /// Records a request for the launch inspector; a failure to record never fails the request.
    pub async fn record(&self, trace: &str, event: LaunchEvent) {
        if let Err(e) = self.store.record_event(trace, &event).await {
            tracing::warn!("launch inspector: {e}");
        }
    }

    /// A launch's recorded requests, oldest first.
    pub async fn launch_events(&self, trace: &str) -> Result<Vec<LaunchEvent>, LaunchError> {
        if trace.len() > 64 {
            return Ok(Vec::new());
        }
        Ok(self.store.launch_events(trace).await?)
    }
}
