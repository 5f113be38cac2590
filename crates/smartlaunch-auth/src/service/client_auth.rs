//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3, RFC 7523; spec digest §1.6, checklist items 42–50): public clients by `client_id`,
//! symmetric clients by secret (HTTP Basic or the body), asymmetric clients by a
//! `private_key_jwt` assertion checked against their registered keys, with a `jti` never
//! accepted twice by any node that shares the database.

use std::sync::Arc;

use crate::client::{Client, TokenEndpointAuthMethod};
use crate::client_assertion::{
    check_claims, issuer, verified, AssertionReport, Check, ClientAssertion, Failure, Parsed, JWT_BEARER,
};
use crate::client_cache::CachedClient;
use crate::error::TokenError;
use crate::jwk::{parse_key_set, PublicJwk};
use crate::secrets::{hash_token, secrets_equal};
use crate::store::AuthStore;
use crate::token::{BasicCredentials, TokenRequest};
use crate::{AuthService, UnixTime};

/// What client authentication found out: the client the request names (whether or not it
/// authenticated), with its backend-service session; each check made on a `private_key_jwt`
/// assertion; and the verdict.
pub(super) struct Authentication {
    pub named: Option<CachedClient>,
    /// How the request authenticated: `private_key_jwt`, `client_secret_basic`, … or `none`.
    pub method: &'static str,
    /// Empty unless an assertion was sent.
    pub report: AssertionReport,
    /// `Ok(None)`: nothing identifies a client (allowed only for a public client's refresh).
    pub result: Result<Option<Arc<Client>>, TokenError>,
}

impl<S: AuthStore> AuthService<S> {
    /// Identifies and authenticates the client.  `Ok(None)`: nothing identifies a client
    /// (allowed only for a public client's refresh).
    pub(super) async fn authenticate_client(
        &self,
        req: &TokenRequest,
        basic: Option<BasicCredentials>,
        now: UnixTime,
    ) -> Result<Option<Arc<Client>>, TokenError> {
        self.authenticate(req, basic, now).await.result
    }

    /// [`AuthService::authenticate_client`], with what the launch inspector needs to know.
    pub(super) async fn authenticate(
        &self,
        req: &TokenRequest,
        basic: Option<BasicCredentials>,
        now: UnixTime,
    ) -> Authentication {
        let mut named = None;
        let mut report = AssertionReport::default();
        if req.client_assertion.is_some() || req.client_assertion_type.is_some() {
            let result = if basic.is_some() || req.client_secret.is_some() {
                Err(TokenError::InvalidRequest(
                    "use one client authentication method: a client_assertion or a client secret, not both".into(),
                ))
            } else {
                self.authenticate_assertion(req, &mut report, &mut named, now).await.map(Some)
            };
            return Authentication { named, method: "private_key_jwt", report, result };
        }
        let method = match (&basic, &req.client_secret) {
            (Some(_), _) => "client_secret_basic",
            (None, Some(_)) => "client_secret_post",
            (None, None) => "none",
        };
        let result = self.authenticate_secret(req, basic, &mut named, now).await;
        Authentication { named, method, report, result }
    }

    /// Public clients by `client_id`, symmetric clients by secret (HTTP Basic or the body).
    async fn authenticate_secret(
        &self,
        req: &TokenRequest,
        basic: Option<BasicCredentials>,
        named: &mut Option<CachedClient>,
        now: UnixTime,
    ) -> Result<Option<Arc<Client>>, TokenError> {
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
        *named = self.client_entry(&client_id, now).await?;
        let client = named
            .as_ref()
            .map(|c| c.client.clone())
            .ok_or_else(|| TokenError::InvalidClient("unknown client_id: register the app first".into()))?;
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

    /// `private_key_jwt`: the assertion type, the header, the client its `iss` names, the key,
    /// the signature, the claims and the `jti`, each recorded in `report`; the error names the
    /// first that failed (in [`Check`] order).  The client is looked up even when the header
    /// failed (to record the request for its inspector), the keys only when everything before
    /// them passed, and the `jti` is used up only when every other check passed.
    pub(super) async fn authenticate_assertion(
        &self,
        req: &TokenRequest,
        report: &mut AssertionReport,
        named: &mut Option<CachedClient>,
        now: UnixTime,
    ) -> Result<Arc<Client>, TokenError> {
        let assertion_type = match req.client_assertion_type.as_deref() {
            Some(JWT_BEARER) => Ok(()),
            Some(other) => Err(Failure::AssertionTypeUnsupported(other.chars().take(100).collect())),
            None => Err(Failure::AssertionTypeMissing),
        };
        let sent = req.client_assertion_type.as_deref().map_or_else(|| "missing".to_owned(), short);
        report.record(Check::AssertionType, sent, assertion_type);
        let parsed = match req.client_assertion.as_deref().filter(|a| !a.is_empty()) {
            Some(raw) => ClientAssertion::parse_checked(raw, report),
            None => {
                report.record(Check::Jws, "missing", Err(Failure::AssertionMissing));
                Parsed::Unreadable
            }
        };
        let claims = match &parsed {
            Parsed::Assertion(a) => Some(&a.claims),
            Parsed::BadHeader(claims) => Some(claims),
            Parsed::Unreadable => None,
        };
        let iss = claims.and_then(issuer).filter(|i| !i.is_empty());
        // The client the request names: by `iss`, else by `client_id`.
        if let Some(id) = iss.or(req.client_id.as_deref()) {
            *named = self.client_entry(id, now).await?;
        }
        let client = named.as_ref().map(|c| c.client.clone());
        if claims.is_some() {
            let found = match (iss, &client) {
                (None, _) => Err(Failure::NoIss),
                (Some(iss), _) if req.client_id.as_deref().is_some_and(|id| id != iss) => Err(Failure::ClientIdDiffers),
                (Some(iss), None) => Err(Failure::UnknownIss(short(iss))),
                (Some(_), Some(c))
                    if c.metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt =>
                {
                    Err(Failure::AuthMethod(c.metadata.token_endpoint_auth_method.as_str()))
                }
                (Some(_), Some(_)) => Ok(()),
            };
            report.record(Check::Client, iss.map_or_else(|| "missing".to_owned(), short), found);
        }
        let invalid = |f: Failure| TokenError::InvalidClient(f.description());
        let (Some(client), Some(claims)) = (client, claims) else {
            return Err(invalid(report.verdict().err().unwrap_or(Failure::NoIss)));
        };
        if let (Parsed::Assertion(assertion), true) = (&parsed, report.verdict().is_ok()) {
            self.check_key_and_signature(&client, assertion, report, now).await;
        }
        check_claims(claims, &client.client_id, &self.config.token_endpoint(), now, report);
        report.verdict().map_err(invalid)?;
        let verified = verified(claims).ok_or_else(|| invalid(Failure::JtiMissing))?;
        // Kept until the assertion expires: afterwards `exp` refuses it anyway.
        let fresh =
            self.store.use_assertion_jti(&client.client_id, &hash_token(&verified.jti), verified.exp, now).await?;
        report.record(
            Check::JtiFresh,
            if fresh { "first use" } else { "used before" },
            if fresh { Ok(()) } else { Err(Failure::JtiReused) },
        );
        report.verdict().map_err(invalid)?;
        Ok(client)
    }

    /// The `jku`, the registered key the assertion names and its signature, recorded in
    /// `report` (each only when the one before passed).
    async fn check_key_and_signature(
        &self,
        client: &Client,
        assertion: &ClientAssertion,
        report: &mut AssertionReport,
        now: UnixTime,
    ) {
        assertion.check_jku_into(client.metadata.jwks_uri.as_deref(), report);
        if report.verdict().is_err() {
            return;
        }
        let (keys, source) = match self.client_keys(client, &assertion.kid, now).await {
            Ok(found) => found,
            Err(why) => {
                report.record(
                    Check::Key,
                    format!("kid `{}`", short(&assertion.kid)),
                    Err(Failure::KeysUnavailable(why)),
                );
                return;
            }
        };
        let sent = format!("kid `{}` in {source}", short(&assertion.kid));
        match assertion.find_key(&keys) {
            Ok(key) => {
                report.record(Check::Key, sent, Ok(()));
                assertion.check_signature(key, report);
            }
            Err(failure) => report.record(Check::Key, sent, Err(failure)),
        }
    }

    /// The client's public keys, and where they come from: its registered `jwks`, or the set
    /// at its `jwks_uri` (cached; refetched once when `kid` is new).
    async fn client_keys(
        &self,
        client: &Client,
        kid: &str,
        now: UnixTime,
    ) -> Result<(Arc<Vec<PublicJwk>>, String), String> {
        if let Some(jwks) = &client.metadata.jwks {
            let keys = parse_key_set(jwks).map_err(|e| format!("the registered jwks is not valid: {e}"))?;
            return Ok((Arc::new(keys), "the registered jwks".to_owned()));
        }
        let uri = client.metadata.jwks_uri.as_deref().ok_or("this client registered no keys (jwks or jwks_uri)")?;
        let keys = self.key_sets.keys(uri, Some(kid), now).await.map_err(|e| e.0)?;
        Ok((keys, format!("the jwks_uri {}", short(uri))))
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
