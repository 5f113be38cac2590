//! The SMART App Launch 2.2 / OAuth 2.0 protocol core of smartlaunch.
//!
//! Typed requests in, typed results out; the caller passes the time; storage sits behind small
//! ports by aggregate ([`store`]), composed into [`store::AuthStore`].  Nothing here knows
//! about HTTP or HTML: the binary's handlers parse a request, call one function of
//! [`AuthService`] and render its result.

mod assertion_report;
pub mod authorize;
pub mod changes;
pub mod client;
pub mod client_assertion;
mod client_cache;
pub mod config;
pub mod error;
pub mod inspect;
pub mod jwk;
pub mod jwks_cache;
pub mod key_encryption;
pub mod keys;
pub mod launch;
pub mod pkce;
pub mod retention;
pub mod revocation;
pub mod secrets;
pub mod service;
pub mod signing_key;
pub mod store;
pub mod throttle;
pub mod token;
pub mod users;

pub use config::AuthConfig;
pub use error::{AuthorizeError, LaunchError, OAuthError, RegistrationError, TokenError};
pub use service::AuthService;

/// Seconds since the Unix epoch.  Every core function takes `now` from its caller.
pub type UnixTime = i64;
