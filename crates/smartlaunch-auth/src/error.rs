//! The errors of each protocol boundary, with the RFC error codes as variants.  The text is
//! for the app developer: it says what was wrong and how to fix it, and never echoes a secret.

/// An RFC 6749 error: code plus description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub error_description: String,
}

/// Why an authorization request failed (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or its redirect_uri cannot be trusted: show an error page, never redirect.
    #[error("{0}")]
    NotRedirectable(String),
    /// Everything else: redirect to the (verified) redirect_uri with `error`, `error_description`
    /// and `state`.
    #[error("{}: {}", .error.error, .error.error_description)]
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
    /// Wrong username or password: show the form again, without saying which part was wrong.
    #[error("the username or password is incorrect")]
    SignInFailed,
    /// The pending request is unknown or expired (the browser step cannot continue).
    #[error("this sign-in request is unknown or has expired; start again from the app")]
    UnknownRequest,
    /// A browser step was posted that is not the current one, or with a bad CSRF token.
    #[error("{0}")]
    BadStep(&'static str),
    /// The request was started in another browser (its flow cookie is missing or different):
    /// an id is a reference, never a capability.
    #[error("this sign-in was started in another browser; start again from the app")]
    OtherBrowser,
    /// A launch named its user, and someone else signed in.
    #[error("this launch is for another user: sign in as {0}")]
    WrongUser(String),
    /// Too many failed sign-ins for this account or from this address: wait and try again.
    #[error("too many failed sign-ins; try again in {retry_after} seconds")]
    Throttled { retry_after: i64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Token-endpoint errors (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("server_error: {0}")]
    ServerError(String),
}

impl TokenError {
    /// The HTTP status of the error response (RFC 6749 §5.2): 401 for `invalid_client`, 500 for
    /// our own failures, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::InvalidClient(_) => 401,
            TokenError::ServerError(_) => 500,
            _ => 400,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnauthorizedClient(_) => "unauthorized_client",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::ServerError(_) => "server_error",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient(d)
            | TokenError::InvalidGrant(d)
            | TokenError::UnauthorizedClient(d)
            | TokenError::UnsupportedGrantType(d)
            | TokenError::InvalidScope(d)
            | TokenError::ServerError(d) => d,
        }
    }
}

/// RFC 7591 §3.2.2 registration errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(String),
    /// The initial access token is missing or wrong (RFC 7591 §3).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// The caller may not register this kind of client here (403).
    #[error("access_denied: {0}")]
    Forbidden(String),
    /// No such client (`/apps`' edit and delete; RFC 7592 answers `invalid_token` instead).
    #[error("not_found: {0}")]
    NotFound(String),
    #[error("server_error: {0}")]
    ServerError(String),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
            RegistrationError::InvalidToken(_) => "invalid_token",
            RegistrationError::Forbidden(_) => "access_denied",
            RegistrationError::NotFound(_) => "not_found",
            RegistrationError::ServerError(_) => "server_error",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            RegistrationError::InvalidRedirectUri(d)
            | RegistrationError::InvalidClientMetadata(d)
            | RegistrationError::InvalidToken(d)
            | RegistrationError::Forbidden(d)
            | RegistrationError::NotFound(d)
            | RegistrationError::ServerError(d) => d,
        }
    }
}

/// Why a launch could not be created (the launch API, the EHR simulator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The request names something that does not exist or breaks a rule: the caller's fault.
    #[error("{0}")]
    Invalid(String),
    /// The admin token is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// An open-sandbox power on a server that is not an open sandbox (and has no admin token).
    #[error("{0}")]
    Forbidden(String),
    #[error("server error: {0}")]
    Internal(String),
}

impl From<StoreError> for LaunchError {
    fn from(e: StoreError) -> LaunchError {
        LaunchError::Internal(e.0)
    }
}

/// Why a bearer token was not accepted at the resource server (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("no bearer token: send `Authorization: Bearer <access_token>`")]
    Missing,
    #[error("{0}")]
    Invalid(&'static str),
}

/// A storage failure: always the server's fault, never the client's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> TokenError {
        TokenError::ServerError(e.0)
    }
}

impl From<StoreError> for AuthorizeError {
    fn from(e: StoreError) -> AuthorizeError {
        AuthorizeError::Internal(e.0)
    }
}

impl From<StoreError> for RegistrationError {
    fn from(e: StoreError) -> RegistrationError {
        RegistrationError::ServerError(e.0)
    }
}
