//! Stateless nodes on one PostgreSQL database (issue 10, "Stateless nodes"; docs/DESIGN.md):
//! what one node keeps in memory — the revocation list, the client cache, the signing keys —
//! follows what another node writes, through the change feed.  Two `PgDb` pools with an
//! `AuthService` each are two nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smartlaunch_auth::changes::{ChangeFeed, FeedEvent};
use smartlaunch_auth::client::{Client, ClientMetadata, TokenEndpointAuthMethod};
use smartlaunch_auth::config::AuthConfig;
use smartlaunch_auth::key_encryption::KeyEncryptionKey;
use smartlaunch_auth::keys::{KeyMaterial, KEY_ACTIVATION};
use smartlaunch_auth::secrets::hash_token;
use smartlaunch_auth::service::{add_signing_keys, retire_signing_key, KeyRetirement};
use smartlaunch_auth::store::rules::{grant, refresh};
use smartlaunch_auth::store::{ClientStore, GrantStore, KeyStore};
use smartlaunch_auth::token::TokenRequest;
use smartlaunch_auth::{AuthService, UnixTime};
use smartlaunch_store::PgDb;
use sqlx::Connection;

#[path = "support/postgres.rs"]
#[allow(dead_code)]
mod support;

use support::on_postgres_nodes;

const NOW: UnixTime = 1_000;
/// How long a node may take to apply a change made at another node.
const PROMPTLY: Duration = Duration::from_secs(5);

/// The public client `c` of the store rules' grants, allowed to refresh.
fn client_c() -> Client {
    Client {
        client_id: "c".into(),
        metadata: ClientMetadata {
            client_name: "App c".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
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
    }
}

/// Two nodes on one database with client `c` and grant `g` whose refresh token is `"r0"`.
async fn two_nodes(nodes: &[PgDb]) -> (Arc<AuthService<PgDb>>, Arc<AuthService<PgDb>>) {
    nodes[0].insert_client(&client_c()).await.unwrap();
    nodes[0].insert_grant(&grant("g", NOW + 86_400), &refresh(&hash_token("r0"), "g", NOW + 86_400)).await.unwrap();
    let a = AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.unwrap();
    let b = AuthService::open(nodes[1].clone(), config_with(Some(kek(1))), NOW).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

fn refresh_request(token: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(token.into()),
        client_id: Some("c".into()),
        ..Default::default()
    }
}

/// Node `auth` follows the change feed of its database, as `smartlaunch serve` does.
fn follow(auth: Arc<AuthService<PgDb>>, db: &PgDb) -> tokio::task::JoinHandle<()> {
    let mut feed = db.change_feed();
    tokio::spawn(async move {
        loop {
            let event = feed.next().await;
            auth.apply_change(&event, NOW).await.unwrap();
        }
    })
}

/// Waits until `refused` holds, for at most [`PROMPTLY`].
async fn within_bound(what: &str, refused: impl Fn() -> bool) {
    let start = Instant::now();
    while !refused() {
        assert!(start.elapsed() < PROMPTLY, "{what}: not applied within {PROMPTLY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checklist item 76 across nodes: a refresh token reused at node B revokes the family issued
/// at node A, and A refuses the family's access token promptly (it checks access tokens
/// locally, against its revocation list).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_revoked_at_one_node_is_refused_by_the_other_promptly() {
    on_postgres_nodes(2, 4, |nodes, _| async move {
        let (a, b) = two_nodes(&nodes).await;
        let following = follow(a.clone(), &nodes[0]);
        let issued = a.token(refresh_request("r0"), None, NOW).await.unwrap();
        let access = issued.access_token.clone();
        assert!(a.verify_bearer_any(&access, NOW).is_ok());
        assert!(b.token(refresh_request("r0"), None, NOW).await.is_err(), "reuse of r0 at B is refused");
        within_bound("the family revoked at B", || a.verify_bearer_any(&access, NOW).is_err()).await;
        following.abort();
    })
    .await
}

/// The management page's "revoke access" and a removed client, at node B: node A refuses
/// the tokens, and its client cache forgets the removed client (introspection and the token
/// endpoint of A no longer know it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_access_and_removing_a_client_at_one_node_reach_the_other() {
    on_postgres_nodes(2, 4, |nodes, _| async move {
        let (a, b) = two_nodes(&nodes).await;
        let following = follow(a.clone(), &nodes[0]);
        let issued = a.token(refresh_request("r0"), None, NOW).await.unwrap();
        let access = issued.access_token.clone();
        b.revoke_user_client("u", "c", NOW).await.unwrap();
        within_bound("revoke access at B", || a.verify_bearer_any(&access, NOW).is_err()).await;

        assert!(a.client("c", NOW).await.unwrap().is_some(), "cached at A");
        b.remove_client("c", NOW).await.unwrap();
        let start = Instant::now();
        while a.client("c", NOW).await.unwrap().is_some() {
            assert!(start.elapsed() < PROMPTLY, "the removed client is still served from A's cache");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        following.abort();
    })
    .await
}

/// A node that was not listening (its feed's connection was lost, or it had not started
/// following) reloads the revocations when its feed (re)connects: a notification it missed
/// never leaves a revoked token usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_resyncs_what_it_missed_when_its_feed_reconnects() {
    on_postgres_nodes(2, 4, |nodes, url| async move {
        let (a, b) = two_nodes(&nodes).await;
        let issued = a.token(refresh_request("r0"), None, NOW).await.unwrap();
        let access = issued.access_token.clone();
        b.revoke_grant("g", NOW).await.unwrap();
        assert!(a.verify_bearer_any(&access, NOW).is_ok(), "A heard nothing: no feed");
        let mut feed = nodes[0].change_feed();
        let first = feed.next().await;
        assert_eq!(first, FeedEvent::Resync, "a feed starts with a resync");
        a.apply_change(&first, NOW).await.unwrap();
        assert!(a.verify_bearer_any(&access, NOW).is_err(), "the missed revocation is applied");

        // The listening connection dies (a database restart, a failover): the feed says so.
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        let killed: Vec<(bool,)> =
            sqlx::query_as("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()")
                .fetch_all(&mut admin)
                .await
                .unwrap();
        assert_eq!(killed, [(true,)], "one listening connection");
        let again = tokio::time::timeout(PROMPTLY, feed.next()).await.expect("the feed reconnects");
        assert_eq!(again, FeedEvent::Resync);
    })
    .await
}

fn kek(byte: u8) -> KeyEncryptionKey {
    use base64::Engine;
    KeyEncryptionKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
}

fn config_with(kek: Option<KeyEncryptionKey>) -> AuthConfig {
    AuthConfig { key_encryption_key: kek, ..AuthConfig::new("http://127.0.0.1") }
}

/// The signing keys are encrypted in the database; a node with another key encryption key (or
/// none) refuses to start, and never makes keys of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_the_wrong_key_encryption_key_refuses_to_start() {
    on_postgres_nodes(2, 4, |nodes, url| async move {
        let a = AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.unwrap();
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        let stored: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT rsa_pkcs8, hmac_secret FROM signing_keys").fetch_all(&mut admin).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert!(stored[0].0.starts_with(b"SLK1") && stored[0].1.starts_with(b"SLK1"), "sealed at rest");
        let wrong = AuthService::open(nodes[1].clone(), config_with(Some(kek(2))), NOW).await.err().unwrap();
        assert!(wrong.0.contains("cannot be decrypted"), "{}", wrong.0);
        let none = AuthService::open(nodes[1].clone(), config_with(None), NOW).await.err().unwrap();
        assert!(none.0.contains("openssl rand -base64 32"), "{}", none.0);
        let b = AuthService::open(nodes[1].clone(), config_with(Some(kek(1))), NOW).await.unwrap();
        assert_eq!(a.jwks(NOW), b.jwks(NOW), "the same keys");
        assert_eq!(nodes[0].all_keys().await.unwrap().len(), 1, "no key was made by a refused node");
    })
    .await
}

/// Review (issue 10): a plaintext key in PostgreSQL (copied by an earlier `smartlaunch migrate`)
/// is refused — the node does not start, and says how to replace the key — until a rotation
/// adds a sealed key (without opening the stored ones) and the plaintext key is retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_on_postgres_refuses_a_key_stored_unencrypted() {
    on_postgres_nodes(1, 4, |nodes, _| async move {
        let plain = nodes[0].insert_keys_if_absent(&KeyMaterial::generate()).await.unwrap();
        let refused = AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.err().unwrap();
        assert!(refused.0.contains("unencrypted"), "{}", refused.0);
        assert!(refused.0.contains(&format!("smartlaunch keys retire --kid {}", plain.kid)), "{}", refused.0);
        add_signing_keys(&nodes[0], Some(&kek(1)), NOW).await.unwrap();
        assert!(AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.is_err(), "still there");
        assert_eq!(nodes[0].all_keys().await.unwrap().len(), 2, "the rotation read no stored key");
        assert_eq!(retire_signing_key(&nodes[0], &plain.kid).await.unwrap(), KeyRetirement::Retired);
        AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.expect("starts on the sealed key");
    })
    .await
}

/// `keys rotate` at node A: node B publishes the new key promptly, both sign with it once it
/// is active, and tokens signed before the rotation still verify at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_at_one_node_is_seen_by_the_other_and_old_tokens_still_verify() {
    on_postgres_nodes(2, 4, |nodes, _| async move {
        nodes[0].insert_client(&client_c()).await.unwrap();
        nodes[0].insert_grant(&grant("g", NOW + 86_400), &refresh(&hash_token("r0"), "g", NOW + 86_400)).await.unwrap();
        let a = Arc::new(AuthService::open(nodes[0].clone(), config_with(Some(kek(1))), NOW).await.unwrap());
        let b = Arc::new(AuthService::open(nodes[1].clone(), config_with(Some(kek(1))), NOW).await.unwrap());
        let following = follow(b.clone(), &nodes[1]);
        let before = a.token(refresh_request("r0"), None, NOW).await.unwrap();
        let kid = a.rotate_keys(NOW).await.unwrap();
        within_bound("the rotated key at B", || b.jwks(NOW)["keys"].as_array().unwrap().len() == 2).await;
        assert_eq!(b.jwks(NOW)["keys"][0]["kid"], kid.as_str(), "the newest first");
        let later = NOW + KEY_ACTIVATION;
        let after = a.token(refresh_request(before.refresh_token.as_deref().unwrap()), None, later).await.unwrap();
        let kid_of = |t: &str| {
            use base64::Engine;
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
        };
        assert_eq!(kid_of(&after.access_token), kid, "signed with the new key once active");
        for node in [&a, &b] {
            assert!(node.verify_bearer_any(&after.access_token, later).is_ok());
            assert!(node.verify_bearer_any(&before.access_token, later).is_ok(), "signed before the rotation");
        }
        following.abort();
    })
    .await
}

/// Review (issue 10): a compromised key retired at node A (`keys retire` after `keys rotate`)
/// is dropped by node B promptly — B refuses the tokens it signed and stops publishing it —
/// instead of being trusted until B restarts.  The deletion is announced by migration 0003.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_retired_at_one_node_is_no_longer_accepted_by_the_other_promptly() {
    on_postgres_nodes(2, 4, |nodes, _| async move {
        let (a, b) = two_nodes(&nodes).await;
        let following = follow(b.clone(), &nodes[1]);
        let old = nodes[0].keys().await.unwrap().unwrap().kid;
        let signed_by_old = a.token(refresh_request("r0"), None, NOW).await.unwrap();
        assert!(b.verify_bearer_any(&signed_by_old.access_token, NOW).is_ok());
        let new = a.rotate_keys(NOW).await.unwrap();
        within_bound("the rotated key at B", || b.jwks(NOW)["keys"].as_array().unwrap().len() == 2).await;
        assert_eq!(retire_signing_key(&nodes[0], &new).await.unwrap(), KeyRetirement::Newest, "the signer stays");
        assert_eq!(retire_signing_key(&nodes[0], &old).await.unwrap(), KeyRetirement::Retired);
        within_bound("the retired key at B", || b.verify_bearer_any(&signed_by_old.access_token, NOW).is_err()).await;
        let published: Vec<serde_json::Value> = b.jwks(NOW)["keys"].as_array().unwrap().clone();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["kid"], new.as_str(), "only the new key is published");
        following.abort();
    })
    .await
}

/// Review (issue 10): a sandbox reset on PostgreSQL empties `clients` with TRUNCATE (no row
/// trigger), so other nodes never heard that the apps were gone and kept their CORS origins
/// and cached entries.  Migration 0004 announces `clients_cleared`; a node applying it forgets
/// every cached client (the server also reloads its CORS origins on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_reset_at_one_node_announces_that_every_client_is_gone() {
    use smartlaunch_auth::changes::Change;
    on_postgres_nodes(2, 4, |nodes, _| async move {
        let (_a, b) = two_nodes(&nodes).await;
        let mut feed = nodes[1].change_feed();
        assert_eq!(feed.next().await, FeedEvent::Resync);
        assert!(b.client("c", NOW).await.unwrap().is_some(), "cached at B");
        nodes[0].reset_sandbox(Vec::new(), &[], NOW, "2026-01-01T00:00:00Z").await.unwrap();
        let heard = tokio::time::timeout(PROMPTLY, async {
            loop {
                let event = feed.next().await;
                b.apply_change(&event, NOW).await.unwrap();
                if event == FeedEvent::Change(Change::ClientsCleared) {
                    break;
                }
            }
        })
        .await;
        assert!(heard.is_ok(), "the reset was not announced as clients_cleared");
        assert!(b.client("c", NOW).await.unwrap().is_none(), "B forgot the removed app");
    })
    .await
}
