//! Client registration: RFC 7591 dynamic registration, RFC 7592 management of one's own
//! registration, and the command line (checklist 17–18).

use smart_scopes::ScopeSet;

use crate::client::{Client, ClientMetadata, RegistrationRequest};
use crate::error::{LaunchError, RegistrationError};
use crate::secrets::{hash_token, random_hex, random_token, secrets_equal};
use crate::store::AuthStore;
use crate::{AuthService, UnixTime};

use super::own_redirects::OwnRedirectPowers;

/// A registered client, with its secret (shown once, never stored) and its RFC 7592
/// registration access token (new in every response: the one used is then spent).
#[derive(Debug, Clone)]
pub struct Registered {
    pub client: Client,
    pub client_secret: Option<String>,
    pub registration_access_token: Option<String>,
    /// `registration_client_uri`, with the access token.
    pub registration_client_uri: Option<String>,
}

impl Registered {
    /// The RFC 7591 §3.2.1 / RFC 7592 §3 response body.
    pub fn response_json(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(&self.client.metadata).expect("metadata serialises");
        let obj = body.as_object_mut().expect("metadata is an object");
        obj.insert("client_id".into(), self.client.client_id.clone().into());
        obj.insert("client_id_issued_at".into(), self.client.created_at.into());
        if let Some(secret) = &self.client_secret {
            obj.insert("client_secret".into(), secret.clone().into());
            obj.insert("client_secret_expires_at".into(), 0.into());
        }
        if let (Some(token), Some(uri)) = (&self.registration_access_token, &self.registration_client_uri) {
            obj.insert("registration_access_token".into(), token.clone().into());
            obj.insert("registration_client_uri".into(), uri.clone().into());
        }
        body
    }
}

/// Who registers over HTTP: what decides whether they may create a backend service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registrant<'a> {
    /// `Authorization: Bearer`: the initial access token, or the admin token.
    pub bearer: Option<&'a str>,
    /// The `Host` the request named.
    pub host: Option<&'a str>,
    /// The request came from a page of another site (an `Origin` that is not this server's).
    pub cross_site: bool,
}

impl<S: AuthStore> AuthService<S> {
    /// RFC 7591 dynamic registration.  Open unless an initial access token is configured; a
    /// client that may hold `client_credentials` also needs the sandbox powers (see
    /// [`AuthService::may_register_backend`]).
    pub async fn register(
        &self,
        request: RegistrationRequest,
        registrant: Registrant<'_>,
        now: UnixTime,
    ) -> Result<Registered, RegistrationError> {
        self.check_registration_token(registrant.bearer)?;
        let metadata = request.validate()?;
        if metadata.grant_types.iter().any(|g| g == "client_credentials") {
            self.may_register_backend(registrant.bearer, registrant.host, registrant.cross_site)?;
        }
        self.check_own_redirect_uris(&metadata.redirect_uris, &[], OwnRedirectPowers::Http(registrant))?;
        let client_secret = metadata.token_endpoint_auth_method.uses_secret().then(|| random_token(32));
        let token = random_token(32);
        let client = Client {
            client_id: random_hex(16),
            secret_hash: client_secret.as_deref().map(hash_token),
            registration_token_hash: Some(hash_token(&token)),
            metadata,
            created_at: now,
        };
        self.store.insert_client(&client).await?;
        Ok(self.registered(client, client_secret, Some(token)))
    }

    fn registered(&self, client: Client, client_secret: Option<String>, token: Option<String>) -> Registered {
        let uri = token.as_ref().map(|_| format!("{}/{}", self.config.registration_endpoint(), client.client_id));
        Registered { client, client_secret, registration_access_token: token, registration_client_uri: uri }
    }

    /// The client an RFC 7592 registration access token manages.  Every failure is the same
    /// `invalid_token` (RFC 7592 §2: an unknown client is not told apart from a wrong token).
    async fn managed_client(&self, client_id: &str, token: Option<&str>) -> Result<Client, RegistrationError> {
        let bad = || {
            RegistrationError::InvalidToken(
                "the registration access token is missing, not valid or not this client's: send `Authorization: Bearer <registration_access_token>` from the last registration response".into(),
            )
        };
        let token = token.filter(|t| !t.is_empty() && t.len() <= 256).ok_or_else(bad)?;
        if client_id.is_empty() || client_id.len() > 256 {
            return Err(bad());
        }
        let client = self.store.client(client_id).await?.ok_or_else(bad)?;
        match &client.registration_token_hash {
            Some(hash) if secrets_equal(hash, &hash_token(token)) => Ok(client),
            _ => Err(bad()),
        }
    }

    /// Stores a new registration access token for `client` (the one used is spent) and answers.
    /// The write succeeds only while the token used is still the current one, so of requests
    /// racing with one token exactly one gets an answer (and a new token).
    async fn rotate_registration_token(&self, mut client: Client) -> Result<Registered, RegistrationError> {
        let token = random_token(32);
        let spent = client.registration_token_hash.replace(hash_token(&token));
        if !self.store.update_client(&client, spent.as_deref()).await? {
            return Err(RegistrationError::InvalidToken(
                "the registration access token is missing, not valid or not this client's: send `Authorization: Bearer <registration_access_token>` from the last registration response".into(),
            ));
        }
        self.clients.forget(&client.client_id);
        Ok(self.registered(client, None, Some(token)))
    }

    /// RFC 7592 §2.1: read one's own registration.
    pub async fn read_registration(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<Registered, RegistrationError> {
        let client = self.managed_client(client_id, token).await?;
        self.rotate_registration_token(client).await
    }

    /// RFC 7592 §2.2: replace one's own metadata (a new `jwks` or `jwks_uri` rotates the keys).
    /// The authentication method stays; the secret, if any, stays.
    pub async fn update_registration(
        &self,
        client_id: &str,
        token: Option<&str>,
        request: RegistrationRequest,
        registrant: Registrant<'_>,
    ) -> Result<Registered, RegistrationError> {
        let client = self.managed_client(client_id, token).await?;
        // The registration access token is the client's own, not a sandbox power.
        let client = self.updated(client, request, Registrant { bearer: None, ..registrant })?;
        self.rotate_registration_token(client).await
    }

    /// The client with the metadata of an RFC 7592 §2.2 update, after that update's rules: the
    /// body names the client (and its current secret, if any); the authentication method
    /// stays; `client_credentials` may be added, or a backend service's scope widened, only
    /// with the sandbox powers of `registrant` (see [`AuthService::may_register_backend`]).
    fn updated(
        &self,
        mut client: Client,
        request: RegistrationRequest,
        registrant: Registrant<'_>,
    ) -> Result<Client, RegistrationError> {
        let meta = RegistrationError::InvalidClientMetadata;
        if request.client_id.as_deref() != Some(client.client_id.as_str()) {
            return Err(meta("the body must hold this client's client_id (RFC 7592 §2.2)".into()));
        }
        if let Some(secret) = &request.client_secret {
            let matches = client.secret_hash.as_ref().is_some_and(|h| secrets_equal(h, &hash_token(secret)));
            if !matches {
                return Err(meta("client_secret, if sent, must be the client's current secret".into()));
            }
        }
        let metadata = request.validate()?;
        // The registration access token is no sandbox power either (as for a backend below).
        let powers = OwnRedirectPowers::Http(Registrant { bearer: None, ..registrant });
        self.check_own_redirect_uris(&metadata.redirect_uris, &client.metadata.redirect_uris, powers)?;
        let widens = |old: &ClientMetadata, new: &ClientMetadata| {
            let has_cc = |m: &ClientMetadata| m.grant_types.iter().any(|g| g == "client_credentials");
            let scope = |m: &ClientMetadata| m.scope.as_deref().and_then(|s| ScopeSet::parse(s).ok());
            has_cc(new)
                && (!has_cc(old) || !matches!((scope(new), scope(old)), (Some(n), Some(o)) if n.is_subset_of(&o)))
        };
        // It may not turn a client into a backend service or widen a backend service's scopes
        // without the powers that register one.
        if widens(&client.metadata, &metadata) {
            self.may_register_backend(registrant.bearer, registrant.host, registrant.cross_site).map_err(|_| {
                RegistrationError::Forbidden(
                    "an update may not add client_credentials or widen a backend service's scope: register a new backend service (a sandbox power, or `smartlaunch clients add --backend` on the server)".into(),
                )
            })?;
        }
        if metadata.token_endpoint_auth_method != client.metadata.token_endpoint_auth_method {
            return Err(meta(format!(
                "token_endpoint_auth_method cannot change (it is `{}`): register a new client for another method",
                client.metadata.token_endpoint_auth_method.as_str()
            )));
        }
        if let Some(old) = &client.metadata.jwks_uri {
            self.key_sets.forget(old);
        }
        client.metadata = metadata;
        Ok(client)
    }

    /// `/apps`' edit: an RFC 7592 §2.2 update (the same rules, [`AuthService::updated`]) made
    /// with the sandbox powers (`registrant.bearer`: the admin token, if any) in place of the
    /// client's registration access token, which stays as it is.
    pub async fn edit_client(
        &self,
        request: RegistrationRequest,
        registrant: Registrant<'_>,
    ) -> Result<Client, RegistrationError> {
        self.check_admin_powers(registrant)?;
        let client_id = request.client_id.clone().unwrap_or_default();
        let client = self.admin_client(&client_id).await?;
        let current = client.registration_token_hash.clone();
        let client = self.updated(client, request, registrant)?;
        // The write succeeds only if no RFC 7592 request changed the client meanwhile.
        if !self.store.update_client(&client, current.as_deref()).await? {
            return Err(RegistrationError::InvalidClientMetadata(
                "the app changed meanwhile (its own registration management): reload and edit it again".into(),
            ));
        }
        self.clients.forget(&client.client_id);
        Ok(client)
    }

    /// `/apps`' delete: an RFC 7592 §2.3 delete made with the sandbox powers; everything
    /// issued to the client is revoked.
    pub async fn delete_client_as_admin(
        &self,
        client_id: &str,
        registrant: Registrant<'_>,
        now: UnixTime,
    ) -> Result<Client, RegistrationError> {
        self.check_admin_powers(registrant)?;
        let client = self.admin_client(client_id).await?;
        if let Some(uri) = &client.metadata.jwks_uri {
            self.key_sets.forget(uri);
        }
        self.remove_client(client_id, now).await?;
        Ok(client)
    }

    /// A client that `/apps` manages: any registered one.
    async fn admin_client(&self, client_id: &str) -> Result<Client, RegistrationError> {
        let unknown = || RegistrationError::NotFound(format!("no app has the client_id “{client_id}”"));
        if client_id.is_empty() || client_id.len() > 256 {
            return Err(unknown());
        }
        self.store.client(client_id).await?.ok_or_else(unknown)
    }

    /// The sandbox powers ([`AuthService::check_powers`]) as a registration error: editing and
    /// deleting any app follow the sandbox mode, like the launcher.
    pub fn check_admin_powers(&self, registrant: Registrant<'_>) -> Result<(), RegistrationError> {
        if registrant.cross_site {
            return Err(RegistrationError::Forbidden(
                "apps cannot be edited or deleted from a web page of another site".into(),
            ));
        }
        self.check_powers(registrant.bearer, registrant.host).map_err(|e| match (e, registrant.bearer) {
            (LaunchError::Unauthorized(_), Some(_)) => {
                RegistrationError::InvalidToken("the admin token is not valid".into())
            }
            (LaunchError::Unauthorized(_), None) => RegistrationError::InvalidToken(
                "this server requires its admin token to edit or delete an app: fill in the Admin token field".into(),
            ),
            (LaunchError::Forbidden(m), _) if self.config.open_sandbox => RegistrationError::Forbidden(m),
            (_, _) => RegistrationError::Forbidden(
                "editing and deleting apps is off: this server listens beyond loopback without an admin token; start it with --admin-token TOKEN (or --open-sandbox to open it to everyone)".into(),
            ),
        })
    }

    /// RFC 7592 §2.3: delete one's own registration; everything issued to it is revoked.
    pub async fn delete_registration(
        &self,
        client_id: &str,
        token: Option<&str>,
        now: UnixTime,
    ) -> Result<(), RegistrationError> {
        let client = self.managed_client(client_id, token).await?;
        if let Some(uri) = &client.metadata.jwks_uri {
            self.key_sets.forget(uri);
        }
        self.remove_client(client_id, now).await?;
        Ok(())
    }

    /// A backend service holds `system/` scopes over every patient with no user to approve
    /// them, so registering one over HTTP is a sandbox power (issue 8 review, finding 1): on a
    /// sandbox open on loopback (at a loopback `Host`), with `--open-sandbox`, or with the admin
    /// token — never from a page of another site (finding 2: CORS lets any page read a
    /// registration's answer).  A closed server registers backend services on its command line.
    pub fn may_register_backend(
        &self,
        bearer: Option<&str>,
        host: Option<&str>,
        cross_site: bool,
    ) -> Result<(), RegistrationError> {
        if cross_site {
            return Err(RegistrationError::Forbidden(
                "a backend service cannot be registered from a web page of another site (this request has a foreign Origin): register it from its server, on the command line (`smartlaunch clients add --backend`) or at /apps".into(),
            ));
        }
        match self.check_powers(bearer, host) {
            Ok(()) => Ok(()),
            Err(LaunchError::Unauthorized(_)) => Err(RegistrationError::InvalidToken(
                "registering a backend service (client_credentials) needs this server's admin token: send `Authorization: Bearer <admin token>`".into(),
            )),
            Err(LaunchError::Forbidden(_)) if self.config.open_sandbox => Err(RegistrationError::Forbidden(
                "a sandbox open on loopback registers backend services only at a loopback address (localhost, 127.0.0.1) or its public URL, never at another name (DNS rebinding)".into(),
            )),
            Err(_) => Err(RegistrationError::Forbidden(
                "registering a backend service (client_credentials) over HTTP is off on this server (it listens beyond loopback without --admin-token or --open-sandbox): register it on the server with `smartlaunch clients add --backend`".into(),
            )),
        }
    }

    /// Every way to register an app over HTTP (RFC 7591, the gallery, the launcher's ad-hoc
    /// apps) needs the initial access token when one is configured; the admin token, the
    /// greater power, is accepted in its place.
    pub fn check_registration_token(&self, initial_access_token: Option<&str>) -> Result<(), RegistrationError> {
        let Some(expected) = &self.config.registration_token else {
            return Ok(());
        };
        let admin = self.config.admin_token.as_deref();
        match initial_access_token {
            Some(given) if secrets_equal(given, expected) => Ok(()),
            Some(given) if admin.is_some_and(|a| secrets_equal(given, a)) => Ok(()),
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
        self.check_own_redirect_uris(&metadata.redirect_uris, &[], OwnRedirectPowers::Trusted)?;
        let client_secret = metadata.token_endpoint_auth_method.uses_secret().then(|| random_token(32));
        let client = Client {
            client_id: random_hex(16),
            secret_hash: client_secret.as_deref().map(hash_token),
            registration_token_hash: None,
            metadata,
            created_at: now,
        };
        self.store.insert_client(&client).await?;
        Ok(self.registered(client, client_secret, None))
    }

    /// Registers a client under a `client_id` its developer chose (the developer launcher's
    /// ad-hoc app: an app in development sends its own fixed client_id).  Never reached through
    /// RFC 7591 registration, where the server assigns ids; callers check the sandbox powers
    /// and the registration token first.
    pub async fn add_client_with_id(
        &self,
        client_id: &str,
        request: RegistrationRequest,
        now: UnixTime,
    ) -> Result<Registered, RegistrationError> {
        if !is_chosen_client_id(client_id) {
            return Err(RegistrationError::InvalidClientMetadata(format!(
                "a chosen client_id has 1 to {CHOSEN_CLIENT_ID_MAX} letters, digits or . _ ~ - (got “{}”)",
                client_id.chars().take(CHOSEN_CLIENT_ID_MAX + 1).collect::<String>()
            )));
        }
        if self.store.client(client_id).await?.is_some() {
            return Err(RegistrationError::InvalidClientMetadata(format!("the client_id “{client_id}” is taken")));
        }
        let metadata = request.validate()?;
        // The same rule as `add_client`: no page of this server but `/dev/callback`.
        self.check_own_redirect_uris(&metadata.redirect_uris, &[], OwnRedirectPowers::Trusted)?;
        let client_secret = metadata.token_endpoint_auth_method.uses_secret().then(|| random_token(32));
        let client = Client {
            client_id: client_id.to_owned(),
            secret_hash: client_secret.as_deref().map(hash_token),
            registration_token_hash: None,
            metadata,
            created_at: now,
        };
        self.store.insert_client(&client).await?;
        Ok(self.registered(client, client_secret, None))
    }
}

/// The longest client_id a developer may choose.
pub const CHOSEN_CLIENT_ID_MAX: usize = 64;

/// Whether a developer-chosen client_id is acceptable: 1–64 of the URL-safe unreserved
/// characters (RFC 3986 §2.3), so it travels unescaped in every URL and form.
pub fn is_chosen_client_id(client_id: &str) -> bool {
    (1..=CHOSEN_CLIENT_ID_MAX).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::is_chosen_client_id;

    #[test]
    fn chosen_client_ids_are_bounded_and_url_safe() {
        assert!(is_chosen_client_id("my_web_app"));
        assert!(is_chosen_client_id("a.b~c-D9"));
        assert!(is_chosen_client_id(&"x".repeat(64)));
        assert!(!is_chosen_client_id(&"x".repeat(65)));
        assert!(!is_chosen_client_id(""));
        for bad in ["my app", "a/b", "a\"b", "é", "a<b>", "a\nb", "a%20b"] {
            assert!(!is_chosen_client_id(bad), "{bad}");
        }
    }
}
