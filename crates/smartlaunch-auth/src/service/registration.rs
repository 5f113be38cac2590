//! Client registration: RFC 7591 dynamic registration and the command line (checklist 17–18).

use crate::client::{Client, RegistrationRequest};
use crate::error::RegistrationError;
use crate::secrets::{hash_token, random_hex, random_token, secrets_equal};
use crate::store::AuthStore;
use crate::{AuthService, UnixTime};

/// A newly registered client, with its secret (shown once, never stored).
#[derive(Debug, Clone)]
pub struct Registered {
    pub client: Client,
    pub client_secret: Option<String>,
}

impl Registered {
    /// The RFC 7591 §3.2.1 response body.
    pub fn response_json(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(&self.client.metadata).expect("metadata serialises");
        let obj = body.as_object_mut().expect("metadata is an object");
        obj.insert("client_id".into(), self.client.client_id.clone().into());
        obj.insert("client_id_issued_at".into(), self.client.created_at.into());
        if let Some(secret) = &self.client_secret {
            obj.insert("client_secret".into(), secret.clone().into());
            obj.insert("client_secret_expires_at".into(), 0.into());
        }
        body
    }
}

impl<S: AuthStore> AuthService<S> {
    /// RFC 7591 dynamic registration.  Open unless an initial access token is configured.
    pub async fn register(
        &self,
        request: RegistrationRequest,
        initial_access_token: Option<&str>,
        now: UnixTime,
    ) -> Result<Registered, RegistrationError> {
        self.check_registration_token(initial_access_token)?;
        self.add_client(request, now).await
    }

    /// Every way to register an app over HTTP (RFC 7591, the gallery, the launcher's ad-hoc
    /// apps) needs the initial access token when one is configured.
    pub fn check_registration_token(&self, initial_access_token: Option<&str>) -> Result<(), RegistrationError> {
        let Some(expected) = &self.config.registration_token else {
            return Ok(());
        };
        match initial_access_token {
            Some(given) if secrets_equal(given, expected) => Ok(()),
            Some(_) => Err(RegistrationError::InvalidToken("the initial access token is not valid".into())),
            None => Err(RegistrationError::InvalidToken(
                "registration on this server requires an initial access token: send `Authorization: Bearer <token>`"
                    .into(),
            )),
        }
    }

    /// Registers a client without an initial access token (command line; callers over HTTP
    /// check [`AuthService::check_registration_token`] first).
    pub async fn add_client(
        &self,
        request: RegistrationRequest,
        now: UnixTime,
    ) -> Result<Registered, RegistrationError> {
        let metadata = request.validate()?;
        let client_secret = metadata.token_endpoint_auth_method.is_confidential().then(|| random_token(32));
        let client = Client {
            client_id: random_hex(16),
            secret_hash: client_secret.as_deref().map(hash_token),
            metadata,
            created_at: now,
        };
        self.store.insert_client(&client).await?;
        Ok(Registered { client, client_secret })
    }
}
