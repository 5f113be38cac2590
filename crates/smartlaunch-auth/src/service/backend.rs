//! SMART Backend Services: the `client_credentials` grant (spec digest §1.10; SMART App Launch
//! 2.2 "Backend Services").  The client is authenticated already (private_key_jwt, or a client
//! secret when it registered `client_credentials` with one: see docs/DESIGN.md); the token
//! carries only `system/` scopes, lives at most five minutes, has no refresh token and names
//! no user or patient.

use smart_scopes::{Scope, ScopeSet};

use crate::client::Client;
use crate::error::TokenError;
use crate::keys::AccessClaims;
use crate::launch::{BackendSession, SimulatedError};
use crate::secrets::random_token;
use crate::store::AuthStore;
use crate::token::{TokenRequest, TokenResponse};
use crate::{AuthService, UnixTime};

/// The longest a backend-service access token lives (the spec's recommendation).
pub const BACKEND_TOKEN_LIFETIME: i64 = 300;

impl<S: AuthStore> AuthService<S> {
    /// `grant_type=client_credentials`.
    /// `session`: the client's backend-service session in the developer launcher, whose
    /// simulated error happens here (then `simulated` is set, for the inspector) and whose
    /// inspector records the token's FHIR calls.
    pub(super) async fn client_credentials(
        &self,
        client: &Client,
        session: Option<&BackendSession>,
        req: &TokenRequest,
        simulated: &mut bool,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        if !client.allows_grant("client_credentials") {
            return Err(TokenError::UnauthorizedClient(
                "this client is not registered for the client_credentials grant: register grant_types [\"client_credentials\"] with the system/ scopes it may have".into(),
            ));
        }
        if req.from_browser {
            return Err(TokenError::UnauthorizedClient(
                "a backend service is not a browser app: client_credentials requests must not come from a web page (this one has an Origin header)".into(),
            ));
        }
        let scope = backend_scope(client, req.scope.as_deref())?;
        if session.and_then(|s| s.simulate_error) == Some(SimulatedError::BackendInvalidScope) {
            *simulated = true;
            return Err(TokenError::InvalidScope(
                "the requested scope is invalid (simulated by the developer launcher)".into(),
            ));
        }
        let lifetime = self.config.access_token_lifetime.min(BACKEND_TOKEN_LIFETIME);
        let claims = AccessClaims {
            iss: self.config.issuer().to_owned(),
            aud: self.config.fhir_base(),
            sub: client.client_id.clone(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            grant: random_token(16),
            patient: None,
            encounter: None,
            fhir_user: None,
            iat: now,
            exp: now + lifetime,
            jti: random_token(12),
            context: None,
            simulate_error: None,
            trace: session.map(|s| s.trace_id.clone()),
        };
        Ok(TokenResponse {
            access_token: self.signing_keys().sign_access_token(&claims),
            token_type: "Bearer",
            expires_in: lifetime,
            scope: claims.scope,
            refresh_token: None,
            id_token: None,
            patient: None,
            encounter: None,
            context: Default::default(),
        })
    }
}

/// The requested scopes negotiated against the client's pre-authorized `system/` scopes (v1,
/// v2 and granular): what both allow.  Anything but a `system/` scope is refused by name.
pub fn backend_scope(client: &Client, requested: Option<&str>) -> Result<ScopeSet, TokenError> {
    let requested = requested.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        TokenError::InvalidScope(
            "scope is required: ask for the system/ scopes you need, e.g. `system/Patient.rs`".into(),
        )
    })?;
    let asked = ScopeSet::parse(requested).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
    if let Some(other) = asked.iter().find(|s| !s.is_system()) {
        return Err(TokenError::InvalidScope(format!(
            "`{other}` cannot be granted to a backend service: its token carries only system/ scopes (no user, no patient, no refresh)"
        )));
    }
    let allowed = client.allowed_scopes().unwrap_or_default().retain(Scope::is_system);
    let granted = asked.negotiate(Some(&allowed));
    if granted.is_empty() {
        return Err(TokenError::InvalidScope(format!(
            "none of the requested scopes is pre-authorized for this client; it may have: {}",
            if allowed.is_empty() { "no system/ scopes".to_owned() } else { allowed.to_string() }
        )));
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientMetadata, TokenEndpointAuthMethod};

    fn client(scope: &str) -> Client {
        Client {
            client_id: "svc".into(),
            metadata: ClientMetadata {
                client_name: "svc".into(),
                redirect_uris: vec![],
                grant_types: vec!["client_credentials".into()],
                token_endpoint_auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
                scope: Some(scope.into()),
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

    fn granted(allowed: &str, asked: &str) -> Result<String, TokenError> {
        backend_scope(&client(allowed), Some(asked)).map(|s| s.to_string())
    }

    #[test]
    fn scopes_are_negotiated_against_the_pre_authorized_system_scopes() {
        assert_eq!(granted("system/*.rs", "system/Patient.rs").unwrap(), "system/Patient.rs");
        assert_eq!(granted("system/Patient.rs", "system/*.rs").unwrap(), "system/Patient.rs");
        assert_eq!(granted("system/*.read", "system/Observation.rs").unwrap(), "system/Observation.rs");
        assert_eq!(granted("system/Observation.rs", "system/Observation.cruds").unwrap(), "system/Observation.rs");
        let lab =
            "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        assert_eq!(granted(lab, "system/Observation.rs").unwrap(), lab, "a granular limit narrows the grant");
        assert!(
            matches!(granted("system/Patient.rs", "system/Observation.rs"), Err(TokenError::InvalidScope(m)) if m.contains("may have: system/Patient.rs"))
        );
    }

    #[test]
    fn only_system_scopes_and_a_scope_at_all() {
        for bad in ["patient/*.rs", "user/Patient.rs", "openid", "offline_access", "launch"] {
            let e = granted("system/*.rs", &format!("system/Patient.rs {bad}")).unwrap_err();
            assert!(matches!(&e, TokenError::InvalidScope(m) if m.contains(bad)), "{bad}: {e:?}");
        }
        assert!(matches!(backend_scope(&client("system/*.rs"), None), Err(TokenError::InvalidScope(_))));
        assert!(matches!(backend_scope(&client("system/*.rs"), Some("  ")), Err(TokenError::InvalidScope(_))));
    }
}
