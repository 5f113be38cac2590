//! Validation of authorization requests (spec digest §1.4, checklist items 21–36) and the
//! order of the browser steps that follow.

use serde::{Deserialize, Serialize};
use smart_scopes::{Level, Scope, ScopeSet};

use crate::client::Client;
use crate::config::AuthConfig;
use crate::error::{AuthorizeError, OAuthError};
use crate::pkce;

/// The raw parameters of `GET` or `POST /auth/authorize` (checklist item 21).
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub aud: Option<String>,
    pub resource: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub launch: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    /// Parameters sent more than once (RFC 6749 §3.1: "MUST NOT be included more than once").
    pub repeated: Vec<String>,
}

impl AuthorizationRequest {
    /// Collects the known parameters from decoded query or form pairs; unknown ones are ignored.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> AuthorizationRequest {
        let mut req = AuthorizationRequest::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "response_type" => &mut req.response_type,
                "client_id" => &mut req.client_id,
                "redirect_uri" => &mut req.redirect_uri,
                "scope" => &mut req.scope,
                "state" => &mut req.state,
                "aud" => &mut req.aud,
                "resource" => &mut req.resource,
                "code_challenge" => &mut req.code_challenge,
                "code_challenge_method" => &mut req.code_challenge_method,
                "launch" => &mut req.launch,
                "nonce" => &mut req.nonce,
                "prompt" => &mut req.prompt,
                _ => continue,
            };
            if slot.is_some() {
                req.repeated.push(k);
            } else {
                *slot = Some(v);
            }
        }
        req
    }
}

/// A request that passed every check: what the browser steps will complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub code_challenge: String,
    pub aud: String,
    pub nonce: Option<String>,
    /// The requested scopes negotiated against the client's limit (checklist item 40).
    pub scope: ScopeSet,
    pub prompt: Option<Prompt>,
    /// The EHR launch id (checklist item 26), resolved by the service.
    pub launch: Option<String>,
}

/// OpenID Connect `prompt` (OIDC Core §3.1.2.1), as far as this server supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    /// Complete without any page, or fail with `login_required`, `consent_required` or
    /// `interaction_required`.
    None,
    /// Sign in again, whatever session the browser has.
    Login,
    /// Show the consent page even when a remembered consent covers the request.
    Consent,
}

const MAX_PARAM_LEN: usize = 4096;

/// Validates an authorization request against its client.  Errors about the client or the
/// redirect_uri are never redirected (checklist item 23); every other error is redirected to
/// the verified redirect_uri with `state` (RFC 6749 §4.1.2.1).
pub fn validate(
    req: &AuthorizationRequest,
    client: Option<&Client>,
    config: &AuthConfig,
) -> Result<ValidatedRequest, AuthorizeError> {
    let not_redirectable = |m: String| AuthorizeError::NotRedirectable(m);
    let client_id = req.client_id.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
        not_redirectable("The request has no client_id. The app must send the client_id it was registered with.".into())
    })?;
    let client = client.ok_or_else(|| {
        not_redirectable(format!(
            "The client_id “{}” is not registered with this server. Register the app first (RFC 7591 at /auth/register, or `smartlaunch clients add`).",
            shorten(client_id)
        ))
    })?;
    if req.repeated.iter().any(|p| p == "client_id" || p == "redirect_uri") {
        return Err(not_redirectable("client_id and redirect_uri must each be sent once.".into()));
    }
    let redirect_uri = req.redirect_uri.as_deref().ok_or_else(|| {
        not_redirectable("The request has no redirect_uri. SMART requires it; it must equal one of the app's registered redirect URIs.".into())
    })?;
    if !client.metadata.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(not_redirectable(format!(
            "The redirect_uri “{}” is not registered for this app. It must match a registered redirect URI exactly (scheme, host, port, path and query).",
            shorten(redirect_uri)
        )));
    }

    let state = req.state.clone();
    let fail = |error: &'static str, description: String| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error: OAuthError { error, error_description: description },
    };

    if let Some(p) = req.repeated.first() {
        return Err(fail("invalid_request", format!("the parameter `{p}` was sent more than once")));
    }
    for (name, value) in [
        ("state", &req.state),
        ("scope", &req.scope),
        ("nonce", &req.nonce),
        ("aud", &req.aud),
        ("launch", &req.launch),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_PARAM_LEN) {
            return Err(fail("invalid_request", format!("`{name}` is longer than {MAX_PARAM_LEN} characters")));
        }
    }
    match req.response_type.as_deref() {
        Some("code") => {}
        None | Some("") => return Err(fail("invalid_request", "response_type is required and must be `code`".into())),
        Some(other) => {
            let hint = if other.split(' ').any(|t| t == "token" || t == "id_token") {
                " The implicit and hybrid flows are insecure and not part of SMART App Launch 2: use response_type=code with PKCE."
            } else {
                ""
            };
            return Err(fail("unsupported_response_type", format!("response_type must be `code`.{hint}")));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(fail(
            "unauthorized_client",
            "this client is not registered for the authorization_code grant".into(),
        ));
    }
    let state = match req.state.as_deref() {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => {
            return Err(fail(
                "invalid_request",
                "state is required: send an unguessable value (≥ 122 bits) and check it on return".into(),
            ))
        }
    };
    let aud = match (req.aud.as_deref(), req.resource.as_deref()) {
        (Some(a), Some(r)) if a != r => {
            return Err(fail("invalid_request", "aud and resource differ; send the FHIR base URL in aud".into()))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(fail("invalid_request", format!("aud is required: the FHIR base URL {}", config.fhir_base())))
        }
    };
    if !config.is_our_audience(aud) {
        return Err(fail(
            "invalid_request",
            format!("aud “{}” is not this server's FHIR base URL; use {}", shorten(aud), config.fhir_base()),
        ));
    }
    pkce::check_challenge(req.code_challenge.as_deref(), req.code_challenge_method.as_deref())
        .map_err(|m| fail("invalid_request", m.into()))?;
    let launch = match req.launch.as_deref() {
        None => None,
        Some("") => {
            return Err(fail(
                "invalid_request",
                "launch is empty: send the launch value the EHR gave the app, or omit it for a standalone launch"
                    .into(),
            ))
        }
        Some(l) => Some(l.to_owned()),
    };
    let prompt = match req.prompt.as_deref() {
        None | Some("") => None,
        Some("none") => Some(Prompt::None),
        Some("login") => Some(Prompt::Login),
        Some("consent") => Some(Prompt::Consent),
        Some(_) => return Err(fail("invalid_request", "prompt must be `none`, `login` or `consent`".into())),
    };
    let requested = match req.scope.as_deref() {
        Some(s) if !s.trim().is_empty() => ScopeSet::parse(s).map_err(|e| fail("invalid_scope", e.to_string()))?,
        _ => {
            return Err(fail(
                "invalid_scope",
                "scope is required, e.g. `launch/patient openid fhirUser patient/*.rs`".into(),
            ))
        }
    };
    if launch.is_some() && !requested.contains(&Scope::Launch) {
        return Err(fail(
            "invalid_scope",
            "an EHR launch asks for the `launch` scope together with the launch parameter".into(),
        ));
    }
    let scope = negotiate(&requested, client, launch.is_some());
    if scope.is_empty() {
        return Err(fail(
            "invalid_scope",
            format!(
                "none of the requested scopes can be granted to this client (requested: {})",
                shorten(&requested.to_string())
            ),
        ));
    }
    Ok(ValidatedRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state,
        code_challenge: req.code_challenge.clone().unwrap_or_default(),
        aud: aud.strip_suffix('/').unwrap_or(aud).to_owned(),
        nonce: req.nonce.clone().filter(|n| !n.is_empty()),
        scope,
        prompt,
        launch,
    })
}

/// Negotiates the requested scopes: the client's registered limit applies; `launch` needs an
/// EHR launch; refresh scopes need the `refresh_token` grant.
fn negotiate(requested: &ScopeSet, client: &Client, ehr_launch: bool) -> ScopeSet {
    let may_refresh = client.allows_grant("refresh_token");
    requested.negotiate(client.allowed_scopes().as_ref()).retain(|s| match s {
        Scope::Launch => ehr_launch,
        Scope::LaunchContext { .. } => false,
        Scope::OfflineAccess | Scope::OnlineAccess => may_refresh,
        Scope::Resource(r) => r.level != Level::System,
        _ => true,
    })
}

/// Whether the grant needs a patient in context (checklist items 33–36): `launch/patient`,
/// any `patient/` scope, or `launch/encounter` (an encounter belongs to a patient).
pub fn needs_patient(scope: &ScopeSet) -> bool {
    scope.contains(&Scope::LaunchPatient) || scope.has_level(Level::Patient) || needs_encounter(scope)
}

/// Whether the request asks for an encounter in context.
pub fn needs_encounter(scope: &ScopeSet) -> bool {
    scope.contains(&Scope::LaunchEncounter)
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientMetadata, TokenEndpointAuthMethod};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn config() -> AuthConfig {
        AuthConfig::new("http://127.0.0.1:8080")
    }

    fn client(grants: &[&str], scope: Option<&str>) -> Client {
        Client {
            client_id: "app".into(),
            metadata: ClientMetadata {
                client_name: "App".into(),
                redirect_uris: vec!["http://127.0.0.1:9000/cb".into()],
                grant_types: grants.iter().map(|g| g.to_string()).collect(),
                token_endpoint_auth_method: TokenEndpointAuthMethod::None,
                scope: scope.map(str::to_owned),
                initiate_login_uri: None,
                logo_uri: None,
                jwks: None,
                jwks_uri: None,
            },
            secret_hash: None,
            registration_token_hash: None,
            created_at: 0,
        }
    }

    fn good() -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "http://127.0.0.1:9000/cb"),
            ("scope", "launch/patient openid fhirUser offline_access patient/*.rs"),
            ("state", "s123"),
            ("aud", "http://127.0.0.1:8080/fhir"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(changes: &[(&str, Option<&str>)]) -> AuthorizationRequest {
        let mut pairs = good();
        for (k, v) in changes {
            pairs.retain(|(pk, _)| pk != k);
            if let Some(v) = v {
                pairs.push((k.to_string(), v.to_string()));
            }
        }
        AuthorizationRequest::from_pairs(pairs)
    }

    fn run(req: &AuthorizationRequest) -> Result<ValidatedRequest, AuthorizeError> {
        validate(req, Some(&client(&["authorization_code", "refresh_token"], None)), &config())
    }

    fn redirected_error(r: Result<ValidatedRequest, AuthorizeError>) -> (&'static str, Option<String>) {
        match r {
            Err(AuthorizeError::Redirect { error, state, redirect_uri }) => {
                assert_eq!(redirect_uri, "http://127.0.0.1:9000/cb");
                (error.error, state)
            }
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes() {
        let v = run(&with(&[])).unwrap();
        assert_eq!(v.scope.to_string(), "launch/patient openid fhirUser offline_access patient/*.rs");
        assert_eq!(v.aud, "http://127.0.0.1:8080/fhir");
    }

    #[test]
    fn unknown_client_and_unregistered_redirect_are_never_redirected() {
        let req = with(&[]);
        assert!(matches!(validate(&req, None, &config()), Err(AuthorizeError::NotRedirectable(_))));
        for bad in
            [Some("http://127.0.0.1:9000/cb/"), Some("http://127.0.0.1:9000/CB"), Some("http://evil.example/cb"), None]
        {
            assert!(matches!(run(&with(&[("redirect_uri", bad)])), Err(AuthorizeError::NotRedirectable(_))), "{bad:?}");
        }
        assert!(matches!(run(&with(&[("client_id", None)])), Err(AuthorizeError::NotRedirectable(_))));
    }

    #[test]
    fn implicit_and_other_response_types_are_refused() {
        // checklist item 22
        assert_eq!(redirected_error(run(&with(&[("response_type", Some("token"))]))).0, "unsupported_response_type");
        assert_eq!(
            redirected_error(run(&with(&[("response_type", Some("code id_token"))]))).0,
            "unsupported_response_type"
        );
        assert_eq!(redirected_error(run(&with(&[("response_type", None)]))).0, "invalid_request");
    }

    #[test]
    fn aud_must_be_our_fhir_base() {
        // checklist items 24–25
        assert!(run(&with(&[("aud", Some("http://127.0.0.1:8080/fhir/"))])).is_ok());
        assert!(run(&with(&[("aud", None), ("resource", Some("http://127.0.0.1:8080/fhir"))])).is_ok());
        for bad in [
            "http://evil.example/fhir",
            "http://127.0.0.1:8080/fhir/other",
            "http://127.0.0.1:8080/fhir.evil.example",
            "http://127.0.0.1:8081/fhir",
        ] {
            assert_eq!(redirected_error(run(&with(&[("aud", Some(bad))]))).0, "invalid_request", "{bad}");
        }
        assert_eq!(redirected_error(run(&with(&[("aud", None)]))).0, "invalid_request");
    }

    #[test]
    fn pkce_s256_is_required() {
        // checklist items 27–28
        assert_eq!(redirected_error(run(&with(&[("code_challenge", None)]))).0, "invalid_request");
        assert_eq!(redirected_error(run(&with(&[("code_challenge_method", Some("plain"))]))).0, "invalid_request");
        assert_eq!(redirected_error(run(&with(&[("code_challenge_method", None)]))).0, "invalid_request");
    }

    #[test]
    fn state_is_echoed_on_errors() {
        // checklist item 30
        let (_, state) = redirected_error(run(&with(&[("response_type", Some("token"))])));
        assert_eq!(state.as_deref(), Some("s123"));
        assert_eq!(redirected_error(run(&with(&[("state", None)]))).0, "invalid_request");
    }

    #[test]
    fn scopes_are_parsed_and_negotiated() {
        assert_eq!(redirected_error(run(&with(&[("scope", Some("patient/Observation.sr"))]))).0, "invalid_scope");
        assert_eq!(redirected_error(run(&with(&[("scope", None)]))).0, "invalid_scope");
        assert_eq!(redirected_error(run(&with(&[("scope", Some("profile email"))]))).0, "invalid_scope");
        let limited = client(&["authorization_code"], Some("openid fhirUser launch/patient patient/Observation.rs"));
        let v = validate(&with(&[]), Some(&limited), &config()).unwrap();
        assert_eq!(
            v.scope.to_string(),
            "launch/patient openid fhirUser patient/Observation.rs",
            "no refresh grant, narrowed"
        );
    }

    #[test]
    fn repeated_parameters_and_launch_without_its_scope_are_refused() {
        let mut pairs = good();
        pairs.push(("scope".into(), "openid".into()));
        assert_eq!(redirected_error(run(&AuthorizationRequest::from_pairs(pairs))).0, "invalid_request");
        assert_eq!(redirected_error(run(&with(&[("launch", Some("xyz"))]))).0, "invalid_scope");
        assert_eq!(redirected_error(run(&with(&[("launch", Some(""))]))).0, "invalid_request");
    }

    #[test]
    fn the_launch_scope_is_kept_only_for_an_ehr_launch() {
        let ehr = run(&with(&[("launch", Some("xyz")), ("scope", Some("launch openid patient/*.rs"))])).unwrap();
        assert_eq!(ehr.launch.as_deref(), Some("xyz"));
        assert!(ehr.scope.contains(&Scope::Launch));
        let standalone = run(&with(&[("scope", Some("launch openid patient/*.rs"))])).unwrap();
        assert!(!standalone.scope.contains(&Scope::Launch), "no launch parameter: no launch scope");
    }

    #[test]
    fn patient_context_rules() {
        assert!(needs_patient(&ScopeSet::parse("launch/patient").unwrap()));
        assert!(needs_patient(&ScopeSet::parse("patient/Observation.rs").unwrap()));
        assert!(!needs_patient(&ScopeSet::parse("user/*.rs openid").unwrap()));
        assert!(needs_encounter(&ScopeSet::parse("launch/encounter").unwrap()));
    }
}
