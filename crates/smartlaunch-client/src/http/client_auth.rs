//! How the app proves who it is at the token endpoint (RFC 6749 §2.3; SMART 2.2 §"Client
//! authentication"): not at all (public), with a shared secret, or with a JWT signed by its
//! private key (RFC 7523, SMART's asymmetric authentication, RS384 or ES384).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::RequestBuilder;

use crate::pkce::random_token;
use crate::token::{client_assertion_claims, JWT_BEARER};
use crate::Error;

/// An app's private key for `private_key_jwt`.
#[derive(Clone)]
pub struct PrivateKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jku: Option<String>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// An RSA key (RS384, the algorithm SMART servers must accept) from PEM (PKCS#8 or PKCS#1).
    pub fn rs384(kid: &str, pem: &str) -> Result<PrivateKey, Error> {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| Error::Config(format!("the RSA key: {e}")))?;
        Ok(PrivateKey { alg: Algorithm::RS384, kid: kid.to_owned(), key, jku: None })
    }

    /// A P-384 EC key (ES384) from PKCS#8 PEM.
    pub fn es384(kid: &str, pem: &str) -> Result<PrivateKey, Error> {
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| Error::Config(format!("the EC key: {e}")))?;
        Ok(PrivateKey { alg: Algorithm::ES384, kid: kid.to_owned(), key, jku: None })
    }

    /// Names the app's JWK Set URL in the assertion header (`jku`), for servers that fetch keys
    /// by it.
    pub fn with_jku(mut self, jku: &str) -> PrivateKey {
        self.jku = Some(jku.to_owned());
        self
    }

    /// A fresh client assertion for `token_endpoint`.
    pub fn assertion(&self, client_id: &str, token_endpoint: &str, now: u64) -> Result<String, Error> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        header.jku = self.jku.clone();
        let claims = client_assertion_claims(client_id, token_endpoint, now, &random_token(24)?);
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::Config(format!("signing the client assertion: {e}")))
    }
}

/// How the app authenticates at the token endpoint.  Its `Debug` shows no secret.
#[derive(Clone)]
pub enum ClientAuth {
    /// A public client (a browser or native app): `client_id` in the form, no secret.
    Public,
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    SecretBasic(String),
    /// `client_secret_post`: the secret in the form.
    SecretPost(String),
    /// `private_key_jwt`: a signed assertion in the form.
    PrivateKeyJwt(PrivateKey),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::PrivateKeyJwt(key) => f.debug_tuple("PrivateKeyJwt").field(key).finish(),
            other => write!(f, "ClientAuth({})", other.method()),
        }
    }
}

impl ClientAuth {
    /// The `token_endpoint_auth_method` this is.
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuth::Public => "none",
            ClientAuth::SecretBasic(_) => "client_secret_basic",
            ClientAuth::SecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }

    /// Adds the authentication to a token request and its form.
    pub(crate) fn apply(
        &self,
        request: RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
        client_id: &str,
        token_endpoint: &str,
        now: u64,
    ) -> Result<RequestBuilder, Error> {
        Ok(match self {
            ClientAuth::Public => {
                form.push(("client_id", client_id.to_owned()));
                request
            }
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)));
                request.header(AUTHORIZATION, format!("Basic {pair}"))
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", client_id.to_owned()));
                form.push(("client_secret", secret.clone()));
                request
            }
            ClientAuth::PrivateKeyJwt(key) => {
                form.push(("client_assertion_type", JWT_BEARER.to_owned()));
                form.push(("client_assertion", key.assertion(client_id, token_endpoint, now)?));
                request
            }
        })
    }
}
