//! Two `smartlaunch serve` processes on one PostgreSQL behind nginx with a round-robin
//! upstream (issue 10, acceptance "Two nodes behind a real proxy"; docs/DESIGN.md "Stateless
//! nodes").  The nodes share everything through the database and the change feed: a step
//! taken at one node is honoured, or refused, at the other.  Requests go to a node directly
//! where the test needs to know which node answers, and through nginx otherwise.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";
/// How long a node may take to apply a change made at the other.
const PROMPTLY: Duration = Duration::from_secs(5);

struct Cluster {
    db: Option<PgDatabase>,
    /// The nodes' `--data` directory (the export files), shared as a network volume would be.
    data: std::path::PathBuf,
    nginx: Nginx,
    a: Process,
    b: Process,
}

impl Cluster {
    /// Two nodes on a fresh database behind nginx, or `None` without a PostgreSQL (outside CI).
    async fn start() -> Option<Cluster> {
        Cluster::start_with(&["--registration-rate-limit", "0"]).await
    }

    /// [`Cluster::start`] with `extra` flags for both nodes.  They trust nginx (127.0.0.1) to
    /// name the client in `X-Forwarded-For`, as README "Several nodes" says to.
    async fn start_with(extra: &[&str]) -> Option<Cluster> {
        // The HTTP clients of the test (the in-process servers of other tests install it too).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let db = PgDatabase::create().await?;
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        let data = std::env::temp_dir().join(format!("smartlaunch-nodes-{}", random(6)));
        let data_arg = data.to_str().unwrap();
        let flags = [&["--trusted-proxy", "127.0.0.1", "--data", data_arg], extra].concat();
        let a = start_node(&db.url, &public, &flags);
        let b = start_node(&db.url, &public, &flags);
        let nginx = Nginx::start(port, &[&a.addr, &b.addr]);
        Some(Cluster { db: Some(db), data, nginx, a, b })
    }

    /// A handle that talks to `node` directly; its FHIR base (the tokens' `aud`) is the
    /// public one, behind nginx.
    fn direct(&self, node: &Process) -> Server {
        let mut server = Server::at(&node.addr);
        server.fhir = format!("{}/fhir", self.nginx.base);
        server
    }

    fn proxy(&self) -> Server {
        Server::at(&self.nginx.base)
    }

    async fn stop(mut self) {
        drop(self.nginx);
        drop(self.a);
        drop(self.b);
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
        std::fs::remove_dir_all(&self.data).ok();
    }
}

/// A FHIR read at `node` itself (not through nginx).
async fn read_at(node: &Process, path: &str, token: &str) -> StatusCode {
    let http = reqwest::Client::new();
    http.get(format!("{}/fhir/{path}", node.addr)).bearer_auth(token).send().await.unwrap().status()
}

/// Checklist items 29–31 across nodes: a code minted at node A is redeemed at node B, once;
/// and a sign-in made at A (its session cookie) signs the user in at B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_and_a_sign_in_made_at_one_node_work_at_the_other() {
    let Some(cluster) = Cluster::start().await else { return };
    let (a, b) = (cluster.direct(&cluster.a), cluster.direct(&cluster.b));
    let client = a.public_app().await;
    let (code, verifier) = launch(&a, &client, SCOPE, "patient", None).await;
    let tokens = redeem(&b, &client, &code, &verifier).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(read_at(&cluster.a, "Patient/pat-001", access).await, StatusCode::OK);
    assert_eq!(read_at(&cluster.b, "Patient/pat-001", access).await, StatusCode::OK);
    let again = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &a.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "the code was spent at B");

    // The user consented above: a signed-in browser goes straight back to the app.
    let mut at_a = Browser::new(&a);
    at_a.get(&a.authorize_url(&a.authorize_params(&client, SCOPE, &random(32)))).await;
    assert!(at_a.is_sign_in(), "a fresh browser signs in");
    let landing = at_a.sign_in("patient", "patient").await;
    assert!(matches!(landing, Landing::App(_)), "signed in at A: {landing:?}");
    let mut at_b = Browser::new(&b);
    at_b.cookie = at_a.cookie.clone();
    let landing = at_b.get(&b.authorize_url(&b.authorize_params(&client, SCOPE, &random(32)))).await;
    assert!(matches!(landing, Landing::App(_)), "the session made at A signs the user in at B: {landing:?}");
    let mut stranger = Browser::new(&b);
    stranger.get(&b.authorize_url(&b.authorize_params(&client, SCOPE, &random(32)))).await;
    assert!(stranger.is_sign_in(), "without the cookie, B asks to sign in");
    cluster.stop().await;
}

/// Checklist item 76 across nodes: a refresh token reused at node B revokes the family that
/// node A issued, and A's FHIR API refuses the family's access token promptly (A checks access
/// tokens locally: the change feed told it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_at_one_node_revokes_the_family_at_the_other() {
    let Some(cluster) = Cluster::start().await else { return };
    let (a, b) = (cluster.direct(&cluster.a), cluster.direct(&cluster.b));
    let client = a.public_app().await;
    let (code, verifier) = launch(&a, &client, SCOPE, "patient", None).await;
    let tokens = redeem(&a, &client, &code, &verifier).await;
    let (access, first) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    assert_eq!(read_at(&cluster.a, "Patient/pat-001", access).await, StatusCode::OK);
    let refresh = |token: &str| {
        let token = token.to_owned();
        let (b, client) = (&b, &client);
        async move { b.token(&[("grant_type", "refresh_token"), ("refresh_token", &token), ("client_id", client)]).await }
    };
    assert_eq!(refresh(first).await.status(), StatusCode::OK, "the first use, at B");
    assert_eq!(refresh(first).await.status(), StatusCode::BAD_REQUEST, "the reuse, at B");
    let start = Instant::now();
    while read_at(&cluster.a, "Patient/pat-001", access).await != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < PROMPTLY, "A still accepts an access token of the revoked family");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;
}

/// Checklist item 49 across nodes: a client assertion used at node A is refused when replayed
/// at node B (its `jti` is recorded in the shared database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_assertion_replayed_at_the_other_node_is_refused() {
    let Some(cluster) = Cluster::start().await else { return };
    let (a, b) = (cluster.direct(&cluster.a), cluster.direct(&cluster.b));
    // The assertion's `aud` is the public token endpoint, behind nginx.
    let public = cluster.proxy();
    let backend = public.backend_client("system/Patient.rs").await;
    let assertion = backend.assertion();
    let form = |assertion: &str| {
        [
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "system/Patient.rs".to_owned()),
            ("client_assertion_type", smartlaunch_auth::client_assertion::JWT_BEARER.to_owned()),
            ("client_assertion", assertion.to_owned()),
        ]
    };
    let send = |server: &Server, assertion: &str| {
        let request = server.http.post(server.token_url()).form(&form(assertion));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(send(&a, &assertion).await.status(), StatusCode::OK, "first use, at A");
    let replay = send(&b, &assertion).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED, "replayed at B");
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    cluster.stop().await;
}

/// The availability claim: node A is killed with SIGKILL in the middle of a run of concurrent
/// writes through nginx; node B keeps serving, and every write that was acknowledged (at
/// either node) is readable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_write() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let http = reqwest::Client::new();
    let base = cluster.nginx.base.clone();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..300 {
        let (http, base, acked) = (http.clone(), base.clone(), acked_tx.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}/auth/register"))
                .json(&json!({
                    "client_name": format!("Load {i}"),
                    "redirect_uris": ["http://127.0.0.1:9/cb"],
                    "token_endpoint_auth_method": "none",
                }))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == StatusCode::CREATED {
                    if let Ok(body) = r.json::<Value>().await {
                        let _ = acked.send(body);
                    }
                }
            }
        });
    }
    drop(acked_tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 100 {
        acknowledged.push(acked_rx.recv().await.expect("registrations are acknowledged"));
    }
    cluster.a.kill_hard();
    while let Some(late) = acked_rx.recv().await {
        acknowledged.push(late);
    }
    assert!(acknowledged.len() >= 100);
    // B serves alone now, through nginx (which stops sending to A after its first failure).
    for registration in &acknowledged {
        let id = registration["client_id"].as_str().unwrap();
        let token = registration["registration_access_token"].as_str().unwrap();
        let r = http.get(format!("{base}/auth/register/{id}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "an acknowledged registration was lost: {registration}");
    }
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "B is healthy");
    cluster.stop().await;
}

/// `smartlaunch keys rotate` (issue 10, "rotated consistently"): both running nodes publish
/// the new key promptly, next to the old one; an access token signed before the rotation still
/// works at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reaches_every_node_and_keeps_the_old_tokens_valid() {
    let Some(cluster) = Cluster::start().await else { return };
    let a = cluster.direct(&cluster.a);
    let client = a.public_app().await;
    let (code, verifier) = launch(&a, &client, SCOPE, "patient", None).await;
    let tokens = redeem(&a, &client, &code, &verifier).await;
    let access = tokens["access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let kids = |node: &Process| {
        let request = http.get(format!("{}/.well-known/jwks.json", node.addr));
        async move {
            let jwks: Value = request.send().await.unwrap().json().await.unwrap();
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    let before = kids(&cluster.a).await;
    assert_eq!(before.len(), 1);
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["keys", "rotate", "--database", &cluster.db.as_ref().unwrap().url])
        .env("SMARTLAUNCH_KEY_ENCRYPTION_KEY", TEST_KEY_ENCRYPTION_KEY)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    for node in [&cluster.a, &cluster.b] {
        let start = Instant::now();
        loop {
            let now = kids(node).await;
            if now.len() == 2 {
                assert_eq!(now[1], before[0], "the old key stays, after the new one");
                break;
            }
            assert!(start.elapsed() < PROMPTLY, "the rotated key did not reach {}", node.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(read_at(node, "Patient/pat-001", access).await, StatusCode::OK, "a token of the old key");
    }
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["keys", "rotate", "--database", &cluster.db.as_ref().unwrap().url])
        .env("SMARTLAUNCH_KEY_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong key encryption key is refused");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("cannot be decrypted"));
    cluster.stop().await;
}

/// Bulk Data export behind the proxy (issue 10, "background work runs once"): a job kicked off
/// through nginx is run by one node, and its status and files answer at either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_export_kicked_off_at_one_node_is_served_by_both() {
    let Some(cluster) = Cluster::start().await else { return };
    let public = cluster.proxy();
    let token = public.backend_token("system/Patient.rs").await;
    let http = reqwest::Client::new();
    let kickoff = http
        .get(format!("{}/fhir/Patient/$export", cluster.a.addr))
        .bearer_auth(&token)
        .header("Prefer", "respond-async")
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(kickoff.status(), StatusCode::ACCEPTED, "{}", kickoff.text().await.unwrap());
    let status_url = kickoff.headers()["content-location"].to_str().unwrap().to_owned();
    let at = |node: &Process, url: &str| url.replace(&cluster.nginx.base, &node.addr);
    let start = Instant::now();
    let manifest: Value = loop {
        let r = http.get(at(&cluster.b, &status_url)).bearer_auth(&token).send().await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => {}
            StatusCode::OK => break r.json().await.unwrap(),
            other => panic!("status {other} at B: {}", r.text().await.unwrap()),
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the export did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = manifest["output"].as_array().unwrap();
    assert!(!output.is_empty(), "{manifest}");
    for entry in output {
        let url = entry["url"].as_str().unwrap();
        for node in [&cluster.a, &cluster.b] {
            let r = http.get(at(node, url)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url} at {}", node.addr);
            let lines = r.text().await.unwrap().lines().count() as u64;
            assert_eq!(lines, entry["count"].as_u64().unwrap(), "{url} at {}", node.addr);
        }
    }
    cluster.stop().await;
}

/// Behind nginx with `--trusted-proxy 127.0.0.1` (README "Several nodes"): each client nginx
/// forwards has its own budget at each node, and a forged `X-Forwarded-For` buys no fresh one
/// (nginx appends the address it saw; the nodes take the right-most).  The clients reach nginx
/// from 127.0.0.2 and 127.0.0.3; nginx reaches the nodes from 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_limits_count_each_client_not_the_proxy() {
    let Some(cluster) = Cluster::start_with(&["--registration-rate-limit", "1"]).await else { return };
    let from = |ip: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().unwrap();
    let register = |http: reqwest::Client, forged: Option<String>| {
        let url = format!("{}/auth/register", cluster.nginx.base);
        async move {
            let body = json!({"client_name": "Behind nginx", "redirect_uris": ["http://127.0.0.1:9/cb"],
                              "token_endpoint_auth_method": "none"});
            let mut request = http.post(url).json(&body);
            if let Some(forged) = forged {
                request = request.header("x-forwarded-for", forged);
            }
            request.send().await.unwrap().status()
        }
    };
    // Round robin: two requests to each node, one registration a minute per client per node.
    let attacker = from([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(register(attacker.clone(), Some(format!("203.0.113.{i}"))).await);
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(refused, 2, "forged addresses do not escape the limit: {statuses:?}");
    let other = from([127, 0, 0, 3]);
    for _ in 0..2 {
        assert_eq!(register(other.clone(), None).await, StatusCode::CREATED, "another client is not locked out");
    }
    cluster.stop().await;
}
