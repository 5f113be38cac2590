//! The token endpoint's side of a launch: the forms the app posts (RFC 6749 §4.1.3, §6; SMART
//! 2.2 §"Backend services") and the typed token response with its launch context (SMART 2.2
//! §"Launch context arrives with your access_token").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smart_scopes::ScopeSet;

use crate::Error;

/// One `fhirContext` item (SMART 2.2 §"fhirContext").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FhirContextItem {
    /// A relative reference such as `Observation/123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A successful token response (RFC 6749 §5.1 plus SMART's context parameters).  Its `Debug`
/// shows the context, not the tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The patient in context (`launch/patient`, or the EHR's chart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, rename = "fhirContext", skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<FhirContextItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether the app must show its own patient banner (the EHR shows none around it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    /// Every other parameter, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .field("patient", &self.patient)
            .field("encounter", &self.encounter)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("id_token", &self.id_token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    /// Parses a 200 body of the token endpoint and checks what SMART relies on.
    pub fn parse(body: &[u8]) -> Result<TokenResponse, Error> {
        let t: TokenResponse =
            serde_json::from_slice(body).map_err(|e| Error::BadTokenResponse(format!("not a token response: {e}")))?;
        if !t.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::BadTokenResponse(format!("token_type is {:?}, not Bearer", t.token_type)));
        }
        if t.access_token.is_empty() {
            return Err(Error::BadTokenResponse("the access_token is empty".into()));
        }
        Ok(t)
    }

    /// The scopes granted: the response's `scope`, or the ones asked for when it has none
    /// (RFC 6749 §5.1: omitted means "as requested").
    pub fn granted_scopes(&self, requested: &str) -> Result<ScopeSet, Error> {
        let raw = self.scope.as_deref().unwrap_or(requested);
        ScopeSet::parse(raw).map_err(|e| Error::BadTokenResponse(format!("the granted scope does not parse: {e}")))
    }

    /// Whether the app must draw its own patient banner.  Only an explicit `false` lets it
    /// leave the banner out (SMART 2.2: "may not be required"); absent — a standalone launch,
    /// where no EHR shows whose record this is — means it draws one.
    pub fn needs_patient_banner(&self) -> bool {
        self.need_patient_banner.unwrap_or(true)
    }
}

/// The form of an authorization-code exchange (RFC 6749 §4.1.3 with RFC 7636's verifier).
pub fn code_exchange_form(code: &str, redirect_uri: &str, code_verifier: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.into()),
        ("redirect_uri", redirect_uri.into()),
        ("code_verifier", code_verifier.into()),
    ]
}

/// The form of a refresh (RFC 6749 §6).
pub fn refresh_form(refresh_token: &str) -> Vec<(&'static str, String)> {
    vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh_token.into())]
}

/// The form of a backend-services token request (SMART 2.2 §"Backend services"), without the
/// client assertion, which client authentication adds.
pub fn client_credentials_form(scope: &str) -> Vec<(&'static str, String)> {
    vec![("grant_type", "client_credentials".into()), ("scope", scope.into())]
}

/// `client_assertion_type` of `private_key_jwt` (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims of a client assertion (SMART 2.2 §"Asymmetric authentication"): issued by and
/// about the client, for the token endpoint, expiring within five minutes, with a fresh `jti`.
pub fn client_assertion_claims(client_id: &str, token_endpoint: &str, now: u64, jti: &str) -> Value {
    serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": now,
        "exp": now + 240,
        "jti": jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smart_scopes::{Interaction, Scope};

    #[test]
    fn the_launch_context_is_typed() {
        let t = TokenResponse::parse(
            br#"{"access_token":"at","token_type":"bearer","expires_in":3600,"scope":"launch patient/Observation.rs openid",
                "patient":"p1","encounter":"e1","fhirContext":[{"reference":"Observation/o1","role":"x"},{"type":"Task","canonical":"http://c"}],
                "intent":"reconcile","tenant":"t","need_patient_banner":true,"smart_style_url":"https://ehr/style.json","custom":1}"#,
        )
        .unwrap();
        assert_eq!(t.patient.as_deref(), Some("p1"));
        assert_eq!(t.fhir_context[0].reference.as_deref(), Some("Observation/o1"));
        assert_eq!(t.fhir_context[1].resource_type.as_deref(), Some("Task"));
        assert!(t.needs_patient_banner());
        assert_eq!(t.extra["custom"], 1);
        let scopes = t.granted_scopes("ignored").unwrap();
        assert!(scopes.contains(&Scope::OpenId));
        assert_eq!(scopes.grants("Observation", Interaction::Read).count(), 1);
        assert_eq!(scopes.grants("Condition", Interaction::Read).count(), 0);
    }

    #[test]
    fn an_omitted_scope_means_as_requested_and_an_omitted_banner_flag_means_draw_one() {
        let t = TokenResponse::parse(br#"{"access_token":"at","token_type":"Bearer"}"#).unwrap();
        assert!(t.granted_scopes("patient/Patient.rs").unwrap().contains(&"patient/Patient.rs".parse().unwrap()));
        assert!(t.needs_patient_banner());
        let framed =
            TokenResponse::parse(br#"{"access_token":"at","token_type":"Bearer","need_patient_banner":false}"#)
                .unwrap();
        assert!(!framed.needs_patient_banner());
    }

    #[test]
    fn a_response_that_is_not_a_bearer_token_is_refused() {
        assert!(TokenResponse::parse(br#"{"access_token":"at","token_type":"mac"}"#).is_err());
        assert!(TokenResponse::parse(br#"{"access_token":"","token_type":"Bearer"}"#).is_err());
        assert!(TokenResponse::parse(br#"{"token_type":"Bearer"}"#).is_err());
    }

    #[test]
    fn a_client_assertion_expires_within_five_minutes() {
        let c = client_assertion_claims("app", "https://ehr/token", 1000, "j");
        assert_eq!(c["iss"], "app");
        assert_eq!(c["sub"], "app");
        assert_eq!(c["aud"], "https://ehr/token");
        assert!(c["exp"].as_u64().unwrap() - 1000 <= 300);
    }
}
