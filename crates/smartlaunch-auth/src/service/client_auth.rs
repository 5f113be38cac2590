//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3, RFC 7523; spec digest §1.6, checklist items 42–50): public clients by `client_id`,
//! symmetric clients by secret (HTTP Basic or the body), asymmetric clients by a
//! `private_key_jwt` assertion checked against their registered keys, with a `jti` never
//! accepted twice by any node that shares the database.

use std::sync::Arc;

use crate::client::{Client, TokenEndpointAuthMethod};
use crate::client_assertion::{ClientAssertion, VerifiedAssertion, JWT_BEARER};
use crate::error::TokenError;
use crate::jwk::{parse_key_set, PublicJwk};
use crate::secrets::{hash_token, secrets_equal};
use crate::store::AuthStore;
use crate::token::{BasicCredentials, TokenRequest};
use crate::{AuthService, UnixTime};

impl<S: AuthStore> AuthService<S> {
    /// Identifies and authenticates the client.  `Ok(None)`: nothing identifies a client
    /// (allowed only for a public client's refresh).
    pub(super) async fn authenticate_client(
        &self,
        req: &TokenRequest,
        basic: Option<BasicCredentials>,
        now: UnixTime,
    ) -> Result<Option<Arc<Client>>, TokenError> {
        if req.client_assertion.is_some() || req.client_assertion_type.is_some() {
            if basic.is_some() || req.client_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method: a client_assertion or a client secret, not both".into(),
                ));
            }
            return self.authenticate_assertion(req, now).await.map(|(client, _)| Some(client));
        }
        let (client_id, secret) = match (basic, &req.client_secret) {
            (Some(_), Some(_)) => {
                return Err(TokenError::InvalidRequest(
                    "send the client secret once: either HTTP Basic or client_secret, not both".into(),
                ))
            }
            (Some(b), None) => {
                if req.client_id.as_deref().is_some_and(|id| id != b.client_id) {
                    return Err(TokenError::InvalidClient(
                        "client_id in the body differs from the HTTP Basic user name".into(),
                    ));
                }
                (b.client_id, Some(b.client_secret))
            }
            (None, Some(secret)) => {
                let id = req
                    .client_id
                    .clone()
                    .ok_or_else(|| TokenError::InvalidClient("client_secret was sent without client_id".into()))?;
                (id, Some(secret.clone()))
            }
            (None, None) => match &req.client_id {
                Some(id) => (id.clone(), None),
                None => return Ok(None),
            },
        };
        let client = self.known_client(&client_id, now).await?;
        match (client.metadata.token_endpoint_auth_method, &client.secret_hash, secret) {
            (TokenEndpointAuthMethod::PrivateKeyJwt, _, _) => Err(TokenError::InvalidClient(
                "this client authenticates with private_key_jwt: send client_assertion_type and a signed client_assertion"
                    .into(),
            )),
            (_, None, None) => Ok(Some(client)),
            (_, None, Some(_)) => Err(TokenError::InvalidClient(
                "this is a public client: it has no client secret; send only client_id".into(),
            )),
            (_, Some(_), None) => Err(TokenError::InvalidClient(
                "this client is confidential: authenticate with HTTP Basic (client_secret_basic) or client_secret_post"
                    .into(),
            )),
            (_, Some(hash), Some(secret)) if secrets_equal(hash, &hash_token(&secret)) => Ok(Some(client)),
            (_, Some(_), Some(_)) => Err(TokenError::InvalidClient("the client secret is wrong".into())),
        }
    }

    async fn known_client(&self, client_id: &str, now: UnixTime) -> Result<Arc<Client>, TokenError> {
        self.client(client_id, now)
            .await?
            .ok_or_else(|| TokenError::InvalidClient("unknown client_id: register the app first".into()))
    }

    /// `private_key_jwt`: the assertion's header, key, signature, claims and `jti`, in that
    /// order; every failure is `invalid_client` naming what failed.
    pub(super) async fn authenticate_assertion(
        &self,
        req: &TokenRequest,
        now: UnixTime,
    ) -> Result<(Arc<Client>, VerifiedAssertion), TokenError> {
        let invalid = |m: String| TokenError::InvalidClient(m);
        match req.client_assertion_type.as_deref() {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "client_assertion_type `{}` is not supported; use `{JWT_BEARER}`",
                    other.chars().take(100).collect::<String>()
                )))
            }
            None => return Err(invalid(format!("client_assertion_type is required: `{JWT_BEARER}`"))),
        }
        let raw = req.client_assertion.as_deref().filter(|a| !a.is_empty()).ok_or_else(|| {
            invalid(
                "client_assertion is required with client_assertion_type: a JWT signed with the client's key".into(),
            )
        })?;
        let assertion = ClientAssertion::parse(raw).map_err(invalid)?;
        let iss = assertion
            .issuer()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| invalid("the client_assertion has no `iss`: it must be the client_id".into()))?;
        if req.client_id.as_deref().is_some_and(|id| id != iss) {
            return Err(invalid("client_id differs from the client_assertion's `iss`".into()));
        }
        let client = self
            .client(iss, now)
            .await?
            .ok_or_else(|| invalid(format!("the assertion's `iss` `{}` is not a registered client_id", short(iss))))?;
        if client.metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt {
            return Err(invalid(format!(
                "this client is registered for {}, not private_key_jwt",
                client.metadata.token_endpoint_auth_method.as_str()
            )));
        }
        assertion.check_jku(client.metadata.jwks_uri.as_deref()).map_err(invalid)?;
        let keys = self.client_keys(&client, &assertion.kid, now).await?;
        let key = assertion
            .select_key(&keys)
            .ok_or_else(|| {
                invalid(format!(
                    "no registered key has the kid `{}`: register the key (or update the client's JWK Set) first",
                    short(&assertion.kid)
                ))
            })?
            .map_err(invalid)?;
        let verified = assertion.verify(key, &client.client_id, &self.config.token_endpoint(), now).map_err(invalid)?;
        // Kept until the assertion expires: afterwards `exp` refuses it anyway.
        if !self.store.use_assertion_jti(&client.client_id, &hash_token(&verified.jti), verified.exp, now).await? {
            return Err(invalid(
                "this client_assertion's `jti` was already used: sign a new assertion, with a fresh jti, for every request"
                    .into(),
            ));
        }
        Ok((client, verified))
    }

    /// The client's public keys: its registered `jwks`, or the set at its `jwks_uri` (cached;
    /// refetched once when `kid` is new).
    async fn client_keys(&self, client: &Client, kid: &str, now: UnixTime) -> Result<Arc<Vec<PublicJwk>>, TokenError> {
        if let Some(jwks) = &client.metadata.jwks {
            return parse_key_set(jwks)
                .map(Arc::new)
                .map_err(|e| TokenError::InvalidClient(format!("the registered jwks is not valid: {e}")));
        }
        let uri = client
            .metadata
            .jwks_uri
            .as_deref()
            .ok_or_else(|| TokenError::InvalidClient("this client registered no keys (jwks or jwks_uri)".into()))?;
        self.key_sets.keys(uri, Some(kid), now).await.map_err(|e| TokenError::InvalidClient(e.0))
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
