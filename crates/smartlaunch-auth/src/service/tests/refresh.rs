//! The `refresh_token` grant: bound to its client, rotated on every use, reuse revokes the
//! family, scope narrows but never widens, absolute lifetime, `online_access` ends with the
//! session (checklist items 70–76).

use super::*;

const SCOPE: &str = "openid offline_access user/*.rs";

fn refresh_form<'a>(token: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", "public")];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    pairs
}

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let t = h.token(&refresh_form(&first, &[])).await.unwrap();
    let second = t.refresh_token.unwrap();
    assert_ne!(first, second);
    assert_eq!(t.scope, SCOPE, "no scope asked: the original grant");
    assert_eq!(t.expires_in, 3600);
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_ok());
    assert!(h.token(&refresh_form(&second, &[])).await.is_ok(), "the new token works");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_family() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let rotated = h.token(&refresh_form(&first, &[])).await.unwrap();
    let (err, why) = token_error(h.token(&refresh_form(&first, &[])).await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("already used"), "{why}");
    let second = rotated.refresh_token.unwrap();
    assert_eq!(token_error(h.token(&refresh_form(&second, &[])).await).0, "invalid_grant", "the family is revoked");
    assert!(h.auth.verify_bearer(&rotated.access_token, NOW).is_err(), "and its access tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_yield_one_token_and_revoke_the_family() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let auth = h.auth.clone();
            let token = first.clone();
            tokio::spawn(async move { auth.token(form(&refresh_form(&token, &[])), None, NOW).await })
        })
        .collect();
    let mut ok = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await.unwrap() {
            ok.push(r);
        }
    }
    assert!(ok.len() <= 1, "at most one racing refresh succeeds");
    for r in ok {
        let next = r.refresh_token.unwrap();
        assert!(h.token(&refresh_form(&next, &[])).await.is_err(), "a reuse revoked the family");
    }
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let t = h.token(&refresh_form(&first, &[("scope", "user/Patient.rs")])).await.unwrap();
    assert_eq!(t.scope, "user/Patient.rs");
}

#[tokio::test]
async fn a_refresh_never_widens_the_scope() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let (err, why) = token_error(h.token(&refresh_form(&first, &[("scope", "user/*.cruds")])).await);
    assert_eq!(err, "invalid_scope");
    assert!(why.contains("only narrow"), "{why}");
    assert!(h.token(&refresh_form(&first, &[])).await.is_ok(), "a refused widening does not spend the token");
}

#[tokio::test]
async fn an_unparsable_refresh_scope_is_invalid_scope() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    assert_eq!(token_error(h.token(&refresh_form(&first, &[("scope", "user/*.xyz!")])).await).0, "invalid_scope");
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let later = NOW + 30 * 24 * 3600;
    let (err, why) = token_error(h.token_at(&refresh_form(&first, &[]), None, later).await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("expired"), "{why}");
}

#[tokio::test]
async fn an_unknown_or_missing_refresh_token_is_refused() {
    let h = Harness::new().await;
    assert_eq!(token_error(h.token(&refresh_form("nope", &[])).await).0, "invalid_grant");
    assert_eq!(token_error(h.token(&refresh_form(&"x".repeat(300), &[])).await).0, "invalid_grant");
    assert_eq!(token_error(h.token(&refresh_form("", &[])).await).0, "invalid_request");
}

#[tokio::test]
async fn online_access_ends_with_the_session() {
    let h = Harness::new().await;
    let scope = "online_access user/*.rs";
    let t = h.tokens(scope).await;
    let token = t.refresh_token.unwrap();
    let rotated = h.token(&refresh_form(&token, &[])).await.unwrap().refresh_token.unwrap();
    h.store.delete_session(&hash_token("cookie-u-dr")).await.unwrap();
    let (err, why) = token_error(h.token(&refresh_form(&rotated, &[])).await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("online_access ended"), "{why}");
}

#[tokio::test]
async fn a_refresh_token_of_another_client_is_refused() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let pairs = [("grant_type", "refresh_token"), ("refresh_token", first.as_str())];
    let (err, why) = token_error(h.token_at(&pairs, basic("basic", SECRET), NOW).await);
    assert_eq!(err, "invalid_grant");
    assert_eq!(why, "the refresh token was issued to another client");
    assert!(h.token(&refresh_form(&first, &[])).await.is_ok(), "the owner's token still works");
}

#[tokio::test]
async fn a_public_client_may_refresh_without_client_id_but_a_confidential_one_must_authenticate() {
    let h = Harness::new().await;
    let first = h.tokens(SCOPE).await.refresh_token.unwrap();
    let anonymous = [("grant_type", "refresh_token"), ("refresh_token", first.as_str())];
    assert!(h.token(&anonymous).await.is_ok(), "a public client's token identifies it");

    let code = h.code("basic", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let confidential = h.token_at(&pairs, basic("basic", SECRET), NOW).await.unwrap().refresh_token.unwrap();
    let anonymous = [("grant_type", "refresh_token"), ("refresh_token", confidential.as_str())];
    assert_eq!(token_error(h.token(&anonymous).await).0, "invalid_client");
    let rotated = h.token_at(&anonymous, basic("basic", SECRET), NOW).await;
    assert!(rotated.is_ok(), "with its secret it refreshes");
}

#[tokio::test]
async fn a_revoked_grant_cannot_be_refreshed() {
    let h = Harness::new().await;
    let t = h.tokens(SCOPE).await;
    let claims = h.auth.verify_bearer(&t.access_token, NOW).unwrap();
    h.auth.revoke_grant(&claims.grant, NOW).await.unwrap();
    assert_eq!(token_error(h.token(&refresh_form(&t.refresh_token.unwrap(), &[])).await).0, "invalid_grant");
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err());
}
