//! What the protocol core keeps, and the storage ports it needs: one small trait per
//! aggregate (in the manner of fosite's `CoreStorage`), composed into [`AuthStore`].  The
//! SQLite and PostgreSQL implementations live in `smartlaunch-store`; [`memory::MemoryStore`]
//! is the in-memory double of the core's unit tests, and [`rules`] holds the storage rules all
//! must keep.

mod clients;
mod directory;
mod flows;
mod grants;
mod housekeeping;
mod inspector;
mod keys;
mod launches;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
#[cfg(any(test, feature = "memory"))]
pub mod rules;
mod sessions;
mod users;

use serde::{Deserialize, Serialize};

use crate::authorize::Prompt;
use crate::client::Client;
use crate::error::StoreError;
use crate::launch::{BackendSession, LaunchContext, LaunchOptions, SimulatedError};
use crate::UnixTime;

pub use clients::ClientStore;
pub use directory::PatientDirectory;
pub use flows::{CodeStore, FlowStore};
pub use grants::GrantStore;
pub use housekeeping::Housekeeping;
pub use inspector::InspectorStore;
pub use keys::KeyStore;
pub use launches::{LaunchRedemption, LaunchStore};
pub use sessions::SessionStore;
pub use users::UserStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// A signed-in browser session.  The cookie carries a random id; the store keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    /// The CSRF token of forms posted with this session (sign-out).
    pub csrf: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// An authorization request in progress: validated once, kept server-side, and referenced by
/// the browser steps only through its unguessable `id` (ARCHITECTURE.md "Security design").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub code_challenge: String,
    pub aud: String,
    pub nonce: Option<String>,
    /// The scopes to ask consent for: the request negotiated against the client's limit.
    pub scope: String,
    /// OpenID Connect `prompt`: `login` forces a fresh sign-in, `consent` the consent page.
    pub prompt: Option<Prompt>,
    /// Set when the user signs in (or a session is found) for this request.
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<UnixTime>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The encounter step is done (possibly with no encounter).
    pub encounter_decided: bool,
    /// The scopes the user approved on the consent page of this request.
    pub approved: Option<String>,
    /// The CSRF token every form of this request must post back.
    pub csrf: String,
    pub expires_at: UnixTime,
    /// An EHR launch: the request named a `launch` the EHR issued.
    #[serde(default)]
    pub ehr_launch: bool,
    /// The EHR launch's context beyond patient and encounter.
    #[serde(default)]
    pub context: LaunchContext,
    /// The launch's developer options.
    #[serde(default)]
    pub options: LaunchOptions,
    /// The launch inspector's key, when the request belongs to a launch.
    #[serde(default)]
    pub trace: Option<String>,
    /// The patients the picker offers (a developer-launcher launch); empty: any.
    #[serde(default)]
    pub patient_choices: Vec<String>,
    /// The hash of the flow cookie of the browser that started the request: every step must
    /// come from that browser (ARCHITECTURE.md "Security design").
    #[serde(default)]
    pub browser: String,
    /// A launch that names its user: only that user may sign in.
    #[serde(default)]
    pub required_user: Option<String>,
}

/// What an authorization code stands for.  Bound to client, redirect_uri, PKCE challenge,
/// aud, user and grant (checklist items 29, 31).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub aud: String,
    pub user_id: String,
    pub fhir_user: String,
    pub user_name: String,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub nonce: Option<String>,
    /// The sign-in session, which `online_access` refresh tokens live no longer than.
    pub session_id: Option<String>,
    pub auth_time: UnixTime,
    #[serde(default)]
    pub context: LaunchContext,
    /// A failure the developer launcher asked for at the token endpoint or the FHIR API.
    #[serde(default)]
    pub simulate_error: Option<SimulatedError>,
    #[serde(default)]
    pub trace: Option<String>,
}

/// The result of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First, valid use.
    Redeemed(Box<CodeGrant>),
    /// The code was used before: the grant it produced must be revoked (RFC 6749 §4.1.2).
    Replayed { grant_id: String },
    /// Unknown or expired.
    Unknown,
}

/// An authorization: what a user granted a client, with the launch context.  Its refresh
/// tokens form one family; revoking the grant revokes them and its access tokens.  A grant is
/// stored when it has refresh tokens; one without lives only in its access tokens (and in the
/// revocation list, if revoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub fhir_user: String,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// Set for `online_access`: the grant ends with this session.
    pub session_id: Option<String>,
    /// Absolute end of the refresh-token family (checklist item 71).
    pub refresh_expires_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// The EHR launch's context beyond patient and encounter (empty for standalone).
    pub context: LaunchContext,
    /// A failure the developer launcher asked for after the code (refresh, FHIR API).
    pub simulate_error: Option<SimulatedError>,
    /// The FHIR base the tokens are for: ours, or a developer-launcher simulation's.
    pub aud: String,
    /// The launch inspector's key, when the grant came from a launch.
    pub trace: Option<String>,
}

/// An app a user has approved, as the management page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuthorization {
    pub client_id: String,
    pub scope: String,
    pub approved_at: UnixTime,
    /// Whether a refresh token of this app is still live (offline or online access).
    pub refreshable: bool,
    /// The launch inspector's key of the user's newest traced launch of this app.
    pub trace: Option<String>,
}

/// A launch made by hand (no launcher, no launch API) that its client's trace switch traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandTrace {
    pub trace_id: String,
    pub client_id: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A client as the client cache keeps it: the client, its live backend-service session and
/// until when its trace switch is on (all read in one query).
pub type ClientEntryRow = (Client, Option<BackendSession>, Option<UnixTime>);

/// A refresh token as stored (by hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
}

/// Every port the protocol core needs: what [`AuthService`](crate::AuthService) is generic
/// over.  Any type that implements all the ports is an `AuthStore`.  Every method of every port
/// is one atomic operation.
pub trait AuthStore:
    KeyStore
    + ClientStore
    + UserStore
    + SessionStore
    + LaunchStore
    + LaunchRedemption
    + InspectorStore
    + FlowStore
    + CodeStore
    + GrantStore
    + PatientDirectory
    + Housekeeping
    + Send
    + Sync
    + 'static
{
}

impl<T> AuthStore for T where
    T: KeyStore
        + ClientStore
        + UserStore
        + SessionStore
        + LaunchStore
        + LaunchRedemption
        + InspectorStore
        + FlowStore
        + CodeStore
        + GrantStore
        + PatientDirectory
        + Housekeeping
        + Send
        + Sync
        + 'static
{
}
