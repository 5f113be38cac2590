//! Signed-in sessions: password checks (throttled, argon2id on a bounded pool), opening and
//! ending a session, and the user of a session cookie.

use crate::error::AuthorizeError;
use crate::secrets::{hash_token, random_token, secrets_equal};
use crate::store::{AuthStore, Session, SessionStore, UserStore};
use crate::throttle::Attempt;
use crate::users::User;
use crate::{AuthService, UnixTime};

/// A successful sign-in: the session cookie value to set.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_cookie: String,
}

/// A sign-in's credentials and the address it came from (for throttling).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address as the server sees it (`None`: unknown).
    pub client_addr: Option<&'a str>,
}

impl<S: AuthStore> AuthService<S> {
    /// Checks a password and opens a signed-in session (also used outside an authorization,
    /// by the management page, the EHR and the portal).
    pub async fn open_session(
        &self,
        credentials: Credentials<'_>,
        now: UnixTime,
    ) -> Result<(SignedIn, Session, User), AuthorizeError> {
        let user = self.check_password(credentials, now).await?;
        let (signed_in, session) = self.start_session(&user, now).await?;
        Ok((signed_in, session, user))
    }

    /// Opens a session for a user whose password was checked.
    pub(super) async fn start_session(
        &self,
        user: &User,
        now: UnixTime,
    ) -> Result<(SignedIn, Session), AuthorizeError> {
        let cookie = random_token(32);
        let session = Session {
            id_hash: hash_token(&cookie),
            user_id: user.id.clone(),
            csrf: random_token(24),
            created_at: now,
            expires_at: now + self.config.session_lifetime,
        };
        self.store.insert_session(&session).await?;
        Ok((SignedIn { session_cookie: cookie }, session))
    }
}

/// Signing out and reading a session need only the session port.
impl<S: SessionStore> AuthService<S> {
    /// Ends a signed-in session (the sign-out link).
    pub async fn sign_out(&self, session_cookie: &str, csrf: &str, now: UnixTime) -> Result<(), AuthorizeError> {
        let id_hash = hash_token(session_cookie);
        match self.store.session(&id_hash, now).await? {
            Some(s) if secrets_equal(&s.csrf, csrf) => Ok(self.store.delete_session(&id_hash).await?),
            Some(_) => Err(AuthorizeError::BadStep("The sign-out form has expired; please try again.")),
            None => Ok(()),
        }
    }

    /// The signed-in user of a session cookie, with the session (for sign-out forms).
    pub async fn session_user(
        &self,
        session_cookie: &str,
        now: UnixTime,
    ) -> Result<Option<(Session, User)>, AuthorizeError> {
        Ok(self.store.session_user(&hash_token(session_cookie), now).await?)
    }
}

/// Checking a password needs only the user port.
impl<S: UserStore> AuthService<S> {
    /// Checks a username and password: refused at once while the account or the address is
    /// throttled (growing delays after repeated failures, never a permanent lockout), else
    /// argon2id on the bounded hashing pool.
    pub async fn check_password(&self, credentials: Credentials<'_>, now: UnixTime) -> Result<User, AuthorizeError> {
        let Credentials { username, password, client_addr } = credentials;
        if username.len() > 256 || password.len() > 1024 {
            return Err(AuthorizeError::SignInFailed);
        }
        let user = self.store.user_by_username(username).await?;
        let attempt = Attempt::new(username, user.is_some(), client_addr);
        if let Err(retry_after) = self.sign_ins.begin(&attempt, now) {
            return Err(AuthorizeError::Throttled { retry_after });
        }
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.hashing.verify(hash, password.to_owned()).await.map_err(AuthorizeError::Internal)?;
        match user {
            Some(u) if ok => {
                self.sign_ins.succeeded(&attempt);
                Ok(u)
            }
            _ => Err(AuthorizeError::SignInFailed),
        }
    }
}
