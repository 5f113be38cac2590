//! The storage-dependent security rules, run against the real SQLite database
//! (ARCHITECTURE.md "Tests": not only against an in-memory double).

use std::path::PathBuf;

use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::secrets::random_token;
use smartlaunch_auth::store::{AuthStore, CodeGrant, CodeRedemption, Grant, RefreshToken};
use smartlaunch_store::Db;

async fn db() -> (Db, PathBuf) {
    let dir = std::env::temp_dir().join(format!("smartlaunch-store-test-{}", random_token(8)));
    (Db::open_dir(&dir).await.unwrap(), dir)
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
    let reopened = Db::open_dir(&dir).await.unwrap();
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
    let reopened = Db::open_dir(&dir).await.unwrap();
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
