//! The token endpoint's request and response shapes (spec digest §1.5–1.7).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

use crate::error::TokenError;
use crate::launch::LaunchContext;

/// A parsed `application/x-www-form-urlencoded` token request (checklist item 41).  Unknown
/// parameters (the Python client sends `state`) are ignored.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `private_key_jwt` (RFC 7523 §2.2).
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    /// The request came from a browser (it has an `Origin` header): not a form parameter.
    pub from_browser: bool,
}

impl TokenRequest {
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Result<TokenRequest, TokenError> {
        let mut req = TokenRequest::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "grant_type" => &mut req.grant_type,
                "code" => &mut req.code,
                "redirect_uri" => &mut req.redirect_uri,
                "code_verifier" => &mut req.code_verifier,
                "refresh_token" => &mut req.refresh_token,
                "scope" => &mut req.scope,
                "client_id" => &mut req.client_id,
                "client_secret" => &mut req.client_secret,
                "client_assertion_type" => &mut req.client_assertion_type,
                "client_assertion" => &mut req.client_assertion,
                _ => continue,
            };
            if slot.is_some() {
                return Err(TokenError::InvalidRequest(format!("the parameter `{k}` was sent more than once")));
            }
            *slot = Some(v);
        }
        Ok(req)
    }
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1: both parts form-urlencoded, then base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl BasicCredentials {
    /// Parses the value of an `Authorization` header.  `Ok(None)` for other schemes.
    pub fn from_authorization(value: &str) -> Result<Option<BasicCredentials>, TokenError> {
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(None);
        }
        let bad = || {
            TokenError::InvalidClient(
                "the Basic Authorization header is not base64 of `client_id:client_secret`".into(),
            )
        };
        let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
        let unescape = |s: &str| -> Result<String, TokenError> {
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(format!("v={s}").as_bytes()).into_owned().collect();
            pairs.into_iter().next().map(|(_, v)| v).ok_or_else(bad)
        };
        Ok(Some(BasicCredentials { client_id: unescape(id)?, client_secret: unescape(secret)? }))
    }
}

/// A successful token response (checklist items 59–63, 73).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// `fhirContext`, `intent`, `tenant`, `need_patient_banner`, `smart_style_url`.
    #[serde(flatten)]
    pub context: LaunchContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let v = format!("Basic {}", STANDARD.encode("my%20app:s%3Acret"));
        let c = BasicCredentials::from_authorization(&v).unwrap().unwrap();
        assert_eq!(c.client_id, "my app");
        assert_eq!(c.client_secret, "s:cret");
        assert_eq!(BasicCredentials::from_authorization("Bearer x").unwrap(), None);
        assert!(BasicCredentials::from_authorization("Basic !!!").is_err());
    }

    #[test]
    fn repeated_parameters_are_invalid() {
        let pairs = vec![("code".to_string(), "a".to_string()), ("code".to_string(), "b".to_string())];
        assert!(matches!(TokenRequest::from_pairs(pairs), Err(TokenError::InvalidRequest(_))));
    }
}
