//! The auth core's storage ports on both backends (docs/DESIGN.md "PostgreSQL"): the shared
//! storage rules of `smartlaunch_auth::store::rules` on PostgreSQL with many connections, each
//! port's behaviour as the same test on SQLite and PostgreSQL, and the races between nodes
//! (two `PgDb` pools on one database are two stateless nodes).

use std::future::Future;

use serde_json::json;
use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord, Step};
use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::launch::{BackendSession, Launch, LaunchContext, SimulatedError};
use smartlaunch_auth::retention::{Retention, MAX_EVENTS_PER_TRACE};
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::secrets::random_token;
use smartlaunch_auth::store::rules::{code_grant, grant, launch, refresh};
use smartlaunch_auth::store::{
    AuthStore, ClientStore, CodeRedemption, CodeStore, FlowStore, GrantStore, HandTrace, Housekeeping, InspectorStore,
    KeyStore, LaunchRedemption, LaunchStore, PatientDirectory, PendingAuthorization, Session, SessionStore,
    UserAuthorization, UserStore,
};
use smartlaunch_auth::users::User;
use smartlaunch_fhir::store::{Expected, ResourceStore};
use smartlaunch_store::{PgDb, SqliteDb};

#[path = "support/postgres.rs"]
mod support;

use support::{on_postgres, on_postgres_nodes};

/// Connections of the one node of the shared rules: more than their racers (16), so that they
/// all run at once.
const CONNECTIONS: u32 = 20;
/// Tasks racing in the node tests, alternating between two nodes.
const RACERS: usize = 16;
/// Connections per node in the node tests: more than the racers on each, and with the tests
/// running two at a time, well within the server's default limit of 100 shared by everyone.
const NODE_CONNECTIONS: u32 = 10;

/// Runs `body` on a fresh SQLite database, then removes it (also when `body` panics).
async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(SqliteDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("smartlaunch-auth-ports-test-{}", random_token(8)));
    let db = SqliteDb::open_dir(&dir).await.expect("open SQLite");
    let outcome = tokio::spawn(body(db.clone())).await;
    db.close().await;
    std::fs::remove_dir_all(&dir).ok();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The shared storage rules (which the in-memory double and SQLite pass too) on PostgreSQL.
mod rules_on_postgres {
    use smartlaunch_auth::store::rules;

    macro_rules! on_postgres {
        ($($rule:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $rule() {
                super::on_postgres(super::CONNECTIONS, |db| async move { rules::$rule(db).await.unwrap() }).await
            }
        )*};
    }

    on_postgres!(
        codes_are_single_use,
        refresh_rotation_is_atomic,
        assertion_jti_is_used_once,
        launch_is_used_once,
        client_update_is_conditional,
        purge_keeps_what_lives,
    );
}

/// Each behaviour as a test on SQLite and one on PostgreSQL: `sqlite::rule`, `postgres::rule`.
macro_rules! on_both {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::on_sqlite(super::$rule::<smartlaunch_store::SqliteDb>).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::on_postgres(4, super::$rule::<smartlaunch_store::PgDb>).await
                }
            )*
        }
    };
}

on_both!(
    keys_are_stored_once,
    clients_are_listed_updated_and_removed_with_what_they_were_issued,
    users_and_sessions,
    pending_requests_and_consents,
    grants_revocations_and_the_management_list,
    launches_and_backend_sessions,
    a_launch_keeps_its_newest_events_up_to_the_cap_and_counts_the_dropped,
    inspector_events_are_purged_by_age_and_in_total,
    launches_by_trace_and_user_switches_and_hand_traces,
    the_pickers_read_patients_and_their_encounters,
    a_registration_access_token_is_spent_once_even_when_used_concurrently,
);

fn client(id: &str, token: Option<&str>) -> Client {
    Client {
        client_id: id.into(),
        metadata: ClientMetadata {
            client_name: format!("App {id}"),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            initiate_login_uri: None,
            logo_uri: None,
            jwks: None,
            jwks_uri: None,
        },
        secret_hash: Some("secret-hash".into()),
        registration_token_hash: token.map(Into::into),
        created_at: 0,
    }
}

fn user(id: &str, username: &str, fhir_user: &str) -> User {
    User {
        id: id.into(),
        username: username.into(),
        password_hash: "hash".into(),
        fhir_user: fhir_user.into(),
        display_name: format!("User {id}"),
    }
}

fn keys(n: u8) -> KeyMaterial {
    KeyMaterial { kid: format!("k{n}"), rsa_pkcs8: vec![n; 8], hmac_secret: vec![n; 32] }
}

fn event(at: i64, n: usize) -> LaunchEvent {
    LaunchEvent::new(Step::Fhir, format!("GET Patient/p?n={n}"), "200 OK", at)
}

fn traced_launch(id: &str, trace: &str, user: Option<&str>, at: i64) -> Launch {
    Launch { trace_id: trace.into(), user_id: user.map(Into::into), created_at: at, ..launch(id, at + 300) }
}

async fn keys_are_stored_once<S: KeyStore>(db: S) {
    assert!(db.keys().await.unwrap().is_none());
    assert_eq!(db.insert_keys_if_absent(&keys(1)).await.unwrap(), keys(1));
    assert_eq!(db.insert_keys_if_absent(&keys(2)).await.unwrap(), keys(1), "the first keys stay");
    assert_eq!(db.keys().await.unwrap(), Some(keys(1)));
}

async fn clients_are_listed_updated_and_removed_with_what_they_were_issued<S: AuthStore>(db: S) {
    db.insert_client(&client("b", Some("t0"))).await.unwrap();
    db.insert_client(&Client { created_at: 1, ..client("a", None) }).await.unwrap();
    assert_eq!(db.client("b").await.unwrap(), Some(client("b", Some("t0"))));
    assert!(db.client("none").await.unwrap().is_none());
    let ids: Vec<String> = db.clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(ids, ["b", "a"], "by creation");
    // A client without a registration token is updated with none (RFC 7592 by the admin).
    let mut renamed = client("a", None);
    renamed.metadata.client_name = "Renamed".into();
    assert!(db.update_client(&renamed, None).await.unwrap());
    assert!(!db.update_client(&renamed, Some("t0")).await.unwrap(), "a token it does not have");
    assert_eq!(db.client("a").await.unwrap().map(|c| c.metadata.client_name).as_deref(), Some("Renamed"));

    // Removing a client revokes what it was issued and deletes what hangs on it.
    db.insert_grant(&grant("g", 1_000), &refresh("r", "g", 1_000)).await.unwrap();
    db.insert_code("code", &code_grant("g2"), 1_000).await.unwrap();
    db.put_consent("u", "c", "openid", 5).await.unwrap();
    db.insert_client(&client("c", None)).await.unwrap();
    db.set_trace_switch("c", Some(1_000)).await.unwrap();
    assert!(db.delete_client("c", 50).await.unwrap());
    assert_eq!(db.access_revocations(50).await.unwrap(), vec![(ALL_USERS.to_string(), "c".to_string(), 50)]);
    assert!(db.client("c").await.unwrap().is_none());
    assert_eq!(db.grant("g").await.unwrap().and_then(|g| g.revoked_at), Some(50));
    assert!(db.refresh_token("r").await.unwrap().is_none());
    assert_eq!(db.redeem_code("code", 10).await.unwrap(), CodeRedemption::Unknown);
    assert!(db.consent("u", "c").await.unwrap().is_none());
    assert!(db.trace_switches(10).await.unwrap().is_empty());
    assert_eq!(db.revoked_grants(50).await.unwrap(), vec![("g".to_string(), 50)]);
    assert!(!db.delete_client("c", 51).await.unwrap(), "removed once");
}

async fn users_and_sessions<S: UserStore + SessionStore>(db: S) {
    assert!(db.insert_user(&user("u2", "zoe", "Patient/p")).await.unwrap());
    assert!(db.insert_user(&user("u1", "amy", "Practitioner/x")).await.unwrap());
    assert!(!db.insert_user(&user("u3", "amy", "Patient/q")).await.unwrap(), "a taken username");
    assert!(!db.insert_user(&user("u1", "bob", "Patient/q")).await.unwrap(), "a taken id");
    assert_eq!(db.user_by_username("zoe").await.unwrap(), Some(user("u2", "zoe", "Patient/p")));
    assert_eq!(db.user("u1").await.unwrap().map(|u| u.username).as_deref(), Some("amy"));
    assert!(db.user("u3").await.unwrap().is_none());
    let names: Vec<String> = db.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["amy", "zoe"]);
    assert_eq!(db.user_by_fhir_user("Patient/p").await.unwrap().map(|u| u.id).as_deref(), Some("u2"));
    assert!(db.user_by_fhir_user("Patient/none").await.unwrap().is_none());

    let session =
        Session { id_hash: "s".into(), user_id: "u1".into(), csrf: "x".into(), created_at: 1, expires_at: 100 };
    db.insert_session(&session).await.unwrap();
    assert_eq!(db.session("s", 99).await.unwrap(), Some(session.clone()));
    assert!(db.session("s", 100).await.unwrap().is_none(), "expired at expires_at");
    let (found, signed_in) = db.session_user("s", 50).await.unwrap().unwrap();
    assert_eq!((found, signed_in), (session, user("u1", "amy", "Practitioner/x")));
    assert!(db.session_user("s", 100).await.unwrap().is_none());
    db.delete_session("s").await.unwrap();
    assert!(db.session("s", 50).await.unwrap().is_none());
}

fn pending(id: &str, expires_at: i64) -> PendingAuthorization {
    PendingAuthorization {
        id: id.into(),
        client_id: "c".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        state: "st".into(),
        code_challenge: "x".into(),
        aud: "http://127.0.0.1/fhir".into(),
        nonce: None,
        scope: "openid".into(),
        prompt: None,
        user_id: None,
        session_id: None,
        auth_time: None,
        patient: None,
        encounter: None,
        encounter_decided: false,
        approved: None,
        csrf: "csrf".into(),
        expires_at,
        ehr_launch: false,
        context: Default::default(),
        options: Default::default(),
        trace: None,
        patient_choices: Vec::new(),
        browser: "b".into(),
        required_user: None,
    }
}

async fn pending_requests_and_consents<S: FlowStore>(db: S) {
    let mut p = pending("p", 100);
    db.insert_pending(&p).await.unwrap();
    assert_eq!(db.pending("p", 99).await.unwrap(), Some(p.clone()));
    assert!(db.pending("p", 100).await.unwrap().is_none(), "expired at expires_at");
    p.user_id = Some("u".into());
    p.patient = Some("pat".into());
    db.update_pending(&p).await.unwrap();
    assert_eq!(db.pending("p", 50).await.unwrap(), Some(p));
    assert!(db.delete_pending("p").await.unwrap());
    assert!(!db.delete_pending("p").await.unwrap(), "a racing completion finds it gone");

    assert!(db.consent("u", "c").await.unwrap().is_none());
    db.put_consent("u", "c", "openid", 1).await.unwrap();
    db.put_consent("u", "c", "openid fhirUser", 2).await.unwrap();
    assert_eq!(db.consent("u", "c").await.unwrap().as_deref(), Some("openid fhirUser"));
}

async fn grants_revocations_and_the_management_list<S: AuthStore>(db: S) {
    let mut full = grant("g", 1_000);
    full.context = LaunchContext { intent: Some("reconcile".into()), ..Default::default() };
    full.simulate_error = Some(SimulatedError::BackendInvalidScope);
    full.trace = Some("trace-g".into());
    full.patient = Some("p".into());
    full.session_id = Some("s".into());
    db.insert_grant(&full, &refresh("r", "g", 1_000)).await.unwrap();
    assert_eq!(db.grant("g").await.unwrap(), Some(full));
    assert!(db.grant("none").await.unwrap().is_none());
    let token = db.refresh_token("r").await.unwrap().unwrap();
    assert_eq!(token, refresh("r", "g", 1_000));

    // The management page: approved apps, whether a refresh token lives, the newest trace.
    db.put_consent("u", "c", "openid offline_access", 10).await.unwrap();
    db.put_consent("u", "other", "openid", 20).await.unwrap();
    db.insert_launch(&traced_launch("l", "trace-l", Some("u"), 5)).await.unwrap();
    let list = db.user_authorizations("u", 100).await.unwrap();
    assert_eq!(
        list,
        vec![
            UserAuthorization {
                client_id: "other".into(),
                scope: "openid".into(),
                approved_at: 20,
                refreshable: false,
                trace: None
            },
            UserAuthorization {
                client_id: "c".into(),
                scope: "openid offline_access".into(),
                approved_at: 10,
                refreshable: true,
                trace: Some("trace-l".into())
            },
        ]
    );
    assert!(!db.user_authorizations("u", 1_000).await.unwrap()[1].refreshable, "the token expired");

    // "Revoke access": every token of the user for the client, the grants and the consent.
    db.revoke_user_client("u", "c", 30).await.unwrap();
    assert_eq!(db.access_revocations(30).await.unwrap(), vec![("u".to_string(), "c".to_string(), 30)]);
    assert!(db.access_revocations(31).await.unwrap().is_empty());
    assert_eq!(db.grant("g").await.unwrap().and_then(|g| g.revoked_at), Some(30));
    assert!(db.refresh_token("r").await.unwrap().is_none());
    assert!(db.consent("u", "c").await.unwrap().is_none());
    assert_eq!(db.revoked_grants(0).await.unwrap(), vec![("g".to_string(), 30)]);
    // Revoking a revoked grant keeps the first revocation.
    db.revoke_grant("g", 40).await.unwrap();
    assert_eq!(db.revoked_grants(0).await.unwrap(), vec![("g".to_string(), 30)]);
}

async fn launches_and_backend_sessions<S: LaunchStore + LaunchRedemption>(db: S) {
    let older = traced_launch("a", "trace-a", None, 1);
    let newer = traced_launch("b", "trace-b", Some("u"), 2);
    db.insert_launch(&older).await.unwrap();
    db.insert_launch(&newer).await.unwrap();
    assert_eq!(db.recent_launches(10).await.unwrap(), vec![newer.clone(), older.clone()]);
    assert_eq!(db.recent_launches(1).await.unwrap(), vec![newer]);
    assert!(db.use_launch("a", 10).await.unwrap());
    assert_eq!(db.launch("a").await.unwrap(), Some((older, Some(10))));
    assert!(db.launch("none").await.unwrap().is_none());

    let session = |client: &str, trace: &str, at: i64| BackendSession {
        client_id: client.into(),
        trace_id: trace.into(),
        simulate_error: Some(SimulatedError::BackendInvalidScope),
        created_at: at,
        expires_at: at + 100,
    };
    db.put_backend_session(&session("svc", "t1", 1)).await.unwrap();
    db.put_backend_session(&session("other", "t2", 2)).await.unwrap();
    db.put_backend_session(&BackendSession { simulate_error: None, ..session("svc", "t3", 3) }).await.unwrap();
    assert_eq!(
        db.recent_backend_sessions(10).await.unwrap(),
        vec![BackendSession { simulate_error: None, ..session("svc", "t3", 3) }, session("other", "t2", 2)],
        "one per client, the newest replacing the previous"
    );
    assert_eq!(db.recent_backend_sessions(1).await.unwrap().len(), 1);
}

async fn a_launch_keeps_its_newest_events_up_to_the_cap_and_counts_the_dropped<S: InspectorStore>(db: S) {
    let cap = MAX_EVENTS_PER_TRACE as usize;
    for n in 0..cap + 20 {
        db.record_event("busy", &event(10, n)).await.unwrap();
    }
    db.record_event("quiet", &event(10, 0)).await.unwrap();
    // Read at once: every event recorded before the read is there.
    let record = db.launch_record("busy").await.unwrap();
    assert_eq!(record.events.len(), cap);
    assert_eq!(record.dropped, 20);
    assert_eq!(record.events[0].request, "GET Patient/p?n=20", "the oldest go first");
    assert_eq!(record.events[cap - 1].request, format!("GET Patient/p?n={}", cap + 19));
    let quiet = db.launch_record("quiet").await.unwrap();
    assert_eq!((quiet.events.len(), quiet.dropped), (1, 0));
    assert_eq!(db.launch_events("quiet").await.unwrap(), quiet.events);
    assert_eq!(db.launch_record("unknown").await.unwrap(), LaunchRecord::default());
}

async fn inspector_events_are_purged_by_age_and_in_total<S: InspectorStore + Housekeeping>(db: S) {
    let retention = Retention::default();
    let now = 100 + retention.event_age;
    db.record_event("old", &event(100, 0)).await.unwrap();
    db.record_event("new", &event(now, 0)).await.unwrap();
    db.launch_record("new").await.unwrap();
    db.purge_expired(&retention.purge(now)).await.unwrap();
    assert_eq!(db.launch_record("old").await.unwrap(), LaunchRecord::default(), "events and counter gone");
    assert_eq!(db.launch_record("new").await.unwrap().events.len(), 1);
    // At most `max_events` in all, the newest.
    for n in 0..5 {
        db.record_event(&format!("t{n}"), &event(now, n)).await.unwrap();
    }
    db.launch_record("t0").await.unwrap();
    db.purge_expired(&Retention { max_events: 3, ..Retention::default() }.purge(now)).await.unwrap();
    let kept: Vec<usize> = {
        let mut kept = Vec::new();
        for n in 0..5 {
            kept.push(db.launch_record(&format!("t{n}")).await.unwrap().events.len());
        }
        kept
    };
    assert_eq!(kept, [0, 0, 1, 1, 1], "the newest stay");
}

async fn launches_by_trace_and_user_switches_and_hand_traces<S: AuthStore>(db: S) {
    db.insert_launch(&traced_launch("a", "trace-a", Some("u1"), 1)).await.unwrap();
    db.insert_launch(&traced_launch("b", "trace-b", Some("u2"), 2)).await.unwrap();
    db.insert_launch(&traced_launch("c", "trace-c", Some("u1"), 3)).await.unwrap();
    assert_eq!(db.launch_by_trace("trace-b").await.unwrap().map(|l| l.id_hash).as_deref(), Some("b"));
    assert!(db.launch_by_trace("nope").await.unwrap().is_none());
    let mine: Vec<String> = db.user_launches("u1", 10).await.unwrap().into_iter().map(|l| l.trace_id).collect();
    assert_eq!(mine, ["trace-c", "trace-a"], "only the user's own, newest first");
    assert_eq!(db.user_launches("u1", 1).await.unwrap().len(), 1);

    db.insert_client(&client("app", None)).await.unwrap();
    db.set_trace_switch("app", Some(100)).await.unwrap();
    assert_eq!(db.client_and_backend_session("app", 50).await.unwrap().unwrap().2, Some(100));
    assert_eq!(db.client_and_backend_session("app", 100).await.unwrap().unwrap().2, None, "off at its time");
    assert_eq!(db.trace_switches(50).await.unwrap(), vec![("app".to_string(), 100)]);
    db.set_trace_switch("app", Some(200)).await.unwrap();
    assert_eq!(db.trace_switches(150).await.unwrap(), vec![("app".to_string(), 200)], "extended");
    db.set_trace_switch("app", None).await.unwrap();
    assert_eq!(db.client_and_backend_session("app", 50).await.unwrap().unwrap().2, None, "switched off");
    let session = BackendSession {
        client_id: "app".into(),
        trace_id: "t1".into(),
        simulate_error: None,
        created_at: 10,
        expires_at: 100,
    };
    db.put_backend_session(&session).await.unwrap();
    assert_eq!(db.client_and_backend_session("app", 50).await.unwrap().unwrap().1, Some(session));
    assert_eq!(db.client_and_backend_session("app", 100).await.unwrap().unwrap().1, None, "expired");
    assert!(db.client_and_backend_session("nobody", 10).await.unwrap().is_none());

    let hand =
        |id: &str, at: i64| HandTrace { trace_id: id.into(), client_id: "app".into(), created_at: at, expires_at: 500 };
    db.insert_hand_trace(&hand("h1", 5)).await.unwrap();
    db.insert_hand_trace(&hand("h2", 6)).await.unwrap();
    assert_eq!(db.hand_trace("h1").await.unwrap(), Some(hand("h1", 5)));
    assert!(db.hand_trace("h3").await.unwrap().is_none());
    assert_eq!(db.recent_hand_traces(5).await.unwrap(), vec![hand("h2", 6), hand("h1", 5)]);
    assert_eq!(db.recent_hand_traces(1).await.unwrap(), vec![hand("h2", 6)]);
}

async fn the_pickers_read_patients_and_their_encounters<S: PatientDirectory + ResourceStore>(db: S) {
    let now = "2026-01-01T00:00:00Z";
    db.put(&json!({"resourceType": "Patient", "id": "p"}), Expected::Any, now).await.unwrap();
    db.put(&json!({"resourceType": "Patient", "id": "gone"}), Expected::Any, now).await.unwrap();
    db.delete("Patient", "gone", Expected::Any, now).await.unwrap();
    for (id, start) in [("e1", Some("2020-01-01")), ("e2", Some("2024-01-01")), ("e0", None)] {
        let mut encounter = json!({"resourceType": "Encounter", "id": id, "status": "finished",
                                   "subject": {"reference": "Patient/p"}});
        if let Some(start) = start {
            encounter["period"] = json!({"start": start});
        }
        db.put(&encounter, Expected::Any, now).await.unwrap();
    }
    assert!(db.patient_exists("p").await.unwrap());
    assert!(!db.patient_exists("gone").await.unwrap(), "a deleted patient is not offered");
    assert!(!db.patient_exists("none").await.unwrap());
    assert_eq!(db.patient_encounters("p").await.unwrap(), ["e2", "e1", "e0"], "newest first, undated last");
    assert!(db.patient_encounters("none").await.unwrap().is_empty());
}

/// Review (issue 8) on both backends, through the service: RFC 7592 registration access tokens
/// are spent on use, and requests racing with one token have exactly one winner.
async fn a_registration_access_token_is_spent_once_even_when_used_concurrently<S: AuthStore>(db: S) {
    use smartlaunch_auth::client::RegistrationRequest;
    use smartlaunch_auth::config::AuthConfig;
    use smartlaunch_auth::key_encryption::{seal_material, KeyEncryptionKey};
    use smartlaunch_auth::service::Registrant;
    use smartlaunch_auth::AuthService;
    // Sealed: on PostgreSQL a node refuses a plaintext key.
    let kek = KeyEncryptionKey::from_base64("c21hcnRsYXVuY2gtdGVzdC1ub2Rlcy0zMi1ieXRlcyE=").unwrap();
    db.insert_keys_if_absent(&seal_material(Some(&kek), &KeyMaterial::generate()).unwrap()).await.unwrap();
    let registrant = || Registrant { bearer: None, host: None, cross_site: false };
    let config = AuthConfig { key_encryption_key: Some(kek), ..AuthConfig::new("http://127.0.0.1:1") };
    let auth = AuthService::open(db, config, 1_000).await.unwrap();
    let request = || RegistrationRequest {
        redirect_uris: Some(vec!["http://127.0.0.1:9/cb".into()]),
        token_endpoint_auth_method: Some("none".into()),
        ..Default::default()
    };
    let registered = auth.register(request(), registrant(), 1_000).await.unwrap();
    let id = registered.client.client_id.clone();
    let mut token = registered.registration_access_token.unwrap();
    for round in 0..10 {
        let mut update = request();
        update.client_id = Some(id.clone());
        let (a, b, c) = tokio::join!(
            auth.read_registration(&id, Some(&token)),
            auth.update_registration(&id, Some(&token), update, registrant()),
            auth.read_registration(&id, Some(&token)),
        );
        let winners: Vec<String> =
            [a, b, c].into_iter().filter_map(|r| r.ok()).map(|r| r.registration_access_token.unwrap()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {} requests spent one registration access token", winners.len());
        token = winners[0].clone();
    }
}

/// Runs `task(node, i)` `RACERS` times at once, alternating between the nodes.
async fn across_nodes<T, F, Fut>(nodes: &[PgDb], task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(PgDb, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..RACERS).map(|i| tokio::spawn(task(nodes[i % nodes.len()].clone(), i))).collect();
    let mut out = Vec::with_capacity(RACERS);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Nodes starting together on an empty database each generate keys: one set is stored, and
/// every node signs with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_racing_at_start_share_one_set_of_keys() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, _| async move {
        let stored =
            across_nodes(&nodes, |db, i| async move { db.insert_keys_if_absent(&keys(i as u8 + 1)).await.unwrap() })
                .await;
        assert!(stored.iter().all(|k| *k == stored[0]), "every node got the same keys");
        for node in &nodes {
            assert_eq!(node.keys().await.unwrap().as_ref(), Some(&stored[0]));
        }
    })
    .await
}

/// Checklist item 49 across nodes: a `jti` replayed on another node is refused, also when an
/// expired record of it is taken over by racing uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jti_replayed_across_nodes_is_refused() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, _| async move {
        let fresh =
            across_nodes(&nodes, |db, _| async move { db.use_assertion_jti("c", "jti", 300, 10).await.unwrap() }).await;
        assert_eq!(fresh.iter().filter(|f| **f).count(), 1, "of racing uses on two nodes exactly one is fresh");
        assert!(!nodes[1].use_assertion_jti("c", "jti", 400, 299).await.unwrap(), "a replay on the other node");
        // The record expired: racing uses take it over once.
        let taken =
            across_nodes(&nodes, |db, _| async move { db.use_assertion_jti("c", "jti", 900, 300).await.unwrap() })
                .await;
        assert_eq!(taken.iter().filter(|f| **f).count(), 1, "an expired record is taken over once");
        assert!(!nodes[0].use_assertion_jti("c", "jti", 900, 500).await.unwrap());
    })
    .await
}

/// A code minted on one node is redeemed on another, once, and a replay anywhere names its grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_minted_on_one_node_is_redeemed_once_on_any() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, _| async move {
        nodes[0].insert_code("code", &code_grant("g1"), 1_000).await.unwrap();
        let outcomes = across_nodes(&nodes, |db, _| async move { db.redeem_code("code", 10).await.unwrap() }).await;
        let redeemed = outcomes.iter().filter(|o| matches!(o, CodeRedemption::Redeemed(_))).count();
        assert_eq!(redeemed, 1);
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, CodeRedemption::Redeemed(_))
                || *o == CodeRedemption::Replayed { grant_id: "g1".into() }));
    })
    .await
}

/// Checklist items 74, 76 across nodes: a rotation racing a revocation of its grant (a reuse
/// detected on the other node) never leaves a live refresh token of the revoked grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_racing_a_revocation_on_another_node_leaves_no_live_token() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, _| async move {
        for round in 0..30 {
            let g = format!("g{round}");
            nodes[0].insert_grant(&grant(&g, 1_000), &refresh(&format!("{g}-r0"), &g, 1_000)).await.unwrap();
            let (a, b) = (nodes[0].clone(), nodes[1].clone());
            let (ga, gb) = (g.clone(), g.clone());
            let rotate = tokio::spawn(async move {
                a.rotate_refresh(&format!("{ga}-r0"), &refresh(&format!("{ga}-r1"), &ga, 1_000), 5).await.unwrap()
            });
            let revoke = tokio::spawn(async move { b.revoke_grant(&gb, 6).await.unwrap() });
            let rotated = rotate.await.unwrap();
            revoke.await.unwrap();
            assert_eq!(nodes[1].grant(&g).await.unwrap().and_then(|g| g.revoked_at), Some(6));
            for token in ["r0", "r1"] {
                assert!(
                    nodes[1].refresh_token(&format!("{g}-{token}")).await.unwrap().is_none(),
                    "round {round} (rotated: {rotated}): token {token} of a revoked grant is gone"
                );
            }
        }
    })
    .await
}

/// The interleaving a rotation and a revocation of its grant must survive, forced: the old token
/// is held locked (as by a slow transaction) while the rotation starts on node A, and the
/// revocation starts on node B meanwhile.  Without the rotation's lock on its grant, the
/// revocation's delete would run on a snapshot without the new token, and the new token of a
/// revoked grant would live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_held_up_while_its_grant_is_revoked_leaves_no_live_token() {
    use sqlx::{Connection, PgConnection};
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, url| async move {
        nodes[0].insert_grant(&grant("g", 1_000), &refresh("r0", "g", 1_000)).await.unwrap();
        let mut holder = PgConnection::connect(&url).await.unwrap();
        let mut held = holder.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = 'r0' FOR UPDATE")
            .execute(&mut *held)
            .await
            .unwrap();
        let a = nodes[0].clone();
        let rotate = tokio::spawn(async move { a.rotate_refresh("r0", &refresh("r1", "g", 1_000), 5).await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let b = nodes[1].clone();
        let revoke = tokio::spawn(async move { b.revoke_grant("g", 6).await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        held.commit().await.unwrap();
        rotate.await.unwrap();
        revoke.await.unwrap();
        assert_eq!(nodes[1].grant("g").await.unwrap().and_then(|g| g.revoked_at), Some(6));
        assert!(nodes[1].refresh_token("r1").await.unwrap().is_none(), "the new token of a revoked grant is gone");
        assert!(nodes[1].refresh_token("r0").await.unwrap().is_none());
    })
    .await
}

/// Housekeeping runs on every node: runs that meet do the work once (the others find it being
/// done and return), and what expired is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purges_on_two_nodes_at_once_purge_once_and_completely() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, _| async move {
        for n in 0..50 {
            nodes[0].insert_code(&format!("code{n}"), &code_grant("g"), 50).await.unwrap();
            nodes[1].use_assertion_jti("c", &format!("jti{n}"), 50, 10).await.unwrap();
        }
        nodes[0].insert_code("live", &code_grant("g"), 500).await.unwrap();
        let purge = || Retention::default().purge(100);
        // A run that finds another one at work returns at once; that one has committed once
        // every run returned.
        across_nodes(&nodes, |db, _| async move { db.purge_expired(&purge()).await.unwrap() }).await;
        assert_eq!(nodes[1].redeem_code("code0", 10).await.unwrap(), CodeRedemption::Unknown);
        assert!(nodes[0].use_assertion_jti("c", "jti0", 900, 100).await.unwrap(), "the expired record is gone");
        assert!(matches!(nodes[1].redeem_code("live", 100).await.unwrap(), CodeRedemption::Redeemed(_)));
    })
    .await
}

/// Launch events recorded at once on many connections of two nodes: a read on either node sees
/// every one of them, at most the cap (the newest), and counts the rest as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_recorded_at_once_on_two_nodes_are_all_seen_and_capped() {
    on_postgres_nodes(2, NODE_CONNECTIONS, |nodes, url| async move {
        let per_task = 40;
        across_nodes(&nodes, |db, i| async move {
            for n in 0..per_task {
                db.record_event("busy", &event(10, i * per_task + n)).await.unwrap();
            }
        })
        .await;
        let total = RACERS * per_task;
        let cap = MAX_EVENTS_PER_TRACE as usize;
        assert!(total > cap);
        for node in &nodes {
            let record = node.launch_record("busy").await.unwrap();
            assert_eq!(record.events.len(), cap);
            assert_eq!(record.dropped as usize, total - cap);
        }
        // The next event trims what racing recorders left over the cap.
        nodes[0].record_event("busy", &event(11, total)).await.unwrap();
        let record = nodes[1].launch_record("busy").await.unwrap();
        assert_eq!(record.events.last().map(|e| e.request.clone()), Some(format!("GET Patient/p?n={total}")));
        // Trimmed once every 64 events, not at each: the table holds at most the cap and the
        // events since the last trim (plus what racing recorders left).
        for n in 0..200 {
            nodes[n % 2].record_event("busy", &event(12, total + 1 + n)).await.unwrap();
        }
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM launch_events WHERE trace_id = 'busy'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(stored as usize <= cap + 64 + RACERS, "{stored} events stored");
        sqlx::Connection::close(conn).await.unwrap();
    })
    .await
}
