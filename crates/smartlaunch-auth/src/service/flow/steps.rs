//! The browser steps of a pending authorization: sign-in, patient and encounter pickers,
//! consent and "not you? sign out" (checklist items 32, 36).  Each loads the request for the
//! browser that started it and checks its CSRF token first.

use crate::authorize::Prompt;
use crate::error::AuthorizeError;
use crate::inspect::{ConsentOutcome, LaunchEvent, Step};
use crate::secrets::{hash_token, secrets_equal};
use crate::store::{AuthStore, PendingAuthorization};
use crate::{AuthService, UnixTime};

use super::super::inspector::describe_progress;
use super::{parse_scope, Credentials, FlowStep, Progress, SignedIn};

impl<S: AuthStore> AuthService<S> {
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
        pending.prompt = Some(Prompt::Login);
        self.store.update_pending(&pending).await?;
        Ok(())
    }

    /// Loads a pending request for the browser that started it (its flow cookie).
    pub(super) async fn load_pending(
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
