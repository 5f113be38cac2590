//! Backend services in tests: a client with an ES384 key registered by value (RFC 7591,
//! `private_key_jwt`, `client_credentials`) that gets tokens at the real token endpoint.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use smartlaunch_auth::client_assertion::JWT_BEARER;
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};

use super::Server;

pub struct BackendClient<'a> {
    pub server: &'a Server,
    pub client_id: String,
    pub key: SigningKey,
    /// The RFC 7591/7592 registration response.
    pub registration: Value,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Server {
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }

    /// Registers a backend service allowed `scope` (system/ scopes), with a fresh ES384 key.
    pub async fn backend_client(&self, scope: &str) -> BackendClient<'_> {
        self.backend_client_with(KeyKind::Es384, scope).await
    }

    pub async fn backend_client_with(&self, kind: KeyKind, scope: &str) -> BackendClient<'_> {
        let key = SigningKey::generate(kind).unwrap();
        let registration = self
            .register(json!({
                "client_name": "Backend Service",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": key.public_jwks(),
                "scope": scope,
            }))
            .await;
        BackendClient {
            server: self,
            client_id: registration["client_id"].as_str().unwrap().to_owned(),
            key,
            registration,
        }
    }

    /// A `client_credentials` access token for `scope` from a new backend client.
    pub async fn backend_token(&self, scope: &str) -> String {
        self.backend_client(scope).await.token(scope).await
    }
}

impl BackendClient<'_> {
    /// A fresh, valid client assertion.
    pub fn assertion(&self) -> String {
        self.key.client_assertion(&self.client_id, &self.server.token_url(), unix_now()).unwrap()
    }

    /// An assertion with `claims` merged over the valid ones and `header` members added.
    pub fn assertion_with(&self, claims: Value, header: &[(&str, Value)]) -> String {
        let now = unix_now();
        let mut c = json!({
            "iss": self.client_id, "sub": self.client_id, "aud": self.server.token_url(),
            "exp": now + 240, "iat": now, "jti": super::random(16),
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        self.key.sign_jwt(&c, header).unwrap()
    }

    /// `client_credentials` with `assertion`.
    pub async fn token_with(&self, assertion: &str, scope: &str) -> Response {
        self.server
            .token(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
            ])
            .await
    }

    pub async fn token_response(&self, scope: &str) -> Value {
        let r = self.token_with(&self.assertion(), scope).await;
        assert_eq!(r.status(), StatusCode::OK, "client_credentials failed");
        r.json().await.unwrap()
    }

    pub async fn token(&self, scope: &str) -> String {
        self.token_response(scope).await["access_token"].as_str().unwrap().to_owned()
    }
}
