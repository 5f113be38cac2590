//! The launch inspector's side of the service: the summary of a launch, and the per-client
//! "trace this app's next launches" switch that traces launches made by hand (issue 9).

use crate::authorize::AuthorizationRequest;
use crate::client::TokenEndpointAuthMethod;
use crate::error::{AuthorizeError, StoreError};
use crate::inspect::{ConsentOutcome, LaunchEvent, LaunchSummary, Step};
use crate::launch::Launch;
use crate::secrets::random_token;
use crate::store::{AuthStore, HandTrace, PendingAuthorization};
use crate::{AuthService, UnixTime};

use super::{Progress, SIMULATION_LIFETIME};

/// The longest a trace switch stays on.
pub const MAX_TRACE_SWITCH: i64 = 24 * 3600;

/// What the inspector calls a launch its client's switch traced.
pub const HAND_MADE: &str = "made by hand (traced by the trace switch)";

impl<S: AuthStore> AuthService<S> {
    /// A fresh inspector key for an authorization request that names no launch or simulation,
    /// when its client's trace switch is on.  The switch comes with the cached client, so a
    /// client without one costs no query here.
    pub(super) async fn switched_trace(
        &self,
        request: &AuthorizationRequest,
        now: UnixTime,
    ) -> Option<(String, String)> {
        let client_id = request.client_id.as_deref()?;
        let entry = self.client_entry(client_id, now).await.ok()??;
        if !entry.traced(now) {
            return None;
        }
        let trace = HandTrace {
            trace_id: random_token(16),
            client_id: entry.client.client_id.clone(),
            created_at: now,
            expires_at: now + SIMULATION_LIFETIME,
        };
        if let Err(e) = self.store.insert_hand_trace(&trace).await {
            tracing::warn!("launch inspector: {e}");
            return None;
        }
        Some((trace.trace_id, self.config.fhir_base()))
    }

    /// Records a consent step passed without the page, after the event that led to it.
    pub(super) async fn record_unasked_consent(
        &self,
        trace: &str,
        decision: ConsentOutcome,
        answer: &str,
        now: UnixTime,
    ) {
        let outcome = format!("{}: {answer}", decision.describe());
        let event = LaunchEvent {
            consent: Some(decision),
            ..LaunchEvent::new(Step::Consent, "(no consent page)", outcome, now)
        };
        self.record(trace, event).await;
    }

    /// Turns a client's trace switch on for `minutes` (at most a day), or off (`None`).  This
    /// node sees it at once; another node within the client cache's TTL.  False: no such client.
    pub async fn set_trace_switch(
        &self,
        client_id: &str,
        minutes: Option<i64>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if self.client(client_id, now).await?.is_none() {
            return Ok(false);
        }
        let until = minutes.map(|m| now + (m * 60).clamp(60, MAX_TRACE_SWITCH));
        self.store.set_trace_switch(client_id, until).await?;
        self.clients.forget(client_id);
        Ok(true)
    }

    /// The summary header of a launch's inspector: the launch it belongs to (or the hand-made
    /// launch a switch traced), its app and user.  Unknown traces have an empty summary.
    pub async fn launch_summary(&self, trace: &str, now: UnixTime) -> Result<LaunchSummary, StoreError> {
        if trace.is_empty() || trace.len() > 64 {
            return Ok(LaunchSummary::default());
        }
        let (client_id, launch) = match self.store.launch_by_trace(trace).await? {
            Some(launch) => (launch.client_id.clone(), Some(launch)),
            None => match self.store.hand_trace(trace).await? {
                Some(hand) => (hand.client_id, None),
                None => return Ok(LaunchSummary::default()),
            },
        };
        let mut summary = LaunchSummary {
            client_id: Some(client_id.clone()),
            kind: launch.as_ref().map_or(HAND_MADE, Launch::kind_label).to_owned(),
            ..Default::default()
        };
        if let Some(client) = self.client(&client_id, now).await? {
            summary.app_name = Some(client.metadata.client_name.clone());
            summary.public = Some(!client.is_confidential());
            summary.client_type = Some(match client.metadata.token_endpoint_auth_method {
                TokenEndpointAuthMethod::None => "public",
                TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost => {
                    "confidential (client secret)"
                }
                TokenEndpointAuthMethod::PrivateKeyJwt => "confidential (private key, private_key_jwt)",
            });
        }
        let Some(launch) = launch else {
            return Ok(summary);
        };
        if let Some(user_id) = &launch.user_id {
            summary.user = Some(match self.store.user(user_id).await? {
                Some(u) => format!("{} ({})", u.display_name, u.username),
                None => user_id.clone(),
            });
        }
        summary.patient = launch.patient.clone().or_else(|| {
            (!launch.patient_choices.is_empty()).then(|| format!("chosen among {}", launch.patient_choices.join(", ")))
        });
        summary.encounter = launch.encounter.clone();
        let o = &launch.options;
        if o.skip_sign_in {
            summary.options.push("skip sign-in".into());
        }
        if o.skip_consent {
            summary.options.push("skip consent".into());
        }
        if let Some(e) = o.simulate_error {
            summary.options.push(format!("simulated error: {} ({})", e.label(), e.name()));
        }
        Ok(summary)
    }
}

/// What the inspector learns while an authorization starts.
#[derive(Debug, Default)]
pub(super) struct AuthorizeNotes {
    /// A simulated error answered.
    pub(super) simulated: bool,
    /// The request completed without the consent page, and why.
    pub(super) consent: Option<ConsentOutcome>,
}

/// Why a request that completes had no consent page: the launcher's skip consent, or a
/// remembered consent covering the scopes (`None`: the user decided on the page).
pub(super) fn unasked_consent(pending: &PendingAuthorization) -> Option<ConsentOutcome> {
    if pending.options.skip_consent {
        Some(ConsentOutcome::NotAsked { remembered: false })
    } else if pending.approved.is_none() {
        Some(ConsentOutcome::NotAsked { remembered: true })
    } else {
        None
    }
}

/// What the browser was answered, as the inspector shows it.
pub(super) fn describe_progress(result: &Result<Progress, AuthorizeError>) -> String {
    match result {
        Ok(Progress::Code(_)) => "redirect to the app with a code".into(),
        Ok(Progress::ErrorRedirect { error, description, .. }) => {
            format!("redirect to the app with error={error}: {description}")
        }
        Ok(Progress::Step { step, .. }) => format!("the {} page", step.page_name()),
        Err(AuthorizeError::Redirect { error, .. }) => {
            format!("redirect to the app with error={}: {}", error.error, error.error_description)
        }
        Err(e) => format!("error page: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_described_from_the_typed_outcome() {
        let denied = Progress::refuse("https://app.example/cb", "s", "access_denied", "the user denied the request");
        let Progress::ErrorRedirect { url, .. } = &denied else { panic!("an error redirect") };
        assert!(
            url.starts_with("https://app.example/cb?error=access_denied&error_description=")
                && url.ends_with("&state=s")
        );
        assert_eq!(
            describe_progress(&Ok(denied)),
            "redirect to the app with error=access_denied: the user denied the request"
        );
        let code = Progress::Code("https://app.example/cb?code=c&state=s".into());
        assert_eq!(describe_progress(&Ok(code)), "redirect to the app with a code");
    }
}
