//! Token introspection (RFC 7662, spec digest §1.11, checklist items 93–97) and token
//! revocation (RFC 7009).

use serde_json::{json, Map, Value};
use smart_scopes::{Scope, ScopeSet};

use crate::error::TokenError;
use crate::keys::AccessClaims;
use crate::secrets::hash_token;
use crate::store::AuthStore;
use crate::token::{BasicCredentials, TokenRequest};
use crate::{AuthService, UnixTime};

/// Who asks to introspect: a confidential client that authenticated, or the holder of a valid
/// SMART access token (checklist item 97: "appropriately-scoped SMART … bearer token").
///
/// A confidential client may introspect any token.  An app's user-facing access token may
/// introspect only tokens of its own grant: anything else is `{"active": false}`, so one app
/// cannot learn about another app's tokens (issue 7, finding 7).
pub enum Caller<'a> {
    Client { request: &'a TokenRequest, basic: Option<BasicCredentials> },
    Bearer(&'a str),
}

impl<S: AuthStore> AuthService<S> {
    /// `POST /auth/introspect`: `{"active": false}` for anything not currently valid.
    pub async fn introspect(
        &self,
        caller: Caller<'_>,
        token: Option<&str>,
        now: UnixTime,
    ) -> Result<Value, TokenError> {
        // The grant a bearer caller is confined to; `None`: a confidential client (any token).
        let own_grant = match caller {
            Caller::Bearer(bearer) => {
                let claims = self
                    .verify_bearer_any(bearer, now)
                    .map_err(|e| TokenError::InvalidClient(format!("the bearer token: {e}")))?;
                Some(claims.grant)
            }
            Caller::Client { request, basic } => {
                let client = self.authenticate_client(request, basic, now).await?;
                if !client.is_some_and(|c| c.is_confidential()) {
                    return Err(TokenError::InvalidClient(
                        "introspection needs a confidential client's credentials or a valid SMART access token (Authorization: Bearer)".into(),
                    ));
                }
                None
            }
        };
        let inactive = || json!({ "active": false });
        let token =
            token.filter(|t| !t.is_empty()).ok_or_else(|| TokenError::InvalidRequest("token is required".into()))?;
        if token.len() > 8192 {
            return Ok(inactive());
        }
        let allowed = |grant: &str| own_grant.as_deref().is_none_or(|own| own == grant);
        if let Ok(claims) = self.verify_bearer_any(token, now) {
            return Ok(if allowed(&claims.grant) { self.describe_access_token(&claims) } else { inactive() });
        }
        Ok(match self.describe_refresh_token(token, now).await? {
            Some((grant, description)) if allowed(&grant) => description,
            _ => inactive(),
        })
    }

    /// The introspection response of a valid access token: `active`, `scope`, `client_id`,
    /// `exp` and every launch-context parameter of its token response (checklist items 94–96).
    fn describe_access_token(&self, claims: &AccessClaims) -> Value {
        let mut out = Map::new();
        out.insert("active".into(), true.into());
        out.insert("token_type".into(), "Bearer".into());
        out.insert("scope".into(), claims.scope.clone().into());
        out.insert("client_id".into(), claims.client_id.clone().into());
        out.insert("exp".into(), claims.exp.into());
        out.insert("iat".into(), claims.iat.into());
        out.insert("iss".into(), claims.iss.clone().into());
        out.insert("sub".into(), claims.sub.clone().into());
        out.insert("aud".into(), claims.aud.clone().into());
        if let Some(p) = &claims.patient {
            out.insert("patient".into(), p.clone().into());
        }
        if let Some(e) = &claims.encounter {
            out.insert("encounter".into(), e.clone().into());
        }
        if let Some(Value::Object(context)) = claims.context.as_deref().and_then(|c| serde_json::to_value(c).ok()) {
            out.extend(context);
        }
        let scopes = ScopeSet::parse(&claims.scope).unwrap_or_default();
        if let (true, Some(user)) = (scopes.contains(&Scope::FhirUser), &claims.fhir_user) {
            out.insert("fhirUser".into(), format!("{}/{user}", claims.aud).into());
        }
        Value::Object(out)
    }

    /// The grant of a live refresh token and its introspection response.
    async fn describe_refresh_token(&self, token: &str, now: UnixTime) -> Result<Option<(String, Value)>, TokenError> {
        let Some(record) = self.store.refresh_token(&hash_token(token)).await? else {
            return Ok(None);
        };
        if record.used_at.is_some() || record.expires_at <= now {
            return Ok(None);
        }
        let Some(grant) = self.store.grant(&record.grant_id).await? else {
            return Ok(None);
        };
        if grant.revoked_at.is_some() {
            return Ok(None);
        }
        let mut out = json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": grant.scope,
            "client_id": grant.client_id,
            "exp": record.expires_at,
            "iat": grant.created_at,
            "iss": self.config.issuer(),
            "sub": grant.user_id,
        });
        if let Some(p) = grant.patient {
            out["patient"] = p.into();
        }
        if let Some(e) = grant.encounter {
            out["encounter"] = e.into();
        }
        Ok(Some((grant.id, out)))
    }

    /// `POST /auth/revoke` (RFC 7009): revokes the grant behind a refresh or access token of the
    /// calling client.  Unknown tokens, or tokens of other clients, are ignored (200).
    pub async fn revoke(
        &self,
        request: &TokenRequest,
        basic: Option<BasicCredentials>,
        token: Option<&str>,
        now: UnixTime,
    ) -> Result<(), TokenError> {
        let client = self.authenticate_client(request, basic, now).await?.ok_or_else(|| {
            TokenError::InvalidClient(
                "identify the client: client_id for public apps; HTTP Basic, client_secret_post or a client_assertion for confidential ones".into(),
            )
        })?;
        let token =
            token.filter(|t| !t.is_empty()).ok_or_else(|| TokenError::InvalidRequest("token is required".into()))?;
        if token.len() > 8192 {
            return Ok(());
        }
        if let Some(record) = self.store.refresh_token(&hash_token(token)).await? {
            if record.client_id == client.client_id {
                self.revoke_grant(&record.grant_id, now).await?;
            }
            return Ok(());
        }
        if let Ok(claims) = self.signing_keys().verify_access_token_for_any_audience(token, now) {
            if claims.client_id == client.client_id {
                self.revoke_grant(&claims.grant, now).await?;
            }
        }
        Ok(())
    }
}
