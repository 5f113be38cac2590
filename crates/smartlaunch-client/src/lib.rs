//! # smartlaunch-client
//!
//! The app's side of SMART App Launch 2.2, in Rust: EHR and standalone launch with PKCE and a
//! 256-bit `state` bound to the user's browser, the `iss` allow-list on by default, every
//! client type (public, `client_secret_basic`, `client_secret_post`, `private_key_jwt` with
//! RS384 or ES384), a typed token response with the launch context, a verified id_token
//! (signature by `kid`, `iss`, `aud`, `exp`, `nonce`) and its `fhirUser`, sessions that refresh
//! before expiry and after a 401 with one refresh in flight, FHIR R4 calls with paging, backend
//! services and a Bulk Data `$export` client.
//!
//! The protocol core (everything outside `http`) has no HTTP client and no runtime.  The HTTP
//! layer (feature `http`, on by default) uses reqwest over rustls with aws-lc-rs.
//!
//! ## An EHR launch, start to finish
//!
//! ```no_run
//! use smartlaunch_client::{MemoryStore, AuthorizationStore, SmartApp};
//!
//! # async fn run(iss: &str, launch: &str, callback_query: &str) -> Result<(), smartlaunch_client::Error> {
//! let app = SmartApp::builder("my-app", "https://app.example/callback")
//!     .scope("launch openid fhirUser patient/*.rs")
//!     .allowed_issuers(["https://ehr.example/fhir"])
//!     .build()?;
//! let store = MemoryStore::default();
//!
//! // 1. The EHR opened https://app.example/launch?iss=…&launch=…
//! let (authorize_url, pending) = app.ehr_launch(iss, launch).await?;
//! let cookie = store.save(&pending)?; // set it as an HttpOnly cookie, then redirect:
//! println!("302 to {authorize_url}");
//!
//! // 2. The browser came back to /callback?code=…&state=… with that cookie.
//! let pending = store.take(Some(&cookie), smartlaunch_client::unix_now())?;
//! let session = app.complete(&pending, callback_query).await?;
//! let fhir = session.fhir();
//! let patient = fhir.read_patient().await?;
//! println!("{:?}, banner needed: {}", smartlaunch_client::resource::patient_name(&patient),
//!          session.context().need_patient_banner);
//! # Ok(()) }
//! ```
//!
//! A standalone launch is the same with [`SmartApp::standalone_launch`]; a backend service
//! uses [`BackendService`]; the `axum` feature wires the routes for you.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod authorize;
#[cfg(feature = "axum")]
pub mod axum_routes;
pub mod discovery;
mod error;
pub mod id_token;
pub mod issuer;
pub mod pkce;
pub mod resource;
pub mod state_store;
pub mod token;

#[cfg(feature = "http")]
mod http;

pub use authorize::{AuthorizationRequest, PendingAuthorization};
pub use discovery::SmartConfiguration;
pub use error::{outcome_issues, Error, OAuthError, OAuthErrorCode, OutcomeIssue};
pub use id_token::{FhirUser, IdTokenClaims};
pub use issuer::IssuerPolicy;
pub use state_store::{AuthorizationStore, MemoryStore, SignedCookieStore};
pub use token::{FhirContextItem, TokenResponse};

#[cfg(feature = "http")]
pub use http::{
    discover, http_client, BackendService, ClientAuth, Clock, ExportFile, ExportJob, ExportManifest, ExportRequest,
    FhirClient, JwksCache, LaunchContext, PrivateKey, SavedSession, Session, SmartApp,
};

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
