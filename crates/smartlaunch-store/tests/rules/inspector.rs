//! The launch inspector's records (issue 9): launches by trace and by user, the trace switch
//! read with the client, hand-made traces, and events stored before flags were typed.

use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use smartlaunch_auth::inspect::{FlagKind, LaunchEvent, Step};
use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::store::{ClientStore, HandTrace, InspectorStore, LaunchStore};

use super::db;

fn launch(id: &str, trace: &str, user: Option<&str>, at: i64) -> Launch {
    Launch {
        id_hash: id.into(),
        client_id: "c".into(),
        user_id: user.map(Into::into),
        session_id: None,
        patient: Some("p".into()),
        patient_choices: Vec::new(),
        encounter: None,
        context: Default::default(),
        options: Default::default(),
        standalone: false,
        trace_id: trace.into(),
        reuse: Default::default(),
        created_at: at,
        expires_at: at + 300,
    }
}

#[tokio::test]
async fn launches_are_found_by_trace_and_by_user() {
    let (db, dir) = db().await;
    db.insert_launch(&launch("a", "trace-a", Some("u1"), 1)).await.unwrap();
    db.insert_launch(&launch("b", "trace-b", Some("u2"), 2)).await.unwrap();
    db.insert_launch(&launch("c", "trace-c", Some("u1"), 3)).await.unwrap();
    assert_eq!(db.launch_by_trace("trace-b").await.unwrap().map(|l| l.id_hash).as_deref(), Some("b"));
    assert!(db.launch_by_trace("nope").await.unwrap().is_none());
    let mine: Vec<String> = db.user_launches("u1", 10).await.unwrap().into_iter().map(|l| l.trace_id).collect();
    assert_eq!(mine, ["trace-c", "trace-a"], "only the user's own, newest first");
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_trace_switch_comes_with_the_client_until_it_expires() {
    let (db, dir) = db().await;
    let client = Client {
        client_id: "app".into(),
        metadata: ClientMetadata {
            client_name: "App".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            initiate_login_uri: None,
            logo_uri: None,
            jwks: None,
            jwks_uri: None,
        },
        secret_hash: None,
        registration_token_hash: None,
        created_at: 0,
    };
    db.insert_client(&client).await.unwrap();
    db.set_trace_switch("app", Some(100)).await.unwrap();
    assert_eq!(db.client_and_backend_session("app", 50).await.unwrap().unwrap().2, Some(100));
    assert_eq!(db.client_and_backend_session("app", 100).await.unwrap().unwrap().2, None, "off at its time");
    assert_eq!(db.trace_switches(50).await.unwrap(), vec![("app".to_string(), 100)]);
    db.set_trace_switch("app", None).await.unwrap();
    assert_eq!(db.client_and_backend_session("app", 50).await.unwrap().unwrap().2, None, "switched off");
    let hand = HandTrace { trace_id: "h1".into(), client_id: "app".into(), created_at: 5, expires_at: 500 };
    db.insert_hand_trace(&hand).await.unwrap();
    assert_eq!(db.hand_trace("h1").await.unwrap(), Some(hand.clone()));
    assert_eq!(db.recent_hand_traces(5).await.unwrap(), vec![hand]);
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn events_stored_before_flags_were_typed_still_read() {
    let (db, dir) = db().await;
    let conn = rusqlite::Connection::open(dir.join("smartlaunch.db")).unwrap();
    let old = r#"{"at":1,"step":"authorize","request":"GET /auth/authorize","details":[],"outcome":"the consent page","flags":["No PKCE: send code_challenge"]}"#;
    conn.execute("INSERT INTO launch_events (trace_id, at, event) VALUES ('old', 1, ?)", [old]).unwrap();
    drop(conn);
    let events: Vec<LaunchEvent> = db.launch_record("old").await.unwrap().events;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].step, events[0].flags[0].kind), (Step::Authorize, FlagKind::Recorded));
    assert!(!events[0].simulated && events[0].context.is_none());
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}
