//! `smartlaunch keys rotate` and `keys retire` against a running server (issue 10, "signing keys … rotated
//! consistently"): on SQLite (`--data`), where no change feed tells the server, it reads the keys
//! every `KEY_POLL`; on PostgreSQL the change feed tells it (two nodes: suites::two_nodes).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use smartlaunch::nodes::KEY_POLL;
use smartlaunch_auth::keys::KEY_ACTIVATION;

use crate::support::*;

async fn published_kids(s: &Server) -> Vec<String> {
    let jwks: Value =
        s.http.get(format!("{}/.well-known/jwks.json", s.base)).send().await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.expect("access tokens name their key")
}

#[tokio::test]
async fn a_key_rotated_from_the_command_line_reaches_the_running_server() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let before = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    let old = published_kids(&s).await;
    assert_eq!(old.len(), 1);
    assert_eq!(kid_of(&before), old[0]);

    let rotated = tokio::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["keys", "rotate"])
        .args(s.database_args())
        .env("SMARTLAUNCH_KEY_ENCRYPTION_KEY", TEST_KEY_ENCRYPTION_KEY)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{stdout}{}", String::from_utf8_lossy(&rotated.stderr));
    let new = stdout.split_whitespace().nth(3).unwrap().trim_end_matches(':').to_owned();

    // Published within the poll interval, before it signs, next to the old key.
    let start = Instant::now();
    loop {
        let kids = published_kids(&s).await;
        if kids.len() == 2 {
            assert_eq!(kids, [new.clone(), old[0].clone()]);
            break;
        }
        assert!(start.elapsed() < KEY_POLL + Duration::from_secs(2), "the rotated key was not published: {kids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = search(&s, &before, "Patient").await;
    assert_eq!(status, StatusCode::OK, "a token signed before the rotation still works");

    // Once active, the new key signs; the old one still verifies.
    s.clock.advance(KEY_ACTIVATION);
    let after = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    assert_eq!(kid_of(&after), new);
    assert_eq!(search(&s, &after, "Patient").await.0, StatusCode::OK);
    assert_eq!(search(&s, &before, "Patient").await.0, StatusCode::OK);

    // The old key retired from the command line (a compromised key): the running server
    // refuses its tokens within the poll interval; the newest key cannot be retired.
    let retire = |kid: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
            .args(["keys", "retire", "--kid", &kid])
            .args(s.database_args())
            .output()
    };
    let refused = retire(new.clone()).await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is the newest signing key"));
    let retired = retire(old[0].clone()).await.unwrap();
    assert!(retired.status.success(), "{}", String::from_utf8_lossy(&retired.stderr));
    let start = Instant::now();
    while search(&s, &before, "Patient").await.0 != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < KEY_POLL + Duration::from_secs(2), "the retired key still verifies");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(search(&s, &after, "Patient").await.0, StatusCode::OK);
    assert_eq!(published_kids(&s).await, [new]);
    s.stop().await;
}

/// An app removed from the command line next to a running server (`clients remove`): the
/// server refuses its tokens within the poll interval (SQLite: it reads the revocations every
/// `KEY_POLL`; PostgreSQL: the change feed), and its authorization requests.
#[tokio::test]
async fn an_app_removed_from_the_command_line_is_refused_by_the_running_server() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    assert_eq!(search(&s, &t, "Patient").await.0, StatusCode::OK);
    let removed = tokio::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["clients", "remove", &client])
        .args(s.database_args())
        .env("SMARTLAUNCH_KEY_ENCRYPTION_KEY", TEST_KEY_ENCRYPTION_KEY)
        .output()
        .await
        .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let start = Instant::now();
    while search(&s, &t, "Patient").await.0 != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < KEY_POLL + Duration::from_secs(2), "the removed app's token still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let params = s.authorize_params(&client, "launch/patient patient/*.rs", &"v".repeat(43));
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an unknown client is not redirected to");
    s.stop().await;
}
