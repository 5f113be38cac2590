//! The storage-dependent security rules, run against the real SQLite database
//! (ARCHITECTURE.md "Tests": not only against an in-memory double).

use std::path::PathBuf;

use smartlaunch_auth::inspect::{LaunchEvent, LaunchRecord, Step};
use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::retention::{Retention, MAX_EVENTS_PER_TRACE};
use smartlaunch_auth::secrets::random_token;
use smartlaunch_auth::store::{
    ClientStore, CodeGrant, CodeRedemption, CodeStore, Grant, GrantStore, Housekeeping, InspectorStore, KeyStore,
    LaunchRedemption, LaunchStore, RefreshToken, Session, SessionStore,
};
use smartlaunch_store::SqliteDb;

#[path = "rules/inspector.rs"]
mod inspector;

async fn db() -> (SqliteDb, PathBuf) {
    let dir = std::env::temp_dir().join(format!("smartlaunch-store-test-{}", random_token(8)));
    (SqliteDb::open_dir(&dir).await.unwrap(), dir)
}

fn code_grant(grant_id: &str) -> CodeGrant {
    CodeGrant {
        grant_id: grant_id.into(),
        client_id: "c".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "x".into(),
        aud: "http://127.0.0.1/fhir".into(),
        user_id: "u".into(),
        fhir_user: "Patient/p".into(),
        user_name: "P".into(),
        scope: "openid".into(),
        patient: None,
        encounter: None,
        nonce: None,
        session_id: None,
        auth_time: 0,
        context: Default::default(),
        simulate_error: None,
        trace: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_is_single_use_even_when_redeemed_concurrently() {
    let (db, dir) = db().await;
    db.insert_code("hash", &code_grant("g1"), 1_000).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.redeem_code("hash", 10).await.unwrap() })
        })
        .collect();
    let mut redeemed = 0;
    for t in tasks {
        match t.await.unwrap() {
            CodeRedemption::Redeemed(g) => {
                assert_eq!(g.grant_id, "g1");
                redeemed += 1
            }
            CodeRedemption::Replayed { grant_id } => assert_eq!(grant_id, "g1"),
            CodeRedemption::Unknown => panic!("a used code must be reported as replayed"),
        }
    }
    assert_eq!(redeemed, 1);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn expired_and_unknown_codes_are_not_redeemed() {
    let (db, dir) = db().await;
    db.insert_code("hash", &code_grant("g1"), 100).await.unwrap();
    assert_eq!(db.redeem_code("hash", 100).await.unwrap(), CodeRedemption::Unknown);
    assert_eq!(db.redeem_code("other", 10).await.unwrap(), CodeRedemption::Unknown);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_rotation_is_atomic() {
    let (db, dir) = db().await;
    let grant = Grant {
        id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        fhir_user: "Patient/p".into(),
        scope: "offline_access".into(),
        patient: None,
        encounter: None,
        session_id: None,
        refresh_expires_at: Some(1_000),
        created_at: 0,
        revoked_at: None,
        context: Default::default(),
        simulate_error: None,
        aud: "http://127.0.0.1/fhir".into(),
        trace: None,
    };
    let first = RefreshToken {
        token_hash: "r0".into(),
        grant_id: "g".into(),
        client_id: "c".into(),
        expires_at: 1_000,
        used_at: None,
    };
    db.insert_grant(&grant, &first).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let next = RefreshToken {
                    token_hash: format!("r{}", i + 1),
                    grant_id: "g".into(),
                    client_id: "c".into(),
                    expires_at: 1_000,
                    used_at: None,
                };
                db.rotate_refresh("r0", &next, 5).await.unwrap()
            })
        })
        .collect();
    let mut rotated = 0;
    for t in tasks {
        rotated += t.await.unwrap() as usize;
    }
    assert_eq!(rotated, 1, "exactly one racing refresh wins");
    assert_eq!(db.refresh_token("r0").await.unwrap().unwrap().used_at, Some(5));
    db.revoke_grant("g", 7).await.unwrap();
    assert_eq!(db.grant("g").await.unwrap().unwrap().revoked_at, Some(7));
    assert_eq!(db.revoked_grants(7).await.unwrap(), vec![("g".to_string(), 7)]);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let (db, dir) = db().await;
    assert!(db.keys().await.unwrap().is_none());
    let material = smartlaunch_auth::keys::KeyMaterial::generate();
    let stored = db.insert_keys_if_absent(&material).await.unwrap();
    assert_eq!(stored, material);
    let other = smartlaunch_auth::keys::KeyMaterial::generate();
    assert_eq!(db.insert_keys_if_absent(&other).await.unwrap(), material, "a racing node keeps the first keys");
    db.close().await;
    let reopened = SqliteDb::open_dir(&dir).await.unwrap();
    assert_eq!(reopened.keys().await.unwrap(), Some(material));
    reopened.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn revocations_persist_for_grants_that_were_never_stored() {
    let (db, dir) = db().await;
    // A grant without refresh tokens lives only in its access tokens: its revocation is kept.
    db.revoke_grant("unstored", 50).await.unwrap();
    db.revoke_user_client("user", "client", 60).await.unwrap();
    db.close().await;
    let reopened = SqliteDb::open_dir(&dir).await.unwrap();
    assert_eq!(reopened.revoked_grants(0).await.unwrap(), vec![("unstored".to_string(), 50)]);
    assert_eq!(reopened.access_revocations(0).await.unwrap(), vec![("user".to_string(), "client".to_string(), 60)]);
    assert!(reopened.revoked_grants(51).await.unwrap().is_empty(), "older revocations are not reloaded");
    reopened.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_is_used_once_even_when_used_concurrently() {
    let (db, dir) = db().await;
    let launch = Launch {
        id_hash: "launch-hash".into(),
        client_id: "c".into(),
        user_id: None,
        session_id: None,
        patient: Some("p".into()),
        patient_choices: Vec::new(),
        encounter: None,
        context: Default::default(),
        options: Default::default(),
        standalone: false,
        trace_id: "t".into(),
        reuse: Default::default(),
        created_at: 0,
        expires_at: 300,
    };
    db.insert_launch(&launch).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.use_launch("launch-hash", 10).await.unwrap() })
        })
        .collect();
    let mut used = 0;
    for t in tasks {
        used += usize::from(t.await.unwrap());
    }
    assert_eq!(used, 1);
    let (stored, used_at) = db.launch("launch-hash").await.unwrap().unwrap();
    assert_eq!((&stored, used_at), (&launch, Some(10)));
    db.insert_launch(&Launch { id_hash: "late".into(), ..stored }).await.unwrap();
    assert!(!db.use_launch("late", 300).await.unwrap(), "expired at expires_at");
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// Rows of a table, read through a connection of its own (what is really on disk).
async fn rows(dir: &std::path::Path, table: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("smartlaunch.db").display())).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn event(at: i64, n: usize) -> LaunchEvent {
    LaunchEvent::new(Step::Fhir, format!("GET Patient/p?n={n}"), "200 OK", at)
}

#[tokio::test]
async fn a_used_code_is_kept_until_its_expiry_for_the_replay_rule_and_no_longer() {
    let (db, dir) = db().await;
    let retention = Retention::default();
    db.insert_code("used", &code_grant("g1"), 100).await.unwrap();
    db.insert_code("unused", &code_grant("g2"), 100).await.unwrap();
    db.insert_code("later", &code_grant("g3"), 200).await.unwrap();
    assert!(matches!(db.redeem_code("used", 50).await.unwrap(), CodeRedemption::Redeemed(_)));
    // Until its expiry a used code is kept: a replay is recognised (and revokes the grant).
    db.purge_expired(&retention.purge(99)).await.unwrap();
    assert_eq!(rows(&dir, "authorization_codes").await, 3);
    assert_eq!(db.redeem_code("used", 99).await.unwrap(), CodeRedemption::Replayed { grant_id: "g1".into() });
    // At expiry it goes, used or not: nothing could redeem it any more.
    db.purge_expired(&retention.purge(100)).await.unwrap();
    assert_eq!(rows(&dir, "authorization_codes").await, 1, "only the code that is still live stays");
    assert!(matches!(db.redeem_code("later", 150).await.unwrap(), CodeRedemption::Redeemed(_)));
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn expired_sessions_pending_requests_refresh_tokens_and_launches_are_purged() {
    let (db, dir) = db().await;
    for (id, expires_at) in [("expired", 100), ("live", 1_000)] {
        let session = Session { id_hash: id.into(), user_id: "u".into(), csrf: "c".into(), created_at: 0, expires_at };
        db.insert_session(&session).await.unwrap();
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("smartlaunch.db").display())).await.unwrap();
    for (id, expires_at) in [("expired", 100), ("live", 1_000)] {
        sqlx::query("INSERT INTO pending_authorizations (id, request, expires_at) VALUES (?, '{}', ?)")
            .bind(id)
            .bind(expires_at)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO launches (id_hash, client_id, data, created_at, expires_at) VALUES (?, 'c', '{}', 0, ?)",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, client_id, expires_at) VALUES (?, 'g', 'c', ?)")
            .bind(id)
            .bind(expires_at)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let retention = Retention::default();
    db.purge_expired(&retention.purge(100)).await.unwrap();
    for table in ["sessions", "pending_authorizations", "refresh_tokens"] {
        assert_eq!(rows(&dir, table).await, 1, "{table}: the expired one is gone");
    }
    assert_eq!(rows(&dir, "launches").await, 2, "an expired launch is kept a while to say “expired”");
    db.purge_expired(&retention.purge(100 + retention.expired_launch)).await.unwrap();
    assert_eq!(rows(&dir, "launches").await, 1);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_launch_keeps_its_newest_events_up_to_the_cap_and_counts_the_dropped() {
    let (db, dir) = db().await;
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
    assert_eq!(db.launch_record("unknown").await.unwrap(), LaunchRecord::default());
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn inspector_events_are_purged_by_age_and_in_total() {
    let (db, dir) = db().await;
    let retention = Retention::default();
    db.record_event("old", &event(100, 0)).await.unwrap();
    db.record_event("new", &event(100 + retention.event_age, 0)).await.unwrap();
    db.launch_record("new").await.unwrap();
    db.purge_expired(&retention.purge(100 + retention.event_age)).await.unwrap();
    let old = db.launch_record("old").await.unwrap();
    assert!(old.events.is_empty());
    assert_eq!(db.launch_record("new").await.unwrap().events.len(), 1);
    assert_eq!(rows(&dir, "launch_traces").await, 1, "the old trace's counter goes too");
    // At most `max_events` in all, the newest.
    for n in 0..5 {
        db.record_event(&format!("t{n}"), &event(100 + retention.event_age, n)).await.unwrap();
    }
    let tight = Retention { max_events: 3, ..Retention::default() };
    db.launch_record("t0").await.unwrap();
    db.purge_expired(&tight.purge(100 + retention.event_age)).await.unwrap();
    assert_eq!(rows(&dir, "launch_events").await, 3);
    assert_eq!(db.launch_record("t4").await.unwrap().events.len(), 1, "the newest stay");
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_purge_never_deletes_a_live_code_even_when_the_clock_went_back() {
    let (db, dir) = db().await;
    let retention = Retention::default();
    // Written out of time order: a long-lived code first, then one that expires earlier.
    db.insert_code("live", &code_grant("g1"), 500).await.unwrap();
    db.insert_code("expired", &code_grant("g2"), 100).await.unwrap();
    db.purge_expired(&retention.purge(150)).await.unwrap();
    assert!(matches!(db.redeem_code("live", 150).await.unwrap(), CodeRedemption::Redeemed(_)));
    assert_eq!(rows(&dir, "authorization_codes").await, 2, "the out-of-order row waits for a later run");
    db.purge_expired(&retention.purge(500)).await.unwrap();
    assert_eq!(rows(&dir, "authorization_codes").await, 0);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// The response budget (issue 7, item 6): a page stops at the first row that would pass
/// `max_bytes`, so a search, a type history or an instance history never holds more.
#[tokio::test]
async fn pages_stop_at_the_byte_budget() {
    use serde_json::json;
    use smartlaunch_fhir::search::query::SearchRequest;
    use smartlaunch_fhir::search::Constraint;
    use smartlaunch_fhir::store::{Expected, ResourceStore};
    let (db, dir) = db().await;
    let now = "2026-01-01T00:00:00Z";
    for n in 0..3 {
        let o = json!({"resourceType": "Observation", "id": format!("o{n}"), "status": "final",
                       "note": [{"text": "z".repeat(1_000)}]});
        db.put(&o, Expected::Absent, now).await.unwrap();
    }
    let mut o =
        json!({"resourceType": "Observation", "id": "o0", "status": "amended", "note": [{"text": "z".repeat(1_000)}]});
    db.put(&o, Expected::Version(1), now).await.unwrap();
    o["status"] = json!("final");
    db.put(&o, Expected::Version(2), now).await.unwrap();
    let all = [Constraint::everything()];
    let mut request = SearchRequest::matching(Vec::new());
    let page = db.search("Observation", &request, &all).await.unwrap();
    assert_eq!((page.resources.len(), page.total, page.over_budget), (3, 3, false));
    request.max_bytes = 2_500;
    let page = db.search("Observation", &request, &all).await.unwrap();
    assert_eq!((page.resources.len(), page.total, page.over_budget), (2, 3, true), "the third row would pass it");
    let history = db.type_history("Observation", &all, 100, 0, 2_500).await.unwrap();
    assert_eq!((history.versions.len(), history.over_budget), (2, true));
    let history = db.history("Observation", "o0", 2_500).await.unwrap();
    assert_eq!((history.versions.len(), history.over_budget), (2, true));
    let history = db.history("Observation", "o0", 10_000).await.unwrap();
    assert_eq!((history.versions.len(), history.over_budget), (3, false));
    std::fs::remove_dir_all(dir).ok();
}

/// Review (issue 8): RFC 7592 registration access tokens are spent on use.  Requests racing
/// with one token (the owner and a thief holding a leaked copy) must have exactly one winner;
/// the check and the write used to be two steps, so every racer got a fresh, working token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registration_access_token_is_spent_once_even_when_used_concurrently() {
    use smartlaunch_auth::client::RegistrationRequest;
    use smartlaunch_auth::config::AuthConfig;
    use smartlaunch_auth::service::Registrant;
    use smartlaunch_auth::AuthService;
    let registrant = || Registrant { bearer: None, host: None, cross_site: false };
    let (db, dir) = db().await;
    let auth = AuthService::open(db, AuthConfig::new("http://127.0.0.1:1"), 1_000).await.unwrap();
    let request = || RegistrationRequest {
        redirect_uris: Some(vec!["http://127.0.0.1:9/cb".into()]),
        token_endpoint_auth_method: Some("none".into()),
        ..Default::default()
    };
    let registered = auth.register(request(), registrant(), 1_000).await.unwrap();
    let id = registered.client.client_id.clone();
    let mut token = registered.registration_access_token.unwrap();
    for round in 0..20 {
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
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_backend_session_comes_with_its_client_while_live_and_goes_with_it() {
    use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
    use smartlaunch_auth::launch::{BackendSession, SimulatedError};
    use smartlaunch_auth::retention::Purge;
    let (db, dir) = db().await;
    let client = Client {
        client_id: "svc".into(),
        metadata: ClientMetadata {
            client_name: "Service".into(),
            redirect_uris: vec![],
            grant_types: vec!["client_credentials".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
            scope: Some("system/*.rs".into()),
            initiate_login_uri: None,
            logo_uri: None,
            jwks: None,
            jwks_uri: Some("https://svc.example/jwks".into()),
        },
        secret_hash: None,
        registration_token_hash: None,
        created_at: 0,
    };
    db.insert_client(&client).await.unwrap();
    let (found, none, no_switch) = db.client_and_backend_session("svc", 10).await.unwrap().unwrap();
    assert_eq!((found, none, no_switch), (client.clone(), None, None), "no session: the client alone");
    assert!(db.client_and_backend_session("nobody", 10).await.unwrap().is_none());
    let session = BackendSession {
        client_id: "svc".into(),
        trace_id: "t1".into(),
        simulate_error: Some(SimulatedError::BackendInvalidScope),
        created_at: 10,
        expires_at: 100,
    };
    db.put_backend_session(&session).await.unwrap();
    let (_, live, _) = db.client_and_backend_session("svc", 50).await.unwrap().unwrap();
    assert_eq!(live.as_ref(), Some(&session));
    let (_, expired, _) = db.client_and_backend_session("svc", 100).await.unwrap().unwrap();
    assert_eq!(expired, None, "expired at expires_at");
    // A new session replaces the client's previous one.
    let newer =
        BackendSession { trace_id: "t2".into(), simulate_error: None, created_at: 20, expires_at: 200, ..session };
    db.put_backend_session(&newer).await.unwrap();
    assert_eq!(db.client_and_backend_session("svc", 50).await.unwrap().unwrap().1, Some(newer.clone()));
    assert_eq!(db.recent_backend_sessions(10).await.unwrap(), vec![newer]);
    // Purged after expiry; removed with its client.
    let purge = |at| Purge { expired: at, codes: at, launches: at, events: at, max_events: 1000 };
    db.purge_expired(&purge(199)).await.unwrap();
    assert_eq!(rows(&dir, "backend_sessions").await, 1);
    db.purge_expired(&purge(200)).await.unwrap();
    assert_eq!(rows(&dir, "backend_sessions").await, 0);
    db.put_backend_session(&BackendSession {
        client_id: "svc".into(),
        trace_id: "t3".into(),
        simulate_error: None,
        created_at: 0,
        expires_at: 900,
    })
    .await
    .unwrap();
    assert!(db.delete_client("svc", 300).await.unwrap());
    assert_eq!(rows(&dir, "backend_sessions").await, 0);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn launch_links_are_found_by_hash_deleted_once_and_capped() {
    use smartlaunch_store::{LaunchLink, MAX_LAUNCH_LINKS};
    let (db, dir) = db().await;
    let link =
        |i: i64| LaunchLink { id_hash: format!("h{i}"), name: format!("n{i}"), form: "a=b".into(), created_at: i };
    for i in 0..MAX_LAUNCH_LINKS + 5 {
        db.insert_launch_link(&link(i)).await.unwrap();
    }
    let kept = db.launch_links().await.unwrap();
    assert_eq!(kept.len() as i64, MAX_LAUNCH_LINKS, "the oldest beyond the cap are dropped");
    assert_eq!(kept[0].id_hash, format!("h{}", MAX_LAUNCH_LINKS + 4), "newest first");
    assert!(db.launch_link("h0").await.unwrap().is_none());
    assert_eq!(db.launch_link("h10").await.unwrap(), Some(link(10)));
    assert!(db.delete_launch_link("h10").await.unwrap());
    assert!(!db.delete_launch_link("h10").await.unwrap(), "deleted once");
    assert!(db.launch_link("h10").await.unwrap().is_none());
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// The shared storage rules of `smartlaunch_auth::store::rules`, which the in-memory double
/// passes too: the double cannot drift from the real store.
mod shared {
    use smartlaunch_auth::store::rules;

    use super::db;

    macro_rules! on_sqlite {
        ($($rule:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $rule() {
                let (db, dir) = db().await;
                rules::$rule(db.clone()).await.unwrap();
                db.close().await;
                std::fs::remove_dir_all(dir).ok();
            }
        )*};
    }

    on_sqlite!(
        codes_are_single_use,
        refresh_rotation_is_atomic,
        assertion_jti_is_used_once,
        launch_is_used_once,
        client_update_is_conditional,
        purge_keeps_what_lives,
    );
}
