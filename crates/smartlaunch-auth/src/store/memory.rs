//! [`MemoryStore`]: every storage port in memory, for the core's unit tests (and other crates'
//! tests, with the `memory` feature).  One lock around the whole state makes each method one
//! atomic step, with the same outcomes as the SQLite store's conditional statements: of racing
//! redemptions of a code, rotations of a refresh token, uses of a launch or of an assertion
//! `jti`, exactly one wins ([`rules`](super::rules) checks both stores against the same rules).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    ClientEntryRow, ClientStore, CodeGrant, CodeRedemption, CodeStore, FlowStore, Grant, GrantStore, HandTrace,
    Housekeeping, InspectorStore, KeyStore, LaunchRedemption, LaunchStore, PatientDirectory, PendingAuthorization,
    RefreshToken, Session, SessionStore, StoreResult, UserAuthorization, UserStore,
};
use crate::client::Client;
use crate::error::StoreError;
use crate::inspect::{LaunchEvent, LaunchRecord};
use crate::keys::KeyMaterial;
use crate::launch::{BackendSession, Launch};
use crate::retention::{Purge, MAX_EVENTS_PER_TRACE};
use crate::revocation::ALL_USERS;
use crate::users::User;
use crate::UnixTime;

/// The in-memory store.  Clones share the state (like clones of a database pool).
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Newest last, with the time each was added.
    keys: Vec<(KeyMaterial, UnixTime)>,
    clients: BTreeMap<String, Client>,
    jtis: HashMap<(String, String), UnixTime>,
    users: BTreeMap<String, User>,
    launches: BTreeMap<String, (Launch, Option<UnixTime>)>,
    backend_sessions: BTreeMap<String, BackendSession>,
    /// (sequence number, trace, event), oldest first.
    events: Vec<(u64, String, LaunchEvent)>,
    next_seq: u64,
    /// Per trace: events recorded in all, and the time of the last.
    traces: HashMap<String, (u64, UnixTime)>,
    trace_switches: BTreeMap<String, UnixTime>,
    hand_traces: BTreeMap<String, HandTrace>,
    sessions: HashMap<String, Session>,
    /// id → (request, expiry as inserted: an update changes the request only).
    pending: HashMap<String, (PendingAuthorization, UnixTime)>,
    /// (user, client) → (scope, approved at).
    consents: BTreeMap<(String, String), (String, UnixTime)>,
    /// code hash → (grant, expires at, used at).
    codes: HashMap<String, (CodeGrant, UnixTime, Option<UnixTime>)>,
    grants: BTreeMap<String, Grant>,
    refresh_tokens: HashMap<String, RefreshToken>,
    revocations: BTreeMap<String, UnixTime>,
    access_revocations: BTreeMap<(String, String), UnixTime>,
    /// Patient id → its encounter ids, newest first.
    patients: BTreeMap<String, Vec<String>>,
}

/// Which stored grants to revoke.
enum Grants<'a> {
    Id(&'a str),
    OfClient(&'a str),
    OfUserAndClient(&'a str, &'a str),
}

impl State {
    /// Records each revocation, deletes the grants' refresh tokens and marks them revoked.
    fn revoke_grants(&mut self, which: Grants<'_>, now: UnixTime) {
        let matches = |g: &Grant| match which {
            Grants::Id(id) => g.id == id,
            Grants::OfClient(client) => g.client_id == client,
            Grants::OfUserAndClient(user, client) => g.user_id == user && g.client_id == client,
        };
        let ids: Vec<String> = self.grants.values().filter(|g| matches(g)).map(|g| g.id.clone()).collect();
        for id in &ids {
            let Some(grant) = self.grants.get_mut(id) else { continue };
            if grant.revoked_at.is_none() {
                self.revocations.entry(id.clone()).or_insert(now);
                grant.revoked_at = Some(now);
            }
        }
        self.refresh_tokens.retain(|_, r| !ids.contains(&r.grant_id));
    }
}

fn duplicate(what: &str) -> StoreError {
    StoreError(format!("UNIQUE constraint failed: {what}"))
}

fn newest<T: Clone>(mut items: Vec<T>, created_at: impl Fn(&T) -> UnixTime, limit: i64) -> Vec<T> {
    items.sort_by_key(|i| std::cmp::Reverse(created_at(i)));
    items.truncate(usize::try_from(limit).unwrap_or(0));
    items
}

impl MemoryStore {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a Patient with its encounters (newest first), for the pickers.
    pub fn add_patient(&self, patient_id: &str, encounter_ids: &[&str]) {
        self.state().patients.insert(patient_id.to_owned(), encounter_ids.iter().map(|e| (*e).to_owned()).collect());
    }
}

impl KeyStore for MemoryStore {
    async fn keys(&self) -> StoreResult<Option<KeyMaterial>> {
        Ok(self.state().keys.last().map(|(k, _)| k.clone()))
    }

    async fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> StoreResult<KeyMaterial> {
        let mut s = self.state();
        if s.keys.is_empty() {
            s.keys.push((fresh.clone(), 0));
        }
        Ok(s.keys[s.keys.len() - 1].0.clone())
    }

    async fn all_keys(&self) -> StoreResult<Vec<(KeyMaterial, UnixTime)>> {
        Ok(self.state().keys.clone())
    }

    async fn add_keys(&self, keys: &KeyMaterial, now: UnixTime) -> StoreResult<()> {
        self.state().keys.push((keys.clone(), now));
        Ok(())
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let mut s = self.state();
        let before = s.keys.len();
        s.keys.retain(|(k, _)| k.kid != kid);
        Ok(s.keys.len() < before)
    }
}

impl ClientStore for MemoryStore {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        let mut s = self.state();
        if s.clients.contains_key(&client.client_id) {
            return Err(duplicate("clients.client_id"));
        }
        s.clients.insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        Ok(self.state().clients.get(client_id).cloned())
    }

    async fn client_and_backend_session(&self, client_id: &str, now: UnixTime) -> StoreResult<Option<ClientEntryRow>> {
        let s = self.state();
        Ok(s.clients.get(client_id).map(|c| {
            let session = s.backend_sessions.get(client_id).filter(|b| b.expires_at > now).cloned();
            let switch = s.trace_switches.get(client_id).copied().filter(|until| *until > now);
            (c.clone(), session, switch)
        }))
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        let mut all: Vec<Client> = self.state().clients.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(all)
    }

    async fn update_client(&self, client: &Client, spent_token_hash: Option<&str>) -> StoreResult<bool> {
        let mut s = self.state();
        match s.clients.get_mut(&client.client_id) {
            Some(stored) if stored.registration_token_hash.as_deref() == spent_token_hash => {
                stored.metadata = client.metadata.clone();
                stored.registration_token_hash = client.registration_token_hash.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut s = self.state();
        let key = (client_id.to_owned(), jti_hash.to_owned());
        match s.jtis.get(&key) {
            Some(live) if *live > now => Ok(false),
            _ => {
                s.jtis.insert(key, expires_at);
                Ok(true)
            }
        }
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut s = self.state();
        let deleted = s.clients.remove(client_id).is_some();
        s.revoke_grants(Grants::OfClient(client_id), now);
        s.access_revocations.insert((ALL_USERS.to_owned(), client_id.to_owned()), now);
        s.codes.retain(|_, (g, _, _)| g.client_id != client_id);
        s.consents.retain(|(_, c), _| c != client_id);
        s.backend_sessions.remove(client_id);
        s.trace_switches.remove(client_id);
        Ok(deleted)
    }
}

impl UserStore for MemoryStore {
    async fn insert_user(&self, user: &User) -> StoreResult<bool> {
        let mut s = self.state();
        if s.users.contains_key(&user.id) || s.users.values().any(|u| u.username == user.username) {
            return Ok(false);
        }
        s.users.insert(user.id.clone(), user.clone());
        Ok(true)
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        Ok(self.state().users.values().find(|u| u.username == username).cloned())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        Ok(self.state().users.get(id).cloned())
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        let mut all: Vec<User> = self.state().users.values().cloned().collect();
        all.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(all)
    }

    async fn user_by_fhir_user(&self, fhir_user: &str) -> StoreResult<Option<User>> {
        let s = self.state();
        Ok(s.users.values().filter(|u| u.fhir_user == fhir_user).min_by(|a, b| a.username.cmp(&b.username)).cloned())
    }
}

impl LaunchStore for MemoryStore {
    async fn insert_launch(&self, launch: &Launch) -> StoreResult<()> {
        let mut s = self.state();
        if s.launches.contains_key(&launch.id_hash) {
            return Err(duplicate("launches.id_hash"));
        }
        s.launches.insert(launch.id_hash.clone(), (launch.clone(), None));
        Ok(())
    }

    async fn put_backend_session(&self, session: &BackendSession) -> StoreResult<()> {
        self.state().backend_sessions.insert(session.client_id.clone(), session.clone());
        Ok(())
    }

    async fn recent_backend_sessions(&self, limit: i64) -> StoreResult<Vec<BackendSession>> {
        let all = self.state().backend_sessions.values().cloned().collect();
        Ok(newest(all, |b: &BackendSession| b.created_at, limit))
    }

    async fn recent_launches(&self, limit: i64) -> StoreResult<Vec<Launch>> {
        let all = self.state().launches.values().map(|(l, _)| l.clone()).collect();
        Ok(newest(all, |l: &Launch| l.created_at, limit))
    }

    async fn launch(&self, id_hash: &str) -> StoreResult<Option<(Launch, Option<UnixTime>)>> {
        Ok(self.state().launches.get(id_hash).cloned())
    }
}

impl InspectorStore for MemoryStore {
    async fn record_event(&self, trace: &str, event: &LaunchEvent) -> StoreResult<()> {
        let mut s = self.state();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.events.push((seq, trace.to_owned(), event.clone()));
        let entry = s.traces.entry(trace.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(event.at);
        let kept = s.events.iter().filter(|(_, t, _)| t == trace).count();
        let over = kept.saturating_sub(usize::try_from(MAX_EVENTS_PER_TRACE).unwrap_or(usize::MAX));
        if over > 0 {
            let mut left = over;
            s.events.retain(|(_, t, _)| {
                let drop = left > 0 && t == trace;
                left -= usize::from(drop);
                !drop
            });
        }
        Ok(())
    }

    async fn launch_by_trace(&self, trace: &str) -> StoreResult<Option<Launch>> {
        let all = self.state().launches.values().filter(|(l, _)| l.trace_id == trace).map(|(l, _)| l.clone()).collect();
        Ok(newest(all, |l: &Launch| l.created_at, 1).pop())
    }

    async fn user_launches(&self, user_id: &str, limit: i64) -> StoreResult<Vec<Launch>> {
        let all = self
            .state()
            .launches
            .values()
            .filter(|(l, _)| l.user_id.as_deref() == Some(user_id))
            .map(|(l, _)| l.clone())
            .collect();
        Ok(newest(all, |l: &Launch| l.created_at, limit))
    }

    async fn set_trace_switch(&self, client_id: &str, until: Option<UnixTime>) -> StoreResult<()> {
        let mut s = self.state();
        match until {
            Some(until) => s.trace_switches.insert(client_id.to_owned(), until),
            None => s.trace_switches.remove(client_id),
        };
        Ok(())
    }

    async fn trace_switches(&self, now: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        let s = self.state();
        Ok(s.trace_switches.iter().filter(|(_, until)| **until > now).map(|(c, u)| (c.clone(), *u)).collect())
    }

    async fn insert_hand_trace(&self, trace: &HandTrace) -> StoreResult<()> {
        let mut s = self.state();
        if s.hand_traces.contains_key(&trace.trace_id) {
            return Err(duplicate("hand_traces.trace_id"));
        }
        s.hand_traces.insert(trace.trace_id.clone(), trace.clone());
        Ok(())
    }

    async fn hand_trace(&self, trace_id: &str) -> StoreResult<Option<HandTrace>> {
        Ok(self.state().hand_traces.get(trace_id).cloned())
    }

    async fn recent_hand_traces(&self, limit: i64) -> StoreResult<Vec<HandTrace>> {
        let all = self.state().hand_traces.values().cloned().collect();
        Ok(newest(all, |h: &HandTrace| h.created_at, limit))
    }

    async fn launch_events(&self, trace: &str) -> StoreResult<Vec<LaunchEvent>> {
        Ok(self.launch_record(trace).await?.events)
    }

    async fn launch_record(&self, trace: &str) -> StoreResult<LaunchRecord> {
        let s = self.state();
        let events: Vec<LaunchEvent> =
            s.events.iter().filter(|(_, t, _)| t == trace).map(|(_, _, e)| e.clone()).collect();
        let recorded = s.traces.get(trace).map_or(0, |(n, _)| *n);
        Ok(LaunchRecord { dropped: recorded.saturating_sub(events.len() as u64), events })
    }
}

impl LaunchRedemption for MemoryStore {
    async fn use_launch(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let mut s = self.state();
        match s.launches.get_mut(id_hash) {
            Some((launch, used_at @ None)) if launch.expires_at > now => {
                *used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl SessionStore for MemoryStore {
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let mut s = self.state();
        if s.sessions.contains_key(&session.id_hash) {
            return Err(duplicate("sessions.id_hash"));
        }
        s.sessions.insert(session.id_hash.clone(), session.clone());
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>> {
        Ok(self.state().sessions.get(id_hash).filter(|s| s.expires_at > now).cloned())
    }

    async fn session_user(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<(Session, User)>> {
        let s = self.state();
        let Some(session) = s.sessions.get(id_hash).filter(|s| s.expires_at > now) else {
            return Ok(None);
        };
        Ok(s.users.get(&session.user_id).map(|u| (session.clone(), u.clone())))
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.state().sessions.remove(id_hash);
        Ok(())
    }
}

impl FlowStore for MemoryStore {
    async fn insert_pending(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        let mut s = self.state();
        if s.pending.contains_key(&pending.id) {
            return Err(duplicate("pending_authorizations.id"));
        }
        s.pending.insert(pending.id.clone(), (pending.clone(), pending.expires_at));
        Ok(())
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        Ok(self.state().pending.get(id).filter(|(_, expires_at)| *expires_at > now).map(|(p, _)| p.clone()))
    }

    async fn update_pending(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        if let Some((stored, _)) = self.state().pending.get_mut(&pending.id) {
            *stored = pending.clone();
        }
        Ok(())
    }

    async fn delete_pending(&self, id: &str) -> StoreResult<bool> {
        Ok(self.state().pending.remove(id).is_some())
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        Ok(self.state().consents.get(&(user_id.to_owned(), client_id.to_owned())).map(|(scope, _)| scope.clone()))
    }

    async fn put_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> StoreResult<()> {
        self.state().consents.insert((user_id.to_owned(), client_id.to_owned()), (scope.to_owned(), now));
        Ok(())
    }
}

impl CodeStore for MemoryStore {
    async fn insert_code(&self, code_hash: &str, grant: &CodeGrant, expires_at: UnixTime) -> StoreResult<()> {
        let mut s = self.state();
        if s.codes.contains_key(code_hash) {
            return Err(duplicate("authorization_codes.code_hash"));
        }
        s.codes.insert(code_hash.to_owned(), (grant.clone(), expires_at, None));
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption> {
        let mut s = self.state();
        Ok(match s.codes.get_mut(code_hash) {
            Some((grant, expires_at, used_at @ None)) if *expires_at > now => {
                *used_at = Some(now);
                CodeRedemption::Redeemed(Box::new(grant.clone()))
            }
            Some((grant, _, Some(_))) => CodeRedemption::Replayed { grant_id: grant.grant_id.clone() },
            _ => CodeRedemption::Unknown,
        })
    }
}

impl GrantStore for MemoryStore {
    async fn insert_grant(&self, grant: &Grant, refresh: &RefreshToken) -> StoreResult<()> {
        let mut s = self.state();
        if s.grants.contains_key(&grant.id) {
            return Err(duplicate("grants.id"));
        }
        if s.refresh_tokens.contains_key(&refresh.token_hash) {
            return Err(duplicate("refresh_tokens.token_hash"));
        }
        s.grants.insert(grant.id.clone(), grant.clone());
        s.refresh_tokens.insert(refresh.token_hash.clone(), refresh.clone());
        Ok(())
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        Ok(self.state().grants.get(id).cloned())
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        Ok(self.state().refresh_tokens.get(token_hash).cloned())
    }

    async fn rotate_refresh(&self, old_hash: &str, new: &RefreshToken, now: UnixTime) -> StoreResult<bool> {
        let mut s = self.state();
        if s.refresh_tokens.get(old_hash).is_none_or(|r| r.used_at.is_some()) {
            return Ok(false);
        }
        if s.refresh_tokens.contains_key(&new.token_hash) {
            return Err(duplicate("refresh_tokens.token_hash"));
        }
        if let Some(old) = s.refresh_tokens.get_mut(old_hash) {
            old.used_at = Some(now);
        }
        s.refresh_tokens.insert(new.token_hash.clone(), new.clone());
        Ok(true)
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let mut s = self.state();
        // The grant may never have been stored (no refresh token): record it all the same.
        s.revocations.entry(grant_id.to_owned()).or_insert(now);
        s.revoke_grants(Grants::Id(grant_id), now);
        Ok(())
    }

    async fn revoked_grants(&self, since: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        let s = self.state();
        Ok(s.revocations.iter().filter(|(_, at)| **at >= since).map(|(g, at)| (g.clone(), *at)).collect())
    }

    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<()> {
        let mut s = self.state();
        s.access_revocations.insert((user_id.to_owned(), client_id.to_owned()), now);
        s.revoke_grants(Grants::OfUserAndClient(user_id, client_id), now);
        s.consents.remove(&(user_id.to_owned(), client_id.to_owned()));
        Ok(())
    }

    async fn access_revocations(&self, since: UnixTime) -> StoreResult<Vec<(String, String, UnixTime)>> {
        let s = self.state();
        Ok(s.access_revocations
            .iter()
            .filter(|(_, at)| **at >= since)
            .map(|((user, client), at)| (user.clone(), client.clone(), *at))
            .collect())
    }

    async fn user_authorizations(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<UserAuthorization>> {
        let s = self.state();
        let mut out: Vec<UserAuthorization> = s
            .consents
            .iter()
            .filter(|((user, _), _)| user == user_id)
            .map(|((_, client_id), (scope, approved_at))| {
                let of_app = |g: &&Grant| g.user_id == user_id && g.client_id == *client_id;
                let refreshable = s.grants.values().filter(of_app).filter(|g| g.revoked_at.is_none()).any(|g| {
                    s.refresh_tokens.values().any(|r| r.grant_id == g.id && r.used_at.is_none() && r.expires_at > now)
                });
                let launch_trace = s
                    .launches
                    .values()
                    .filter(|(l, _)| l.user_id.as_deref() == Some(user_id) && l.client_id == *client_id)
                    .max_by_key(|(l, _)| l.created_at)
                    .map(|(l, _)| l.trace_id.clone());
                let trace = launch_trace.or_else(|| {
                    s.grants
                        .values()
                        .filter(of_app)
                        .filter(|g| g.trace.is_some())
                        .max_by_key(|g| g.created_at)?
                        .trace
                        .clone()
                });
                UserAuthorization {
                    client_id: client_id.clone(),
                    scope: scope.clone(),
                    approved_at: *approved_at,
                    refreshable,
                    trace: trace.filter(|t| !t.is_empty()),
                }
            })
            .collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.approved_at));
        Ok(out)
    }
}

impl PatientDirectory for MemoryStore {
    async fn patient_exists(&self, patient_id: &str) -> StoreResult<bool> {
        Ok(self.state().patients.contains_key(patient_id))
    }

    async fn patient_encounters(&self, patient_id: &str) -> StoreResult<Vec<String>> {
        Ok(self.state().patients.get(patient_id).cloned().unwrap_or_default())
    }
}

impl Housekeeping for MemoryStore {
    async fn purge_expired(&self, purge: &Purge) -> StoreResult<()> {
        let mut s = self.state();
        s.codes.retain(|_, (_, expires_at, _)| *expires_at > purge.codes);
        s.pending.retain(|_, (_, expires_at)| *expires_at > purge.expired);
        s.events.retain(|(_, _, e)| e.at > purge.events);
        s.sessions.retain(|_, x| x.expires_at > purge.expired);
        s.refresh_tokens.retain(|_, r| r.expires_at > purge.expired);
        s.launches.retain(|_, (l, _)| l.expires_at > purge.launches);
        s.backend_sessions.retain(|_, b| b.expires_at > purge.launches);
        s.trace_switches.retain(|_, until| *until > purge.launches);
        s.hand_traces.retain(|_, h| h.expires_at > purge.launches);
        s.traces.retain(|_, (_, last_at)| *last_at > purge.events);
        s.jtis.retain(|_, expires_at| *expires_at > purge.expired);
        let max = usize::try_from(purge.max_events.max(0)).unwrap_or(usize::MAX);
        let excess = s.events.len().saturating_sub(max);
        s.events.drain(..excess);
        Ok(())
    }
}
