//! Registered clients and RFC 7591 dynamic registration (spec digest §1.3, checklist 17–18).

use serde::{Deserialize, Serialize};
use smart_scopes::{Level, ScopeSet};
use url::Url;

use crate::error::RegistrationError;
use crate::jwk::{parse_key_set, MAX_JWKS_BYTES};

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client (`client-public`).
    None,
    /// HTTP Basic `client_id:client_secret` (`client-confidential-symmetric`, checklist 44).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's private key (`client-confidential-asymmetric`, RFC 7523).
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::None => "none",
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn is_confidential(self) -> bool {
        self != TokenEndpointAuthMethod::None
    }

    /// Whether the client has a secret (the symmetric methods).
    pub fn uses_secret(self) -> bool {
        matches!(self, TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost)
    }
}

/// The metadata a client registers (RFC 7591 §2), as kept and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// The most this client may be granted; `None`: anything the server supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The app's SMART launch URL, for EHR launch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiate_login_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// `private_key_jwt`: the client's public keys by value…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// …or by URL (exactly one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// A registered client.  The secret itself is never kept, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub metadata: ClientMetadata,
    pub secret_hash: Option<String>,
    /// The hash of the RFC 7592 registration access token, when the client registered itself.
    pub registration_token_hash: Option<String>,
    pub created_at: i64,
}

impl Client {
    pub fn is_confidential(&self) -> bool {
        self.metadata.token_endpoint_auth_method.is_confidential()
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant_type)
    }

    /// The registered scope limit, parsed (it was validated at registration).
    pub fn allowed_scopes(&self) -> Option<ScopeSet> {
        self.metadata.scope.as_deref().and_then(|s| ScopeSet::parse(s).ok())
    }
}

/// An RFC 7591 registration request: every field optional, unknown fields ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistrationRequest {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub scope: Option<String>,
    pub initiate_login_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    /// RFC 7592 update: the client's own id, which must match the URL's.
    pub client_id: Option<String>,
    /// RFC 7592 update: if sent, it must be the client's current secret.
    pub client_secret: Option<String>,
}

const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LEN: usize = 2000;

impl RegistrationRequest {
    /// Validates the request into the metadata to keep.
    pub fn validate(self) -> Result<ClientMetadata, RegistrationError> {
        let meta = |m: String| RegistrationError::InvalidClientMetadata(m);
        let grant_types = self.grant_types.clone().unwrap_or_else(|| vec!["authorization_code".into()]);
        if grant_types.is_empty() {
            return Err(meta("grant_types must not be empty".into()));
        }
        for g in &grant_types {
            if !matches!(g.as_str(), "authorization_code" | "refresh_token" | "client_credentials") {
                return Err(meta(format!(
                    "grant_type `{}` is not supported; use `authorization_code` (with `refresh_token`) for apps, `client_credentials` for backend services",
                    shorten(g)
                )));
            }
        }
        let has = |g: &str| grant_types.iter().any(|x| x == g);
        if !has("authorization_code") && !has("client_credentials") {
            return Err(meta("grant_types must include `authorization_code` or `client_credentials`".into()));
        }
        if has("refresh_token") && !has("authorization_code") {
            return Err(meta(
                "the `refresh_token` grant needs `authorization_code`: backend services get no refresh token".into(),
            ));
        }
        let redirect_uris = self.redirect_uris.clone().unwrap_or_default();
        if redirect_uris.is_empty() && has("authorization_code") {
            return Err(RegistrationError::InvalidRedirectUri(
                "redirect_uris is required: register at least one fixed, fully-specified redirect URI".into(),
            ));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(RegistrationError::InvalidRedirectUri(format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
        }
        for uri in &redirect_uris {
            check_app_uri(uri).map_err(|why| {
                RegistrationError::InvalidRedirectUri(format!("redirect_uri `{}`: {why}", shorten(uri)))
            })?;
        }
        let token_endpoint_auth_method = match self.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
            Some("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
            Some("private_key_jwt") => TokenEndpointAuthMethod::PrivateKeyJwt,
            Some("none") => TokenEndpointAuthMethod::None,
            Some(other) => {
                return Err(meta(format!(
                    "token_endpoint_auth_method `{}` is not supported; use `none` (public app), `private_key_jwt`, `client_secret_basic` or `client_secret_post`",
                    shorten(other)
                )))
            }
        };
        self.check_keys(token_endpoint_auth_method)?;
        if has("client_credentials") {
            // SMART Backend Services authenticate asymmetrically only (checklist item 98; the
            // symmetric profile "is not intended for SMART Backend Services clients").
            if token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt {
                return Err(meta(format!(
                    "a backend service (client_credentials) authenticates with `private_key_jwt`, not `{}`: register its public keys as jwks or jwks_uri",
                    token_endpoint_auth_method.as_str()
                )));
            }
            let set =
                self.scope.as_deref().map(ScopeSet::parse).transpose().map_err(|e| meta(format!("scope: {e}")))?;
            if !set.as_ref().is_some_and(|s| s.has_level(Level::System)) {
                return Err(meta(
                    "a backend service (client_credentials) registers the system/ scopes it may be granted in `scope`, e.g. `system/*.rs`".into(),
                ));
            }
            let other = set.as_ref().and_then(|set| set.iter().find(|s| !s.is_system()).map(|s| s.to_string()));
            if let (Some(other), false) = (other, has("authorization_code")) {
                return Err(meta(format!(
                    "scope `{other}` is not a system/ scope: a backend service acts for no user or patient"
                )));
            }
        }
        if let Some(rt) = &self.response_types {
            if rt.iter().any(|r| r != "code") {
                return Err(meta(
                    "response_types may only contain `code`: the implicit flow is not part of SMART App Launch 2"
                        .into(),
                ));
            }
        }
        if let Some(scope) = &self.scope {
            let set = ScopeSet::parse(scope).map_err(|e| meta(format!("scope: {e}")))?;
            if set.is_empty() {
                return Err(meta("scope must not be empty when given".into()));
            }
        }
        if let Some(uri) = &self.initiate_login_uri {
            check_app_uri(uri).map_err(|why| meta(format!("initiate_login_uri: {why}")))?;
        }
        if let Some(uri) = &self.logo_uri {
            let ok = Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
                && uri.len() <= MAX_URI_LEN
                && !uri.chars().any(|c| c.is_control() || is_bidi_control(c));
            if !ok {
                return Err(meta("logo_uri must be an absolute http(s) URL".into()));
            }
        }
        let client_name = self.client_name.unwrap_or_default().trim().to_owned();
        check_display_text("client_name", &client_name)?;
        if client_name.chars().count() > 200 {
            return Err(meta("client_name must be at most 200 characters".into()));
        }
        Ok(ClientMetadata {
            client_name: if client_name.is_empty() { "Unnamed app".into() } else { client_name },
            redirect_uris,
            grant_types,
            token_endpoint_auth_method,
            scope: self.scope,
            initiate_login_uri: self.initiate_login_uri,
            logo_uri: self.logo_uri,
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
        })
    }

    /// `private_key_jwt` registers exactly one of `jwks` and `jwks_uri`; other methods neither.
    fn check_keys(&self, method: TokenEndpointAuthMethod) -> Result<(), RegistrationError> {
        let meta = |m: String| RegistrationError::InvalidClientMetadata(m);
        if method != TokenEndpointAuthMethod::PrivateKeyJwt {
            if self.jwks.is_some() || self.jwks_uri.is_some() {
                return Err(meta(format!(
                    "jwks and jwks_uri are for `private_key_jwt`, but token_endpoint_auth_method is `{}`: set it to `private_key_jwt`",
                    method.as_str()
                )));
            }
            return Ok(());
        }
        match (&self.jwks, &self.jwks_uri) {
            (Some(_), Some(_)) => Err(meta("give either jwks or jwks_uri, not both".into())),
            (None, None) => Err(meta(
                "private_key_jwt needs the client's public keys: `jwks` (a JWK Set) or `jwks_uri` (where it is served)"
                    .into(),
            )),
            (Some(jwks), None) => {
                if jwks.to_string().len() > MAX_JWKS_BYTES {
                    return Err(meta(format!("jwks is larger than {MAX_JWKS_BYTES} bytes")));
                }
                parse_key_set(jwks).map(|_| ()).map_err(|e| meta(format!("jwks: {e}")))
            }
            (None, Some(uri)) => check_jwks_uri(uri).map_err(|why| meta(format!("jwks_uri: {why}"))),
        }
    }
}

/// A `jwks_uri` is fetched by this server: https, or http on a loopback host (development).
pub fn check_jwks_uri(uri: &str) -> Result<(), &'static str> {
    check_app_uri(uri)?;
    match Url::parse(uri).map(|u| u.scheme().to_owned()).as_deref() {
        Ok("https" | "http") => Ok(()),
        _ => Err("must be an https URL (http only on a loopback host)"),
    }
}

/// Human-readable metadata (what users see on the consent page, the gallery, the EHR) must not
/// hold control characters or Unicode bidirectional controls: a right-to-left override
/// (U+202E) makes the rest of a name display backwards, so "Evil App" can pass for another.
fn check_display_text(field: &str, value: &str) -> Result<(), RegistrationError> {
    match value.chars().find(|&c| c.is_control() || is_bidi_control(c)) {
        None => Ok(()),
        Some(c) => Err(RegistrationError::InvalidClientMetadata(format!(
            "{field} must not contain control or bidirectional-control characters (found U+{:04X}): use plain text",
            c as u32
        ))),
    }
}

/// The Unicode bidirectional formatting characters: embeddings and overrides (U+202A–U+202E),
/// isolates (U+2066–U+2069), the LRM/RLM marks (U+200E, U+200F) and the Arabic letter mark
/// (U+061C).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A redirect or launch URI must be absolute, without a fragment, and either `https`, `http` on
/// a loopback host, or a private-use scheme of a native app (RFC 8252 §7.1, e.g. `com.example.app:/cb`).
fn check_app_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI_LEN {
        return Err("too long");
    }
    if uri.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err("must not contain control or bidirectional-control characters");
    }
    let url = Url::parse(uri).map_err(|_| "must be an absolute URL")?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment (#)");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host() {
            Some(url::Host::Domain("localhost")) => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err("http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1]); use https"),
        },
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => Err("this scheme is not allowed"),
        s if s.contains('.') => Ok(()),
        _ => Err("use https, http on a loopback host, or a reverse-domain private-use scheme"),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uris: &[&str]) -> RegistrationRequest {
        RegistrationRequest { redirect_uris: Some(uris.iter().map(|s| s.to_string()).collect()), ..Default::default() }
    }

    #[test]
    fn defaults_follow_rfc7591() {
        let m = req(&["https://app.example/cb"]).validate().unwrap();
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, vec!["authorization_code"]);
    }

    #[test]
    fn redirect_uris_are_checked() {
        for bad in ["", "/relative", "http://evil.example/cb", "https://a.example/cb#frag", "javascript:alert(1)"] {
            assert!(matches!(req(&[bad]).validate(), Err(RegistrationError::InvalidRedirectUri(_))), "{bad}");
        }
        for good in [
            "http://127.0.0.1:9000/index.html",
            "http://localhost/cb",
            "https://app.example/cb?x=1",
            "com.example.app:/cb",
        ] {
            assert!(req(&[good]).validate().is_ok(), "{good}");
        }
        assert!(matches!(RegistrationRequest::default().validate(), Err(RegistrationError::InvalidRedirectUri(_))));
    }

    #[test]
    fn metadata_is_checked() {
        let mut r = req(&["https://app.example/cb"]);
        r.token_endpoint_auth_method = Some("private_key_jwt".into());
        assert!(matches!(r.validate(), Err(RegistrationError::InvalidClientMetadata(_))));
        let mut r = req(&["https://app.example/cb"]);
        r.response_types = Some(vec!["token".into()]);
        assert!(matches!(r.validate(), Err(RegistrationError::InvalidClientMetadata(_))));
        let mut r = req(&["https://app.example/cb"]);
        r.scope = Some("patient/Observation.xyz".into());
        assert!(matches!(r.validate(), Err(RegistrationError::InvalidClientMetadata(_))));
        let mut r = req(&["https://app.example/cb"]);
        r.grant_types = Some(vec!["implicit".into()]);
        assert!(matches!(r.validate(), Err(RegistrationError::InvalidClientMetadata(_))));
    }

    #[test]
    fn client_name_refuses_control_and_bidi_characters() {
        for bad in
            ["Good\u{202E}ppA liveE", "a\u{2066}b", "a\u{200F}b", "a\u{061C}b", "a\u{0007}b", "a\nb", "a\u{0085}b"]
        {
            let mut r = req(&["https://app.example/cb"]);
            r.client_name = Some(bad.into());
            match r.validate() {
                Err(RegistrationError::InvalidClientMetadata(m)) => assert!(m.contains("client_name"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let mut r = req(&["https://app.example/cb"]);
        r.client_name = Some("Growth Chart — أطفال 儿童".into());
        assert_eq!(r.validate().unwrap().client_name, "Growth Chart — أطفال 儿童");
    }

    fn backend(extra: impl FnOnce(&mut RegistrationRequest)) -> Result<ClientMetadata, RegistrationError> {
        let key = crate::signing_key::SigningKey::generate(crate::signing_key::KeyKind::Es384).unwrap();
        let mut r = RegistrationRequest {
            grant_types: Some(vec!["client_credentials".into()]),
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            jwks: Some(key.public_jwks()),
            scope: Some("system/*.rs".into()),
            ..Default::default()
        };
        extra(&mut r);
        r.validate()
    }

    fn refused(result: Result<ClientMetadata, RegistrationError>, expect: &str) {
        match result {
            Err(RegistrationError::InvalidClientMetadata(m)) => assert!(m.contains(expect), "{expect}: {m}"),
            other => panic!("{expect}: {other:?}"),
        }
    }

    #[test]
    fn backend_services_register_keys_and_system_scopes_without_redirect_uris() {
        let m = backend(|_| {}).unwrap();
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::PrivateKeyJwt);
        assert!(m.redirect_uris.is_empty());
        assert!(backend(|r| {
            r.jwks = None;
            r.jwks_uri = Some("https://svc.example/jwks.json".into());
        })
        .is_ok());
        refused(backend(|r| r.jwks_uri = Some("https://svc.example/jwks.json".into())), "not both");
        refused(backend(|r| r.jwks = None), "jwks");
        refused(
            backend(|r| {
                r.jwks = None;
                r.jwks_uri = Some("http://svc.example/jwks.json".into());
            }),
            "jwks_uri",
        );
        refused(backend(|r| r.scope = None), "system/");
        refused(backend(|r| r.scope = Some("system/*.rs user/*.rs".into())), "user/*.rs");
        refused(
            backend(|r| {
                r.token_endpoint_auth_method = Some("none".into());
                r.jwks = None;
            }),
            "authenticates with `private_key_jwt`, not `none`",
        );
        refused(backend(|r| r.token_endpoint_auth_method = Some("client_secret_post".into())), "private_key_jwt");
        refused(
            backend(|r| r.grant_types = Some(vec!["client_credentials".into(), "refresh_token".into()])),
            "refresh_token",
        );
        // A client secret is not enough for a backend service (checklist item 98).
        refused(
            backend(|r| {
                r.token_endpoint_auth_method = Some("client_secret_basic".into());
                r.jwks = None;
            }),
            "not `client_secret_basic`",
        );
        // An app that also has client_credentials may list app scopes besides system/ ones.
        assert!(backend(|r| {
            r.grant_types = Some(vec!["authorization_code".into(), "client_credentials".into()]);
            r.redirect_uris = Some(vec!["https://app.example/cb".into()]);
            r.scope = Some("system/*.rs launch patient/*.rs".into());
        })
        .is_ok());
    }
}
