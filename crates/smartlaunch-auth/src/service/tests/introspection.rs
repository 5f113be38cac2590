//! Token introspection (RFC 7662, checklist items 93–97) and revocation (RFC 7009).

use serde_json::json;

use super::*;
use crate::service::Caller;

const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

/// Tokens of the pat user (patient `p1` in context) through `public`.
async fn patient_tokens(h: &Harness) -> TokenResponse {
    let cookie = h.session("u-pat").await;
    h.consented("u-pat", "public", SCOPE).await;
    let code = code_of(&h.authorize(&request("public", SCOPE, &[]), Some(&cookie)).await.unwrap());
    h.exchange("public", &code).await.unwrap()
}

async fn introspect_as_basic(h: &Harness, token: &str, now: UnixTime) -> Result<Value, TokenError> {
    let req = form(&[]);
    h.auth.introspect(Caller::Client { request: &req, basic: basic("basic", SECRET) }, Some(token), now).await
}

#[tokio::test]
async fn an_active_access_token_is_described_with_its_context() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let out = introspect_as_basic(&h, &t.access_token, NOW).await.unwrap();
    assert_eq!(out["active"], true);
    assert_eq!(out["scope"], SCOPE);
    assert_eq!(out["client_id"], "public");
    assert_eq!(out["exp"], NOW + 3600);
    assert_eq!(out["patient"], "p1", "launch context is echoed (item 95)");
    assert_eq!(out["sub"], "u-pat");
    assert_eq!(out["iss"], PUBLIC_URL);
    assert_eq!(out["fhirUser"], format!("{FHIR}/Patient/p1"));
}

#[tokio::test]
async fn an_active_refresh_token_is_described() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let out = introspect_as_basic(&h, &t.refresh_token.unwrap(), NOW).await.unwrap();
    assert_eq!(out["active"], true);
    assert_eq!(out["token_type"], "refresh_token");
    assert_eq!(out["patient"], "p1");
}

#[tokio::test]
async fn expired_revoked_used_and_unknown_tokens_are_inactive() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let inactive = json!({"active": false});
    assert_eq!(introspect_as_basic(&h, &t.access_token, NOW + 3600).await.unwrap(), inactive, "expired");
    assert_eq!(introspect_as_basic(&h, "garbage", NOW).await.unwrap(), inactive);
    assert_eq!(introspect_as_basic(&h, &"x".repeat(9000), NOW).await.unwrap(), inactive);
    let refresh = t.refresh_token.unwrap();
    let pairs = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "public")];
    let rotated = h.token(&pairs).await.unwrap();
    assert_eq!(introspect_as_basic(&h, &refresh, NOW).await.unwrap(), inactive, "a used refresh token");
    let claims = h.auth.verify_bearer(&rotated.access_token, NOW).unwrap();
    h.auth.revoke_grant(&claims.grant, NOW).await.unwrap();
    assert_eq!(introspect_as_basic(&h, &rotated.access_token, NOW).await.unwrap(), inactive, "revoked");
    assert_eq!(introspect_as_basic(&h, &rotated.refresh_token.unwrap(), NOW).await.unwrap(), inactive);
}

#[tokio::test]
async fn introspection_needs_a_confidential_client_or_a_bearer_token() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let req = form(&[("client_id", "public")]);
    let r = h.auth.introspect(Caller::Client { request: &req, basic: None }, Some(&t.access_token), NOW).await;
    assert_eq!(r.unwrap_err().code(), "invalid_client", "a public client may not introspect");
    let r = h.auth.introspect(Caller::Bearer("not-a-token"), Some(&t.access_token), NOW).await;
    assert_eq!(r.unwrap_err().code(), "invalid_client");
    let r = introspect_as_basic(&h, "", NOW).await;
    assert_eq!(r.unwrap_err().code(), "invalid_request", "token is required");
}

#[tokio::test]
async fn a_bearer_caller_sees_only_its_own_grants_tokens() {
    let h = Harness::new().await;
    let mine = patient_tokens(&h).await;
    let theirs = h.tokens("openid user/*.rs").await;
    let own = h.auth.introspect(Caller::Bearer(&mine.access_token), Some(&mine.access_token), NOW).await.unwrap();
    assert_eq!(own["active"], true);
    let other = h.auth.introspect(Caller::Bearer(&mine.access_token), Some(&theirs.access_token), NOW).await.unwrap();
    assert_eq!(other, json!({"active": false}), "another app's token is not disclosed");
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_grant() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let req = form(&[("client_id", "public")]);
    h.auth.revoke(&req, None, t.refresh_token.as_deref(), NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err(), "its access tokens stop working");
    let refresh = t.refresh_token.unwrap();
    let pairs = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "public")];
    assert_eq!(token_error(h.token(&pairs).await).0, "invalid_grant");
}

#[tokio::test]
async fn revoking_an_access_token_revokes_its_grant() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let req = form(&[("client_id", "public")]);
    h.auth.revoke(&req, None, Some(&t.access_token), NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err());
}

#[tokio::test]
async fn another_clients_token_is_not_revoked() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let req = form(&[]);
    h.auth.revoke(&req, basic("basic", SECRET), Some(&t.access_token), NOW).await.unwrap();
    h.auth.revoke(&req, basic("basic", SECRET), t.refresh_token.as_deref(), NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_ok(), "unknown or foreign tokens are ignored (200)");
    h.auth.revoke(&req, basic("basic", SECRET), Some("unknown"), NOW).await.unwrap();
}

#[tokio::test]
async fn revocation_needs_an_identified_client_and_a_token() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let anonymous = form(&[]);
    let r = h.auth.revoke(&anonymous, None, Some(&t.access_token), NOW).await;
    assert_eq!(r.unwrap_err().code(), "invalid_client");
    let req = form(&[("client_id", "public")]);
    assert_eq!(h.auth.revoke(&req, None, None, NOW).await.unwrap_err().code(), "invalid_request");
}

#[tokio::test]
async fn revoking_a_users_access_to_an_app_ends_its_tokens_and_consent() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    h.auth.revoke_user_client("u-pat", "public", NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err());
    let r = h.authorize(&request("public", SCOPE, &[]), Some("cookie-u-pat")).await.unwrap();
    assert!(matches!(r, Progress::Step { step: crate::service::FlowStep::Consent, .. }), "the consent is forgotten");
}

#[tokio::test]
async fn removing_a_client_revokes_everything_issued_to_it() {
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    assert!(h.auth.remove_client("public", NOW).await.unwrap());
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err());
    assert!(!h.auth.remove_client("public", NOW).await.unwrap());
}

/// Stateless nodes (issue 10): a resync must apply the revocations made elsewhere even when a
/// stored key cannot be opened (a row sealed with another key encryption key, junk): the keys
/// stay as they were, and the feed goes on.
#[tokio::test]
async fn a_resync_applies_revocations_even_when_a_stored_key_cannot_be_opened() {
    use crate::changes::FeedEvent;
    use crate::store::GrantStore;
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let unopenable = KeyMaterial { kid: "junk".into(), rsa_pkcs8: b"not a key".to_vec(), hmac_secret: vec![7; 32] };
    h.store.add_keys(&unopenable, NOW).await.unwrap();
    // Another node revoked the user's access to the app; this node missed the notification.
    h.store.revoke_user_client("u-pat", "public", NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_ok(), "not heard of yet");
    h.auth.apply_change(&FeedEvent::Resync, NOW).await.expect("a resync is not held up by the keys");
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err(), "the revocation is applied");
}

/// Review (issue 10): `keys retire` for a compromised key — the newest key (the signer) and an
/// unknown id are refused; an older key is deleted, and once a node hears of it the tokens it
/// signed are refused at once (a rotation alone would let them verify until they expire).
#[tokio::test]
async fn a_retired_key_no_longer_verifies_and_the_signer_cannot_be_retired() {
    use crate::changes::{Change, FeedEvent};
    use crate::service::{retire_signing_key, KeyRetirement};
    let h = Harness::new().await;
    let t = patient_tokens(&h).await;
    let old = h.auth.signing_keys().kids()[0].to_owned();
    let new = h.auth.rotate_keys(NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_ok(), "a rotation keeps the old key verifying");
    assert_eq!(retire_signing_key(&h.store, &new).await.unwrap(), KeyRetirement::Newest);
    assert_eq!(retire_signing_key(&h.store, "nope").await.unwrap(), KeyRetirement::Unknown);
    assert_eq!(retire_signing_key(&h.store, &old).await.unwrap(), KeyRetirement::Retired);
    h.auth.apply_change(&FeedEvent::Change(Change::KeyRetired { kid: old.clone() }), NOW).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err(), "tokens of the retired key are refused");
    assert_eq!(h.auth.signing_keys().kids(), [new.as_str()], "the new key signs at once");
    assert_eq!(h.auth.jwks(NOW)["keys"].as_array().unwrap().len(), 1, "and is the only one published");
}

/// A server without a change feed (SQLite) polls the keys: one added by another process
/// (`smartlaunch keys rotate --data`) is loaded once and published at once, signs from its
/// activation on, and the tokens of the old key still verify.
#[tokio::test]
async fn a_key_added_by_another_process_is_loaded_by_the_poll() {
    let h = Harness::new().await;
    let before = patient_tokens(&h).await;
    assert!(!h.auth.reload_keys_if_rotated(NOW).await.unwrap(), "nothing new");
    let fresh = KeyMaterial::generate();
    h.store.add_keys(&fresh, NOW).await.unwrap();
    assert!(h.auth.reload_keys_if_rotated(NOW).await.unwrap(), "the new key is loaded");
    assert!(!h.auth.reload_keys_if_rotated(NOW).await.unwrap(), "once");
    let jwks = h.auth.jwks(NOW);
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], fresh.kid, "published before it signs");
    assert!(h.auth.verify_bearer(&before.access_token, NOW).is_ok(), "a token of the old key verifies");
}

/// A key retired by another process (`smartlaunch keys retire --data` next to a running SQLite
/// server) is dropped by the poll: its tokens stop verifying.
#[tokio::test]
async fn a_key_retired_by_another_process_is_dropped_by_the_poll() {
    let h = Harness::new().await;
    let before = patient_tokens(&h).await;
    let old = h.auth.signing_keys().kids()[0].to_owned();
    let fresh = KeyMaterial::generate();
    h.store.add_keys(&fresh, NOW).await.unwrap();
    assert!(h.auth.reload_keys_if_rotated(NOW).await.unwrap());
    assert_eq!(
        crate::service::retire_signing_key(&h.store, &old).await.unwrap(),
        crate::service::KeyRetirement::Retired
    );
    assert!(h.auth.verify_bearer(&before.access_token, NOW).is_ok(), "until the next poll");
    assert!(h.auth.reload_keys_if_rotated(NOW).await.unwrap(), "the retirement is seen");
    assert!(h.auth.verify_bearer(&before.access_token, NOW).is_err(), "the retired key's token is refused");
    assert_eq!(h.auth.signing_keys().kids(), [fresh.kid.as_str()]);
}
