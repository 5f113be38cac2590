//! What the inspector concludes from a whole launch: the summary header (app, user, patient,
//! options, launch kind, the context the token response carried, the consent outcome), the
//! scopes never used and the hints only the whole launch shows.  Simulated answers never count
//! against the app.

use serde::{Deserialize, Serialize};
use smart_scopes::Scope;

use super::{unused_scopes, Flag, LaunchEvent, Step};
use crate::token::TokenResponse;

/// The launch context a token response carried (spec digest §1.6), as the inspector keeps it:
/// never a token value, only whether one was issued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenContext {
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// Each `fhirContext` item, e.g. `DocumentReference/d1 (role launch)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    pub refresh_token: bool,
    pub id_token: bool,
}

impl TokenContext {
    pub fn of(response: &TokenResponse) -> TokenContext {
        let c = &response.context;
        TokenContext {
            scope: response.scope.clone(),
            patient: response.patient.clone(),
            encounter: response.encounter.clone(),
            fhir_context: c
                .fhir_context
                .iter()
                .map(|item| {
                    let what = item
                        .reference
                        .clone()
                        .or_else(|| item.canonical.clone())
                        .or_else(|| item.identifier.as_ref().map(|i| format!("identifier {i}")))
                        .unwrap_or_default();
                    match &item.role {
                        Some(role) => format!("{what} (role {role})"),
                        None => what,
                    }
                })
                .collect(),
            intent: c.intent.clone(),
            need_patient_banner: c.need_patient_banner,
            smart_style_url: c.smart_style_url.clone(),
            refresh_token: response.refresh_token.is_some(),
            id_token: response.id_token.is_some(),
        }
    }
}

/// The user's decision on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum ConsentOutcome {
    /// Approved these of the `requested` scopes.
    Approved { scopes: Vec<String>, requested: usize },
    /// Denied, or approved none: `access_denied` back to the app.
    Denied { approved_none: bool },
    /// No consent page: a remembered consent covered the scopes, or the launcher's skip consent.
    NotAsked { remembered: bool },
}

impl ConsentOutcome {
    /// One line for the inspector.
    pub fn describe(&self) -> String {
        match self {
            ConsentOutcome::Approved { scopes, requested } if scopes.len() == *requested => {
                format!("approved all {requested} requested scopes")
            }
            ConsentOutcome::Approved { scopes, requested } => {
                format!("approved {} of {requested} requested scopes: {}", scopes.len(), scopes.join(" "))
            }
            ConsentOutcome::Denied { approved_none: false } => "denied".into(),
            ConsentOutcome::Denied { approved_none: true } => "denied (no scope left checked)".into(),
            ConsentOutcome::NotAsked { remembered: true } => "not asked: the user approved these scopes for this app \
                 before (remembered consent; the user can revoke it on /account)"
                .into(),
            ConsentOutcome::NotAsked { remembered: false } => {
                "not asked: the launch skips consent (launcher option)".into()
            }
        }
    }
}

/// The summary header of a launch: what it was made with (from the launch, when the trace
/// belongs to one) — the context the app got comes from the events ([`Analysis`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchSummary {
    pub app_name: Option<String>,
    pub client_id: Option<String>,
    /// `public`, `confidential (client secret)` or `confidential (private key)`.
    pub client_type: Option<&'static str>,
    /// A public client (no credentials), when the client is known.
    pub public: Option<bool>,
    pub user: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The developer options, e.g. `skip sign-in`, `simulated error: …`.
    pub options: Vec<String>,
    /// What kind of launch this is ([`Launch::kind_label`](crate::launch::Launch::kind_label),
    /// a hand-made launch traced by the switch, or a backend-service session).
    pub kind: String,
}

/// What the inspector concludes from a launch's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The context the newest successful token response carried.
    pub context: Option<TokenContext>,
    /// The newest consent decision.
    pub consent: Option<ConsentOutcome>,
    /// Granted resource scopes no successful FHIR call used.  Empty until the app made a real
    /// (not simulated) FHIR call, and whenever a simulated error refused the app's calls: the
    /// app could not use its scopes then.
    pub unused: Vec<String>,
    /// Hints only the whole launch shows (e.g. `offline_access` never used).
    pub hints: Vec<Flag>,
}

/// Analyses a launch's events; `public` says whether the app is a public client (`None`:
/// unknown).
pub fn analyse(events: &[LaunchEvent], public: Option<bool>) -> Analysis {
    let context = events.iter().rev().find_map(|e| e.context.clone());
    let consent = events.iter().rev().find_map(|e| e.consent.clone());
    // Events recorded before issue 9 carry the granted scope as a detail only.
    let granted = context.as_ref().map(|c| c.scope.clone()).or_else(|| {
        events
            .iter()
            .rev()
            .filter(|e| e.step == Step::Token)
            .find_map(|e| e.details.iter().find(|(k, _)| k == "granted scope").map(|(_, v)| v.clone()))
    });
    let real_calls = events.iter().any(|e| e.step == Step::Fhir && !e.simulated);
    let simulated_calls = events.iter().any(|e| e.step == Step::Fhir && e.simulated);
    let unused = match &granted {
        Some(g) if real_calls && !simulated_calls => unused_scopes(g, events),
        _ => Vec::new(),
    };
    let mut hints = Vec::new();
    let offline =
        granted.as_deref().is_some_and(|g| g.split(' ').any(|s| matches!(s.parse(), Ok(Scope::OfflineAccess))));
    let refreshed = events.iter().any(|e| e.step == Step::Refresh);
    if public == Some(true) && offline && real_calls && !refreshed {
        hints.push(Flag::offline_never_refreshed());
    }
    Analysis { context, consent, unused, hints }
}

/// Completes each authorize answer that stopped at a page with the consent decision that
/// followed it (before the next authorize request), so no row still reads as waiting for
/// consent once the user decided.
pub fn settle_outcomes(events: &mut [LaunchEvent]) {
    let mut last_authorize = None;
    for i in 0..events.len() {
        match events[i].step {
            Step::Authorize => last_authorize = Some(i),
            Step::Consent => {
                // A page's decision settles the authorize answer that showed the page; a
                // consent not asked follows the answer it belongs to and settles nothing.
                let decided = events[i].consent.as_ref().filter(|d| !matches!(d, ConsentOutcome::NotAsked { .. }));
                if let (Some(a), Some(decision)) = (last_authorize.take(), decided) {
                    let then = format!(" → then {} (see Consent below)", decision.describe());
                    events[a].outcome.push_str(&then);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{FhirCall, FlagKind};

    fn token(scope: &str) -> LaunchEvent {
        let context = TokenContext { scope: scope.into(), refresh_token: true, ..Default::default() };
        LaunchEvent { context: Some(context), ..LaunchEvent::new(Step::Token, "POST /auth/token", "200", 1) }
    }

    /// A call `GET Patient/p1` answered with `status`.
    fn call(status: u16, simulated: bool) -> LaunchEvent {
        let fhir = Some(FhirCall { status, resource_type: Some("Patient".into()) });
        LaunchEvent { simulated, fhir, ..LaunchEvent::new(Step::Fhir, "GET Patient/p1", status.to_string(), 2) }
    }

    #[test]
    fn simulated_refusals_never_blame_the_app_for_unused_scopes() {
        let scope = "openid patient/Patient.rs patient/Observation.rs";
        // Every call refused by a simulated fhir_expired_token: no "never used" list.
        let events = [token(scope), call(401, true)];
        assert!(analyse(&events, Some(true)).unused.is_empty());
        // Before any real call, nothing either.
        assert!(analyse(&[token(scope)], Some(true)).unused.is_empty());
        // Real calls: the untouched scope is named.
        let events = [token(scope), call(200, false)];
        assert_eq!(analyse(&events, Some(true)).unused, ["patient/Observation.rs"]);
    }

    #[test]
    fn offline_access_never_refreshed_by_a_public_app_is_a_hint() {
        let scope = "patient/Patient.rs offline_access";
        let events = [token(scope), call(200, false)];
        let hints = analyse(&events, Some(true)).hints;
        assert_eq!(hints.iter().map(|h| h.kind).collect::<Vec<_>>(), [FlagKind::OfflineNeverRefreshed]);
        assert!(hints[0].fix.contains("online_access"));
        assert!(analyse(&events, Some(false)).hints.is_empty(), "a confidential app may keep it on its server");
        assert!(analyse(&events[..1], Some(true)).hints.is_empty(), "not before the app made FHIR calls");
        let refreshed = [events[0].clone(), events[1].clone(), LaunchEvent::new(Step::Refresh, "POST", "200", 3)];
        assert!(analyse(&refreshed, Some(true)).hints.is_empty());
    }

    #[test]
    fn an_authorize_answer_is_settled_by_the_consent_decision_that_followed() {
        let mut events = [
            LaunchEvent::new(Step::Authorize, "GET", "the consent page", 1),
            LaunchEvent {
                consent: Some(ConsentOutcome::Denied { approved_none: false }),
                ..LaunchEvent::new(Step::Consent, "POST", "denied: redirect", 2)
            },
            LaunchEvent::new(Step::Authorize, "GET", "the sign-in page", 3),
        ];
        settle_outcomes(&mut events);
        assert_eq!(events[0].outcome, "the consent page → then denied (see Consent below)");
        assert_eq!(events[2].outcome, "the sign-in page", "no decision followed it");
        let mut remembered = [
            LaunchEvent::new(Step::Authorize, "GET", "redirect to the app with a code", 1),
            LaunchEvent {
                consent: Some(ConsentOutcome::NotAsked { remembered: true }),
                ..LaunchEvent::new(Step::Consent, "(no consent page)", "not asked", 1)
            },
        ];
        settle_outcomes(&mut remembered);
        assert_eq!(remembered[0].outcome, "redirect to the app with a code", "nothing to settle");
        assert!(analyse(&remembered, None).consent.is_some_and(|c| c.describe().contains("remembered consent")));
    }

    #[test]
    fn the_consent_outcome_and_the_token_context_are_the_newest() {
        let denied = LaunchEvent {
            consent: Some(ConsentOutcome::Denied { approved_none: false }),
            ..LaunchEvent::new(Step::Consent, "POST", "", 1)
        };
        let a = analyse(&[denied], None);
        assert_eq!(a.consent.as_ref().map(ConsentOutcome::describe).as_deref(), Some("denied"));
        assert!(a.context.is_none());
        let subset = ConsentOutcome::Approved { scopes: vec!["openid".into()], requested: 3 };
        assert_eq!(subset.describe(), "approved 1 of 3 requested scopes: openid");
        let a = analyse(&[token("openid")], None);
        assert!(a.context.is_some_and(|c| c.refresh_token && !c.id_token));
    }
}
