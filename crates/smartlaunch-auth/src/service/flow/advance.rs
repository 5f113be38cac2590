//! The server's side of the flow: which step is due, filling what it knows (a patient user's
//! own record, an empty encounter list), and the authorization code at the end (checklist
//! items 30, 31, 33).

use smart_scopes::{Scope, ScopeSet};
use url::Url;

use crate::authorize::{needs_encounter, needs_patient};
use crate::error::AuthorizeError;
use crate::inspect::ConsentOutcome;
use crate::secrets::{hash_token, random_token};
use crate::service::consent::consent_forced;
use crate::store::{AuthStore, CodeGrant, PendingAuthorization};
use crate::users::User;
use crate::{AuthService, UnixTime};

use super::super::inspector::{describe_progress, unasked_consent};
use super::{parse_scope, FlowStep, Progress};

impl<S: AuthStore> AuthService<S> {
    /// The step due for a stored request, without changing it (`None`: nothing is due).
    pub(super) async fn current_step(
        &self,
        pending: &PendingAuthorization,
    ) -> Result<Option<FlowStep>, AuthorizeError> {
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
            let remembered = match consent_forced(pending.prompt, &pending.options) {
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
    pub(super) async fn advance(
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
