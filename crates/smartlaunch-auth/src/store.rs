//! What the protocol core keeps, and the storage trait it needs.  The sqlx implementation lives
//! in `smartlaunch-store`; its tests run these rules against the real database.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::StoreError;
use crate::inspect::{LaunchEvent, LaunchRecord};
use crate::keys::KeyMaterial;
use crate::launch::{BackendSession, Launch, LaunchContext, LaunchOptions, SimulatedError};
use crate::retention::Purge;
use crate::users::User;
use crate::UnixTime;

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
    pub prompt: Option<String>,
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

/// The storage the protocol core needs.  Every method is one atomic operation.
pub trait AuthStore: Send + Sync + 'static {
    /// The signing keys, if any were stored yet.
    fn keys(&self) -> impl Future<Output = StoreResult<Option<KeyMaterial>>> + Send;
    /// Stores `fresh` unless keys exist (another node may have raced us); returns the stored keys.
    fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> impl Future<Output = StoreResult<KeyMaterial>> + Send;

    fn insert_client(&self, client: &Client) -> impl Future<Output = StoreResult<()>> + Send;
    fn client(&self, client_id: &str) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    /// A client with its backend-service session if one is live at `now`, in one query (the
    /// client cache holds both: a token request of a client without a session costs nothing
    /// more).
    fn client_and_backend_session(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<ClientEntryRow>>> + Send;
    fn clients(&self) -> impl Future<Output = StoreResult<Vec<Client>>> + Send;
    /// Replaces a client's metadata and registration token hash (RFC 7592), only while its
    /// registration token hash is still `spent_token_hash` (one conditional statement, so of
    /// requests racing with one token exactly one wins); false otherwise or when it does not
    /// exist.
    fn update_client(
        &self,
        client: &Client,
        spent_token_hash: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a `private_key_jwt` assertion's `jti` (hashed) until `expires_at`: true the first
    /// time, false when a live record exists (a replay).  One atomic statement, so of racing
    /// uses exactly one gets true, on every node that shares the database.
    fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes a client and revokes everything issued to it (its stored grants, and every
    /// access token until `now`: an access revocation of user [`ALL_USERS`]); false when it
    /// did not exist.
    ///
    /// [`ALL_USERS`]: crate::revocation::ALL_USERS
    fn delete_client(&self, client_id: &str, now: UnixTime) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Inserts a user; false when the username is taken.
    fn insert_user(&self, user: &User) -> impl Future<Output = StoreResult<bool>> + Send;
    fn user_by_username(&self, username: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    fn user(&self, id: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// Every user, by username.
    fn users(&self) -> impl Future<Output = StoreResult<Vec<User>>> + Send;
    /// The user whose `fhirUser` is `fhir_user` (`Practitioner/…`, `Patient/…`), if any.
    fn user_by_fhir_user(&self, fhir_user: &str) -> impl Future<Output = StoreResult<Option<User>>> + Send;

    fn insert_launch(&self, launch: &Launch) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores a backend-service session, replacing the client's previous one.
    fn put_backend_session(&self, session: &BackendSession) -> impl Future<Output = StoreResult<()>> + Send;
    /// The newest backend-service sessions, newest first (the launcher's list).
    fn recent_backend_sessions(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<BackendSession>>> + Send;
    /// The newest launches, newest first (the launcher's list).
    fn recent_launches(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<Launch>>> + Send;
    /// A launch by the hash of its id, with when it was used (expired ones too, to say why).
    fn launch(&self, id_hash: &str) -> impl Future<Output = StoreResult<Option<(Launch, Option<UnixTime>)>>> + Send;
    /// Appends a request to a launch's inspector record.  The store may write it later, off the
    /// request path (and drop it, counted, when it is overwhelmed); reads of the record see
    /// every event recorded before them.  A launch keeps at most
    /// [`MAX_EVENTS_PER_TRACE`](crate::retention::MAX_EVENTS_PER_TRACE) events, the newest.
    fn record_event(&self, trace: &str, event: &LaunchEvent) -> impl Future<Output = StoreResult<()>> + Send;
    /// The launch whose inspector key is `trace`.
    fn launch_by_trace(&self, trace: &str) -> impl Future<Output = StoreResult<Option<Launch>>> + Send;
    /// A user's newest launches (those that name the user), newest first.
    fn user_launches(&self, user_id: &str, limit: i64) -> impl Future<Output = StoreResult<Vec<Launch>>> + Send;
    /// Turns a client's trace switch on until `until`, or off (`None`).
    fn set_trace_switch(
        &self,
        client_id: &str,
        until: Option<UnixTime>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The clients whose trace switch is on at `now`, with until when.
    fn trace_switches(&self, now: UnixTime) -> impl Future<Output = StoreResult<Vec<(String, UnixTime)>>> + Send;
    fn insert_hand_trace(&self, trace: &HandTrace) -> impl Future<Output = StoreResult<()>> + Send;
    fn hand_trace(&self, trace_id: &str) -> impl Future<Output = StoreResult<Option<HandTrace>>> + Send;
    /// The newest hand-made traced launches, newest first (the launcher's list).
    fn recent_hand_traces(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<HandTrace>>> + Send;
    /// A launch's inspector record, oldest first.
    fn launch_events(&self, trace: &str) -> impl Future<Output = StoreResult<Vec<LaunchEvent>>> + Send;
    /// A launch's inspector record, oldest first, with the number of its events dropped (over
    /// the cap, too old, or lost under overload).
    fn launch_record(&self, trace: &str) -> impl Future<Output = StoreResult<LaunchRecord>> + Send;
    /// Marks a live launch used with one conditional update: of racing uses exactly one gets true.
    fn use_launch(&self, id_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<bool>> + Send;

    fn insert_session(&self, session: &Session) -> impl Future<Output = StoreResult<()>> + Send;
    /// A live session (not expired at `now`).
    fn session(&self, id_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<Option<Session>>> + Send;
    /// A live session and its user, in one query.
    fn session_user(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<(Session, User)>>> + Send;
    fn delete_session(&self, id_hash: &str) -> impl Future<Output = StoreResult<()>> + Send;

    fn insert_pending(&self, pending: &PendingAuthorization) -> impl Future<Output = StoreResult<()>> + Send;
    fn pending(
        &self,
        id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<PendingAuthorization>>> + Send;
    fn update_pending(&self, pending: &PendingAuthorization) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes the pending request; false when it was already gone (a racing completion).
    fn delete_pending(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The scopes a user last approved for a client.
    fn consent(&self, user_id: &str, client_id: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn insert_code(
        &self,
        code_hash: &str,
        grant: &CodeGrant,
        expires_at: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks the code used with one conditional update: of racing redemptions exactly one
    /// gets [`CodeRedemption::Redeemed`].
    fn redeem_code(&self, code_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;

    /// Stores a grant and the first refresh token of its family, in one transaction.
    fn insert_grant(&self, grant: &Grant, refresh: &RefreshToken) -> impl Future<Output = StoreResult<()>> + Send;
    fn grant(&self, id: &str) -> impl Future<Output = StoreResult<Option<Grant>>> + Send;
    fn refresh_token(&self, token_hash: &str) -> impl Future<Output = StoreResult<Option<RefreshToken>>> + Send;
    /// Marks `old_hash` used and stores `new` in one transaction; false (and nothing stored)
    /// when `old_hash` was already used: a racing or replayed refresh.
    fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records the revocation of a grant (stored or not) and deletes its unused refresh tokens.
    fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> impl Future<Output = StoreResult<()>> + Send;
    /// Grants revoked at or after `since` (to fill the revocation list at start).
    fn revoked_grants(&self, since: UnixTime) -> impl Future<Output = StoreResult<Vec<(String, UnixTime)>>> + Send;

    /// "Revoke access": records that every token the user gave the client until `now` is
    /// revoked, deletes the remembered consent and revokes the stored grants, in one transaction.
    fn revoke_user_client(
        &self,
        user_id: &str,
        client_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// (user, client, at) revocations made at or after `since`.
    fn access_revocations(
        &self,
        since: UnixTime,
    ) -> impl Future<Output = StoreResult<Vec<(String, String, UnixTime)>>> + Send;
    /// The apps a user has approved: (client id, approved scopes, when, has a live refresh token).
    fn user_authorizations(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Vec<UserAuthorization>>> + Send;

    /// Whether the Patient exists (a picked patient must be real).
    fn patient_exists(&self, patient_id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The ids of the patient's encounters, newest first.
    fn patient_encounters(&self, patient_id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Deletes what the housekeeping run `purge` names: expired pending requests, sessions,
    /// refresh tokens, launches and backend-service sessions, unused expired codes, used codes past the replay window,
    /// and old inspector events.
    fn purge_expired(&self, purge: &Purge) -> impl Future<Output = StoreResult<()>> + Send;
}
