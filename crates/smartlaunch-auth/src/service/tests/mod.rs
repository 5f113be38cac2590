//! Core unit tests of [`AuthService`]: every authorize, token, introspection and revocation
//! rule, without HTTP, at a fixed time, against [`MemoryStore`].  Each test is named after the
//! rule it defends (spec digest checklist items in the doc lines).  The same rules run end to
//! end over real sockets in `crates/smartlaunch/tests`.

mod authorize;
mod client_auth;
mod code;
mod flow;
mod introspection;
mod launch;
mod refresh;

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::authorize::AuthorizationRequest;
use crate::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use crate::error::{AuthorizeError, TokenError};
use crate::keys::KeyMaterial;
use crate::launch::LaunchOptions;
use crate::secrets::hash_token;
use crate::service::{NewLaunch, Progress};
use crate::signing_key::{KeyKind, SigningKey};
use crate::store::memory::MemoryStore;
use crate::store::{ClientStore, FlowStore, KeyStore, Session, SessionStore, UserStore};
use crate::token::{BasicCredentials, TokenRequest, TokenResponse};
use crate::users::User;
use crate::{AuthConfig, AuthService, UnixTime};

/// The fixed clock of every test.
pub const NOW: UnixTime = 1_800_000_000;
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";
pub const FHIR: &str = "http://127.0.0.1:8080/fhir";
pub const TOKEN_URL: &str = "http://127.0.0.1:8080/auth/token";
pub const REDIRECT: &str = "http://127.0.0.1:9000/cb";
/// RFC 7636 appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const SECRET: &str = "the-client-secret";
pub const PASSWORD: &str = "correct horse";

/// Clients: `public`, `basic` (client_secret_basic), `post` (client_secret_post), `jwt`
/// (private_key_jwt, app), `svc` (private_key_jwt, backend service), `narrow` (public, may have
/// only `patient/Observation.rs`, no refresh grant).
/// Users: `dr` (Practitioner/pr1), `pat` (Patient/p1), `other` (Practitioner/pr2).
/// Patients: `p1` (encounters `e2`, `e1`), `p2` (none).
pub struct Harness {
    pub auth: Arc<AuthService<MemoryStore>>,
    pub store: MemoryStore,
    pub key: Arc<SigningKey>,
}

fn server_keys() -> KeyMaterial {
    static KEYS: OnceLock<KeyMaterial> = OnceLock::new();
    KEYS.get_or_init(KeyMaterial::generate).clone()
}

fn client_key() -> Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKey::generate(KeyKind::Es384).unwrap())).clone()
}

fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| crate::users::hash_password(PASSWORD)).clone()
}

pub fn client(id: &str, method: TokenEndpointAuthMethod, grants: &[&str], scope: Option<&str>) -> Client {
    Client {
        client_id: id.into(),
        metadata: ClientMetadata {
            client_name: format!("App {id}"),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
            token_endpoint_auth_method: method,
            scope: scope.map(str::to_owned),
            initiate_login_uri: Some("http://127.0.0.1:9000/launch".into()),
            logo_uri: None,
            jwks: None,
            jwks_uri: None,
        },
        secret_hash: method.uses_secret().then(|| hash_token(SECRET)),
        registration_token_hash: None,
        created_at: 0,
    }
}

fn user(id: &str, username: &str, fhir_user: &str) -> User {
    User {
        id: id.into(),
        username: username.into(),
        password_hash: password_hash(),
        fhir_user: fhir_user.into(),
        display_name: username.to_uppercase(),
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_config(|_| {}).await
    }

    pub async fn with_config(change: impl FnOnce(&mut AuthConfig)) -> Harness {
        let store = MemoryStore::default();
        store.insert_keys_if_absent(&server_keys()).await.unwrap();
        let key = client_key();
        let code_grants = ["authorization_code", "refresh_token"];
        use TokenEndpointAuthMethod as M;
        let mut jwt = client("jwt", M::PrivateKeyJwt, &code_grants, None);
        jwt.metadata.jwks = Some(key.public_jwks());
        let mut svc = client("svc", M::PrivateKeyJwt, &["client_credentials"], Some("system/*.rs"));
        svc.metadata.jwks = Some(key.public_jwks());
        for c in [
            client("public", M::None, &code_grants, None),
            client("basic", M::ClientSecretBasic, &code_grants, None),
            client("post", M::ClientSecretPost, &code_grants, None),
            client("narrow", M::None, &["authorization_code"], Some("patient/Observation.rs launch/patient")),
            jwt,
            svc,
        ] {
            store.insert_client(&c).await.unwrap();
        }
        for u in [
            user("u-dr", "dr", "Practitioner/pr1"),
            user("u-pat", "pat", "Patient/p1"),
            user("u-other", "other", "Practitioner/pr2"),
        ] {
            assert!(store.insert_user(&u).await.unwrap());
        }
        store.add_patient("p1", &["e2", "e1"]);
        store.add_patient("p2", &[]);
        let mut config = AuthConfig::new(PUBLIC_URL);
        change(&mut config);
        let auth = AuthService::open(store.clone(), config, NOW).await.unwrap();
        Harness { auth: Arc::new(auth), store, key }
    }

    /// A signed-in session of `user_id`; the cookie value is `cookie-{user_id}`.
    pub async fn session(&self, user_id: &str) -> String {
        let cookie = format!("cookie-{user_id}");
        let session = Session {
            id_hash: hash_token(&cookie),
            user_id: user_id.into(),
            csrf: "session-csrf".into(),
            created_at: NOW - 10,
            expires_at: NOW + 3600,
        };
        if self.store.session(&session.id_hash, NOW).await.unwrap().is_none() {
            self.store.insert_session(&session).await.unwrap();
        }
        cookie
    }

    /// Remembers that `user_id` approved `scope` for `client_id`.
    pub async fn consented(&self, user_id: &str, client_id: &str, scope: &str) {
        self.store.put_consent(user_id, client_id, scope, NOW - 100).await.unwrap();
    }

    pub async fn authorize(&self, pairs: &[(&str, &str)], cookie: Option<&str>) -> Result<Progress, AuthorizeError> {
        self.authorize_at(pairs, cookie, NOW).await
    }

    pub async fn authorize_at(
        &self,
        pairs: &[(&str, &str)],
        cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<Progress, AuthorizeError> {
        let req = AuthorizationRequest::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.auth.authorize(req, cookie, now).await
    }

    /// A code for `dr` (signed in, consent remembered) from client `client_id` for `scope`.
    pub async fn code(&self, client_id: &str, scope: &str) -> String {
        let cookie = self.session("u-dr").await;
        self.consented("u-dr", client_id, scope).await;
        let progress = self.authorize(&request(client_id, scope, &[]), Some(&cookie)).await.unwrap();
        code_of(&progress)
    }

    /// An EHR launch of `client_id` for patient `p1` (optionally naming its user).
    pub async fn launch(&self, client_id: &str, user_id: Option<&str>, options: LaunchOptions) -> String {
        let new = NewLaunch {
            client_id: client_id.into(),
            user_id: user_id.map(Into::into),
            patient: Some("p1".into()),
            options,
            ..Default::default()
        };
        self.auth.create_launch(new, NOW).await.unwrap().launch
    }

    pub async fn token(&self, pairs: &[(&str, &str)]) -> Result<TokenResponse, TokenError> {
        self.token_at(pairs, None, NOW).await
    }

    pub async fn token_at(
        &self,
        pairs: &[(&str, &str)],
        basic: Option<BasicCredentials>,
        now: UnixTime,
    ) -> Result<TokenResponse, TokenError> {
        self.auth.token(form(pairs), basic, now).await
    }

    /// Exchanges `code` as the public client `client_id` with the right verifier.
    pub async fn exchange(&self, client_id: &str, code: &str) -> Result<TokenResponse, TokenError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
        ])
        .await
    }

    /// Tokens for `dr` through client `public` with `scope`.
    pub async fn tokens(&self, scope: &str) -> TokenResponse {
        let code = self.code("public", scope).await;
        self.exchange("public", &code).await.unwrap()
    }

    /// A fresh client assertion of `client_id` for our token endpoint.
    pub fn assertion(&self, client_id: &str) -> String {
        self.key.client_assertion(client_id, TOKEN_URL, NOW).unwrap()
    }

    /// Signs arbitrary assertion claims with the registered key.
    pub fn assertion_with(&self, claims: Value) -> String {
        self.key.sign_jwt(&claims, &[]).unwrap()
    }
}

pub fn form(pairs: &[(&str, &str)]) -> TokenRequest {
    TokenRequest::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).unwrap()
}

pub fn basic(client_id: &str, secret: &str) -> Option<BasicCredentials> {
    Some(BasicCredentials { client_id: client_id.into(), client_secret: secret.into() })
}

/// A good authorization request of `client_id` for `scope`, with `changes` (a value of `""`
/// removes the parameter).
pub fn request<'a>(client_id: &'a str, scope: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st4te"),
        ("aud", FHIR),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in changes {
        pairs.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    pairs
}

/// The query parameters of a redirect.
pub fn query(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The code of a completed authorization.
pub fn code_of(progress: &Progress) -> String {
    match progress {
        Progress::Code(url) => {
            assert!(url.starts_with(REDIRECT), "{url}");
            assert_eq!(param(url, "state").as_deref(), Some("st4te"), "state is echoed exactly");
            param(url, "code").unwrap()
        }
        other => panic!("expected a code, got {other:?}"),
    }
}

/// The RFC 6749 §4.1.2.1 error of a refused authorization, whether validation refused it
/// (`Err(Redirect)`) or a later rule did (`Ok(ErrorRedirect)`), with its description.
pub fn redirect_error(result: &Result<Progress, AuthorizeError>) -> (String, String) {
    match result {
        Ok(Progress::ErrorRedirect { url, error, description }) => {
            assert!(url.starts_with(REDIRECT), "{url}");
            assert_eq!(param(url, "error").as_deref(), Some(*error));
            assert_eq!(param(url, "state").as_deref(), Some("st4te"), "state is echoed on errors");
            ((*error).to_owned(), description.clone())
        }
        Err(e @ AuthorizeError::Redirect { redirect_uri, state, error }) => {
            assert_eq!(redirect_uri, REDIRECT);
            let url = e.redirect_url().unwrap();
            assert_eq!(param(&url, "error").as_deref(), Some(error.error));
            assert_eq!(state.as_deref(), param(&url, "state").as_deref());
            (error.error.to_owned(), error.error_description.clone())
        }
        other => panic!("expected an error redirect, got {other:?}"),
    }
}

/// The error code and description of a token-endpoint refusal.
pub fn token_error(result: Result<TokenResponse, TokenError>) -> (&'static str, String) {
    match result {
        Err(e) => (e.code(), e.description().to_owned()),
        Ok(r) => panic!("expected a token error, got a token with scope {}", r.scope),
    }
}
