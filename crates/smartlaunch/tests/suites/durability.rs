//! Group commit keeps every acknowledged write (issue 10, "Faster embedded default"): the
//! writer answers a request only after the transaction holding its write is committed, so a
//! `kill -9` of the real process loses nothing that was acknowledged.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{random, Process};

/// Registers a client; `Some(registration)` when the server acknowledged it (201).
async fn register(http: reqwest::Client, base: String, i: usize) -> Option<Value> {
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({
            "client_name": format!("durable {i}"),
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::CREATED {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-kill9-{}", random(6)));
    let args = ["--registration-rate-limit", "0"];
    let mut server = Process::start_in(&dir, &args);
    let http = reqwest::Client::new();
    // 200 concurrent registrations (each a write, grouped into shared transactions); the
    // process is killed as soon as half of them are acknowledged, with the rest in flight.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..200 {
        let (http, base, acked) = (http.clone(), server.base.clone(), acked_tx.clone());
        tokio::spawn(async move {
            if let Some(registration) = register(http, base, i).await {
                let _ = acked.send(registration);
            }
        });
    }
    drop(acked_tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 100 {
        acknowledged.push(acked_rx.recv().await.expect("registrations are acknowledged"));
    }
    server.kill_hard();
    while let Some(late) = acked_rx.recv().await {
        acknowledged.push(late);
    }

    let again = Process::start_in(&dir, &args);
    for registration in &acknowledged {
        let uri = registration["registration_client_uri"].as_str().unwrap().replace(&server.base, &again.base);
        let token = registration["registration_access_token"].as_str().unwrap();
        let r = http.get(&uri).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "an acknowledged registration was lost: {registration}");
    }
    drop(again);
    std::fs::remove_dir_all(dir).ok();
}
