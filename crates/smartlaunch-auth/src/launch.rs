//! EHR launch contexts (spec digest §1.3–1.4; checklist items 19, 20, 26, 63, 66): the EHR
//! creates a launch server-side, bound to one client, and opens the app's launch URL with an
//! opaque `launch` id; the app's authorization request names that id and receives the context.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::UnixTime;

/// The launch-context parameters beyond `patient` and `encounter` that a token response
/// carries (checklist item 63).  Empty for a standalone launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchContext {
    #[serde(rename = "fhirContext", default, skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<FhirContextItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
}

impl LaunchContext {
    pub fn is_empty(&self) -> bool {
        *self == LaunchContext::default()
    }
}

/// One `fhirContext` item in the 2.2 object form (scopes:557-597).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirContextItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<serde_json::Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl FhirContextItem {
    /// The rules of scopes:557-597: at least one of `reference`, `canonical`, `identifier`
    /// (SHALL); `role` never empty (SHALL NOT); no Patient or Encounter with the `launch` role
    /// — those travel as `patient` and `encounter` (checklist item 66).
    pub fn check(&self) -> Result<(), String> {
        if self.reference.is_none() && self.canonical.is_none() && self.identifier.is_none() {
            return Err("each fhirContext item needs a reference, canonical or identifier".into());
        }
        if self.role.as_deref() == Some("") {
            return Err("a fhirContext role may be omitted but must not be empty".into());
        }
        if let Some(reference) = &self.reference {
            let Some((ty, id)) = reference.split_once('/') else {
                return Err(format!("fhirContext reference “{reference}” is not Type/id"));
            };
            if ty.is_empty() || id.is_empty() || id.contains('/') {
                return Err(format!("fhirContext reference “{reference}” is not Type/id"));
            }
            let launch_role = self.role.as_deref().is_none_or(|r| r == "launch");
            if launch_role && (ty == "Patient" || ty == "Encounter") {
                return Err(format!(
                    "{ty} goes in `{}`, not in fhirContext (unless it has a role other than launch)",
                    ty.to_lowercase()
                ));
            }
        }
        Ok(())
    }
}

/// A failure the developer launcher makes happen at the step it names, so an app's error
/// handling can be tested (the app sees exactly what a real failure at that step looks like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimulatedError {
    /// Authorize: the client is treated as unknown (an error page; nothing reaches the app).
    AuthorizeInvalidClient,
    /// Authorize: the redirect_uri is treated as unregistered (an error page).
    AuthorizeInvalidRedirectUri,
    /// Authorize: `error=invalid_scope` back to the app.
    AuthorizeInvalidScope,
    /// Token: `401 invalid_client`, as for a wrong client secret.
    TokenInvalidClientSecret,
    /// Token: `invalid_grant` for the code.
    TokenInvalidCode,
    /// Token: `invalid_scope`.
    TokenInvalidScope,
    /// Token: the code works; the first refresh gets `invalid_grant` (expired).
    TokenExpiredRefreshToken,
    /// FHIR API: `401` — the access token is not valid.
    FhirInvalidToken,
    /// FHIR API: `401` — the access token has expired.
    FhirExpiredToken,
    /// Backend service: every token request gets `401 invalid_client`, as for a bad assertion.
    BackendInvalidClientAssertion,
    /// Backend service: every `client_credentials` request gets `invalid_scope`.
    BackendInvalidScope,
}

impl SimulatedError {
    pub const ALL: [SimulatedError; 11] = [
        SimulatedError::AuthorizeInvalidClient,
        SimulatedError::AuthorizeInvalidRedirectUri,
        SimulatedError::AuthorizeInvalidScope,
        SimulatedError::TokenInvalidClientSecret,
        SimulatedError::TokenInvalidCode,
        SimulatedError::TokenInvalidScope,
        SimulatedError::TokenExpiredRefreshToken,
        SimulatedError::FhirInvalidToken,
        SimulatedError::FhirExpiredToken,
        SimulatedError::BackendInvalidClientAssertion,
        SimulatedError::BackendInvalidScope,
    ];

    /// Whether the error belongs to a backend-service session (the others to app launches).
    pub fn is_backend(self) -> bool {
        matches!(self, SimulatedError::BackendInvalidClientAssertion | SimulatedError::BackendInvalidScope)
    }

    /// The snake_case name (as in the launch API).
    pub fn name(self) -> &'static str {
        match self {
            SimulatedError::AuthorizeInvalidClient => "authorize_invalid_client",
            SimulatedError::AuthorizeInvalidRedirectUri => "authorize_invalid_redirect_uri",
            SimulatedError::AuthorizeInvalidScope => "authorize_invalid_scope",
            SimulatedError::TokenInvalidClientSecret => "token_invalid_client_secret",
            SimulatedError::TokenInvalidCode => "token_invalid_code",
            SimulatedError::TokenInvalidScope => "token_invalid_scope",
            SimulatedError::TokenExpiredRefreshToken => "token_expired_refresh_token",
            SimulatedError::FhirInvalidToken => "fhir_invalid_token",
            SimulatedError::FhirExpiredToken => "fhir_expired_token",
            SimulatedError::BackendInvalidClientAssertion => "backend_invalid_client_assertion",
            SimulatedError::BackendInvalidScope => "backend_invalid_scope",
        }
    }

    /// What a developer reads in the launcher.
    pub fn label(self) -> &'static str {
        match self {
            SimulatedError::AuthorizeInvalidClient => "At authorize: invalid client",
            SimulatedError::AuthorizeInvalidRedirectUri => "At authorize: invalid redirect_uri",
            SimulatedError::AuthorizeInvalidScope => "At authorize: invalid scope",
            SimulatedError::TokenInvalidClientSecret => "At the token endpoint: invalid client secret",
            SimulatedError::TokenInvalidCode => "At the token endpoint: invalid code",
            SimulatedError::TokenInvalidScope => "At the token endpoint: invalid scope",
            SimulatedError::TokenExpiredRefreshToken => "At the token endpoint: expired refresh token",
            SimulatedError::FhirInvalidToken => "At the FHIR API: invalid access token",
            SimulatedError::FhirExpiredToken => "At the FHIR API: expired access token",
            SimulatedError::BackendInvalidClientAssertion => "At the token endpoint: invalid client assertion",
            SimulatedError::BackendInvalidScope => "At the token endpoint: invalid scope (client_credentials)",
        }
    }

    pub fn from_name(name: &str) -> Option<SimulatedError> {
        SimulatedError::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// Developer options of a launch (the launcher and the launch API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchOptions {
    /// Approve the requested scopes without showing the consent page.
    #[serde(default)]
    pub skip_consent: bool,
    /// The launch vouches for its user: no sign-in, in any browser.  Only an authorized
    /// caller (the admin token, or an open sandbox) may ask for it.
    #[serde(default)]
    pub skip_sign_in: bool,
    /// A failure to make happen at the step it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate_error: Option<SimulatedError>,
    /// Show the consent page even when the user's remembered consent covers the request (as
    /// OpenID Connect `prompt=consent` does); what the user allows is remembered all the same.
    #[serde(default)]
    pub always_ask_consent: bool,
}

impl LaunchOptions {
    /// Options that contradict each other: "skip consent" never shows the page that "always
    /// ask for consent" forces.
    pub fn check(&self) -> Result<(), String> {
        if self.skip_consent && self.always_ask_consent {
            return Err("“skip consent” and “always ask for consent” contradict each other: choose one (skip consent approves without the page; always ask shows it even when the user's consent is remembered)".into());
        }
        Ok(())
    }
}

/// A backend-service session of the developer launcher: the launch inspector records every
/// token request of its client under `trace_id`, and `simulate_error` (a backend one) happens
/// at each.  A client has at most one; a new one replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSession {
    pub client_id: String,
    pub trace_id: String,
    pub simulate_error: Option<SimulatedError>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl BackendSession {
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.expires_at > now
    }
}

/// A launch as stored: what the EHR put in context, for which client and user.  The launch id
/// itself is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub id_hash: String,
    pub client_id: String,
    /// The user the EHR vouches for; `None`: the user signs in at authorize.
    pub user_id: Option<String>,
    /// The EHR session that launched (its `online_access` tokens end with it).
    pub session_id: Option<String>,
    pub patient: Option<String>,
    /// Without a `patient`: the patients the picker offers (empty: any).
    #[serde(default)]
    pub patient_choices: Vec<String>,
    pub encounter: Option<String>,
    pub context: LaunchContext,
    #[serde(default)]
    pub options: LaunchOptions,
    /// A developer-launcher standalone simulation: reached through its own FHIR base
    /// (`/sim/{id}/fhir`) rather than a `launch` parameter, and usable until it expires.
    #[serde(default)]
    pub standalone: bool,
    /// The launch inspector's key for this launch's requests.
    #[serde(default)]
    pub trace_id: String,
    /// How often the `launch` id may be used (an EHR launch).
    #[serde(default)]
    pub reuse: LaunchUse,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// How often an EHR launch's `launch` id may be used (issue 9, "reusable launches").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchUse {
    /// Once, within [`LAUNCH_LIFETIME`](crate::service::LAUNCH_LIFETIME): what a real EHR does.
    #[default]
    SingleUse,
    /// Any number of times until it expires: the developer launcher's edit-and-reload loop.
    Reusable,
}

impl Launch {
    /// What kind of launch this is, as the launcher and the inspector name it.
    pub fn kind_label(&self) -> &'static str {
        match (self.standalone, self.reuse) {
            (true, _) => "standalone (simulation)",
            (false, LaunchUse::SingleUse) => "EHR launch, single use",
            (false, LaunchUse::Reusable) => "EHR launch, reusable (dev)",
        }
    }
}

/// Why a `launch` parameter was refused (checklist item 26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchRefused {
    Unknown,
    Expired,
    Used,
    /// The launch was made for another client: its `client_id`, so the app's developer sees
    /// which registration the EHR (or the launcher) launched.
    OtherClient(String),
    OtherUser,
}

impl LaunchRefused {
    pub fn describe(&self) -> String {
        match self {
            LaunchRefused::Unknown => {
                "the launch parameter names no launch of this EHR; open the app from the EHR again".into()
            }
            LaunchRefused::Expired => {
                "the launch has expired (launches live 5 minutes); open the app from the EHR again".into()
            }
            LaunchRefused::Used => {
                "the launch was already used (each launch authorizes once); open the app from the EHR again, \
                 or make a reusable launch in the developer launcher"
                    .into()
            }
            LaunchRefused::OtherClient(launched) => format!(
                "the launch was made for the client_id “{launched}”, not for the client_id of this request: \
                 configure the app with that client_id, or launch the app registered under this one"
            ),
            LaunchRefused::OtherUser => {
                "the launch belongs to another user's EHR session; sign out here or open the app from your own EHR session".into()
            }
        }
    }
}

impl Launch {
    /// Why an authorization request of `client_id` may not use this EHR launch (checklist item
    /// 26): it must be live, for this client, unused unless it is [`LaunchUse::Reusable`], and —
    /// when the browser is signed in — for that user.  `used_at`: when it was first used.
    pub fn refusal(
        &self,
        used_at: Option<UnixTime>,
        client_id: &str,
        browser_user: Option<&str>,
        now: UnixTime,
    ) -> Option<LaunchRefused> {
        if self.standalone {
            Some(LaunchRefused::Unknown)
        } else if self.client_id != client_id {
            Some(LaunchRefused::OtherClient(self.client_id.clone()))
        } else if used_at.is_some() && self.reuse == LaunchUse::SingleUse {
            Some(LaunchRefused::Used)
        } else if self.expires_at <= now {
            Some(LaunchRefused::Expired)
        } else if matches!((browser_user, &self.user_id), (Some(b), Some(l)) if b != l) {
            Some(LaunchRefused::OtherUser)
        } else {
            None
        }
    }
}

/// The app's launch URL with `iss` added: a standalone launch at that FHIR base.
pub fn standalone_url(initiate_login_uri: &str, iss: &str) -> Option<String> {
    let mut url = Url::parse(initiate_login_uri).ok()?;
    url.query_pairs_mut().append_pair("iss", iss);
    Some(url.into())
}

/// The app's launch URL with `iss` and `launch` added (checklist item 19).
pub fn launch_url(initiate_login_uri: &str, iss: &str, launch_id: &str) -> Option<String> {
    let mut url = Url::parse(initiate_login_uri).ok()?;
    url.query_pairs_mut().append_pair("iss", iss).append_pair("launch", launch_id);
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(reference: &str, role: Option<&str>) -> FhirContextItem {
        FhirContextItem { reference: Some(reference.into()), role: role.map(Into::into), ..Default::default() }
    }

    #[test]
    fn fhir_context_items_follow_the_2_2_rules() {
        assert!(item("Questionnaire/q1", None).check().is_ok());
        assert!(item("Patient/p1", None).check().is_err(), "item 66");
        assert!(item("Encounter/e1", Some("launch")).check().is_err());
        assert!(item("Patient/p2", Some("https://example.org/role/sibling")).check().is_ok());
        assert!(item("Questionnaire/q1", Some("")).check().is_err());
        assert!(item("nonsense", None).check().is_err());
        assert!(FhirContextItem::default().check().is_err());
        let canonical =
            FhirContextItem { canonical: Some("http://x.org/Questionnaire/q|1".into()), ..Default::default() };
        assert!(canonical.check().is_ok());
    }

    fn ehr_launch(reuse: LaunchUse) -> Launch {
        Launch {
            id_hash: "h".into(),
            client_id: "my_web_app".into(),
            user_id: Some("u1".into()),
            session_id: None,
            patient: Some("pat-001".into()),
            patient_choices: vec![],
            encounter: None,
            context: LaunchContext::default(),
            options: LaunchOptions::default(),
            standalone: false,
            trace_id: "t".into(),
            reuse,
            created_at: 0,
            expires_at: 600,
        }
    }

    #[test]
    fn a_reusable_launch_is_used_again_until_it_expires_but_stays_bound() {
        let reusable = ehr_launch(LaunchUse::Reusable);
        assert_eq!(reusable.refusal(None, "my_web_app", Some("u1"), 10), None);
        assert_eq!(reusable.refusal(Some(10), "my_web_app", Some("u1"), 20), None, "used again");
        assert_eq!(reusable.refusal(Some(10), "my_web_app", None, 599), None);
        assert_eq!(reusable.refusal(Some(10), "my_web_app", None, 600), Some(LaunchRefused::Expired));
        assert_eq!(
            reusable.refusal(Some(10), "other_app", Some("u1"), 20),
            Some(LaunchRefused::OtherClient("my_web_app".into()))
        );
        assert_eq!(reusable.refusal(Some(10), "my_web_app", Some("u2"), 20), Some(LaunchRefused::OtherUser));
        let standalone = Launch { standalone: true, ..reusable };
        assert_eq!(standalone.refusal(None, "my_web_app", None, 20), Some(LaunchRefused::Unknown));
    }

    #[test]
    fn a_single_use_launch_is_refused_once_used() {
        let once = ehr_launch(LaunchUse::SingleUse);
        assert_eq!(once.refusal(None, "my_web_app", Some("u1"), 10), None);
        assert_eq!(once.refusal(Some(10), "my_web_app", Some("u1"), 20), Some(LaunchRefused::Used));
        assert_eq!(once.refusal(None, "my_web_app", None, 600), Some(LaunchRefused::Expired));
    }

    #[test]
    fn another_clients_refusal_names_the_launchs_client() {
        let text = LaunchRefused::OtherClient("my_web_app".into()).describe();
        assert!(text.contains("“my_web_app”"), "{text}");
    }

    #[test]
    fn simulated_errors_have_stable_names() {
        for e in SimulatedError::ALL {
            assert_eq!(SimulatedError::from_name(e.name()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.name());
        }
        assert_eq!(SimulatedError::from_name("nope"), None);
    }

    #[test]
    fn launch_urls_keep_the_apps_own_query() {
        assert_eq!(
            launch_url("https://app.example/launch?x=1", "http://ehr/fhir", "abc").unwrap(),
            "https://app.example/launch?x=1&iss=http%3A%2F%2Fehr%2Ffhir&launch=abc"
        );
        assert!(launch_url("not a url", "i", "l").is_none());
    }

    #[test]
    fn context_serializes_with_spec_names_and_omits_what_is_absent() {
        let c = LaunchContext {
            fhir_context: vec![item("Questionnaire/q1", None)],
            intent: Some("reconcile-medications".into()),
            need_patient_banner: Some(false),
            ..Default::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"fhirContext": [{"reference": "Questionnaire/q1"}], "intent": "reconcile-medications", "need_patient_banner": false})
        );
        assert!(LaunchContext::default().is_empty());
    }
}
