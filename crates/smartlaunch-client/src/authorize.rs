//! The authorization request (SMART 2.2 §"Obtain authorization code") and its callback:
//! what the app sends the browser to, what it keeps until the browser comes back, and the
//! checks on the way back (`state`, RFC 9207 `iss`, RFC 6749 §4.1.2.1 errors).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use crate::discovery::SmartConfiguration;
use crate::error::{OAuthError, OAuthErrorCode};
use crate::pkce::{random_token, Pkce};
use crate::Error;

/// What the app keeps, bound to the user's browser session, between sending the browser to
/// `authorize` and the callback.  Small enough for a cookie (no capability list, no tokens).
/// Its `Debug` leaves out the state, verifier and nonce.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// 256 random bits; the callback must carry the same value.
    pub state: String,
    pub code_verifier: String,
    /// Sent when `openid` is asked for; the id_token must carry it back.
    pub nonce: Option<String>,
    /// The FHIR base (`iss` of the launch, `aud` of the request).
    pub fhir_base: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scope: String,
    pub token_endpoint: String,
    /// The OpenID issuer and its key set, when the server announced them (id_token checks).
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    /// When the authorization began (Unix seconds); stores refuse old ones.
    pub created_at: u64,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("fhir_base", &self.fhir_base)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The parameters of one authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    /// The normalized FHIR base, sent as `aud`.
    pub fhir_base: &'a str,
    /// The opaque `launch` of an EHR launch; `None` for a standalone launch.
    pub launch: Option<&'a str>,
}

/// Whether a scope string asks for `openid`.
fn asks_openid(scope: &str) -> bool {
    scope.split(' ').any(|s| s == "openid")
}

impl AuthorizationRequest<'_> {
    /// The URL to send the browser to, and what to keep until it comes back.
    pub fn build(&self, config: &SmartConfiguration, now: u64) -> Result<(Url, PendingAuthorization), Error> {
        let endpoint = config.authorization_endpoint_for_launch()?;
        let mut url = Url::parse(endpoint).map_err(|e| Error::BadUrl {
            what: "authorization_endpoint",
            url: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
        let pkce = Pkce::generate()?;
        let state = random_token(32)?;
        let nonce = if asks_openid(self.scope) { Some(random_token(32)?) } else { None };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri);
            if let Some(launch) = self.launch {
                q.append_pair("launch", launch);
            }
            q.append_pair("scope", self.scope)
                .append_pair("state", &state)
                .append_pair("aud", self.fhir_base)
                .append_pair("code_challenge", &pkce.challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(nonce) = &nonce {
                q.append_pair("nonce", nonce);
            }
        }
        let pending = PendingAuthorization {
            state,
            code_verifier: pkce.verifier,
            nonce,
            fhir_base: self.fhir_base.to_owned(),
            client_id: self.client_id.to_owned(),
            redirect_uri: self.redirect_uri.to_owned(),
            scope: self.scope.to_owned(),
            token_endpoint: config.token_endpoint.clone(),
            issuer: config.issuer.clone(),
            jwks_uri: config.jwks_uri.clone(),
            created_at: now,
        };
        Ok((url, pending))
    }
}

/// Whether two secrets are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl PendingAuthorization {
    /// Reads the callback's query (the part after `?` of the redirect_uri the browser came
    /// back to) and returns the authorization code.
    ///
    /// The `state` is checked first, so a forged callback is reported as one even when it
    /// carries an error; then RFC 9207's `iss` when present; then the RFC 6749 error.
    pub fn accept_callback(&self, query: &str) -> Result<String, Error> {
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut description = None;
        let mut error_uri = None;
        let mut iss = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                "error_uri" => &mut error_uri,
                "iss" => &mut iss,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Error::BadCallback("a parameter appears twice"));
            }
        }
        match &state {
            None => return Err(Error::StateMismatch("the callback carries no state")),
            Some(s) if !same_secret(s, &self.state) => {
                return Err(Error::StateMismatch("the callback's state is not this browser's"))
            }
            Some(_) => {}
        }
        match (&iss, &self.issuer) {
            (Some(iss), Some(expected)) if crate::issuer::normalize(iss) == crate::issuer::normalize(expected) => {}
            (Some(_), _) => {
                // RFC 9207 §2.4: an `iss` that is not the issuer this authorization was sent to
                // (or one the server never announced) is a mix-up.
                return Err(Error::BadCallback("the callback's iss names another authorization server (RFC 9207)"));
            }
            (None, _) => {}
        }
        if let Some(error) = error {
            return Err(Error::OAuth(OAuthError { code: OAuthErrorCode::parse(&error), description, uri: error_uri }));
        }
        code.filter(|c| !c.is_empty()).ok_or(Error::BadCallback("it has neither a code nor an error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> SmartConfiguration {
        SmartConfiguration::from_well_known(
            br#"{"issuer":"https://ehr.example","authorization_endpoint":"https://ehr.example/authorize?tenant=1",
                "token_endpoint":"https://ehr.example/token","capabilities":["launch-ehr"],
                "code_challenge_methods_supported":["S256"]}"#,
        )
        .unwrap()
    }

    fn request<'a>(scope: &'a str, launch: Option<&'a str>) -> AuthorizationRequest<'a> {
        AuthorizationRequest {
            client_id: "app",
            redirect_uri: "https://app.example/callback",
            scope,
            fhir_base: "https://ehr.example/fhir",
            launch,
        }
    }

    #[test]
    fn the_url_carries_aud_pkce_s256_a_256_bit_state_and_the_launch() {
        let (url, pending) = request("launch openid fhirUser patient/*.rs", Some("L1")).build(&config(), 7).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "1", "the endpoint's own query is kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["aud"], "https://ehr.example/fhir");
        assert_eq!(q["launch"], "L1");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], crate::pkce::challenge_of(&pending.code_verifier));
        assert_eq!(q["state"], pending.state);
        assert!(pending.state.len() >= 43, "at least 256 bits, base64url");
        assert_eq!(q.get("nonce"), pending.nonce.as_ref());
        assert!(pending.nonce.is_some());
        assert_eq!(pending.created_at, 7);
        let (_, standalone) = request("patient/*.rs", None).build(&config(), 7).unwrap();
        assert!(standalone.nonce.is_none(), "no nonce without openid");
        assert_ne!(standalone.state, pending.state);
    }

    #[test]
    fn a_callback_with_another_state_or_none_is_refused_even_with_an_error() {
        let (_, p) = request("patient/*.rs", None).build(&config(), 0).unwrap();
        assert_eq!(p.accept_callback(&format!("code=abc&state={}", p.state)).unwrap(), "abc");
        for q in ["code=abc&state=other", "code=abc", "error=access_denied&state=x"] {
            assert!(matches!(p.accept_callback(q), Err(Error::StateMismatch(_))), "{q}");
        }
        let twice = format!("code=a&code=b&state={}", p.state);
        assert!(matches!(p.accept_callback(&twice), Err(Error::BadCallback(_))));
    }

    #[test]
    fn every_rfc_6749_authorization_error_becomes_a_typed_error() {
        let (_, p) = request("patient/*.rs", None).build(&config(), 0).unwrap();
        let q = format!("error=access_denied&error_description=The+user+said+no&state={}", p.state);
        match p.accept_callback(&q) {
            Err(Error::OAuth(e)) => {
                assert_eq!(e.code, OAuthErrorCode::AccessDenied);
                assert_eq!(e.description.as_deref(), Some("The user said no"));
            }
            other => panic!("{other:?}"),
        }
        let q = format!("error=invalid_scope&state={}", p.state);
        assert!(matches!(
            p.accept_callback(&q),
            Err(Error::OAuth(OAuthError { code: OAuthErrorCode::InvalidScope, .. }))
        ));
        assert!(matches!(p.accept_callback(&format!("state={}", p.state)), Err(Error::BadCallback(_))));
    }

    #[test]
    fn a_callback_naming_another_issuer_is_refused() {
        let (_, p) = request("patient/*.rs", None).build(&config(), 0).unwrap();
        let q = format!("code=abc&state={}&iss=https%3A%2F%2Fevil.example", p.state);
        assert!(matches!(p.accept_callback(&q), Err(Error::BadCallback(_))));
        let q = format!("code=abc&state={}&iss=https%3A%2F%2Fehr.example", p.state);
        assert_eq!(p.accept_callback(&q).unwrap(), "abc");
        // A server that announced no issuer cannot be told apart from another: an iss in its
        // callback is refused (RFC 9207 §2.4).
        let mut unannounced = p.clone();
        unannounced.issuer = None;
        assert!(matches!(unannounced.accept_callback(&q), Err(Error::BadCallback(_))));
        assert_eq!(unannounced.accept_callback(&format!("code=abc&state={}", p.state)).unwrap(), "abc");
    }
}
