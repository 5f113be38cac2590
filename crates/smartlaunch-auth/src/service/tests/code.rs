//! The token endpoint's `authorization_code` grant and the grant-type rules (checklist items
//! 29, 31, 41–42, 59–62, 87–89).

use super::*;
use crate::store::{CodeGrant, CodeStore, GrantStore};

const SCOPE: &str = "openid fhirUser offline_access user/*.rs";

#[tokio::test]
async fn grant_type_is_required() {
    let h = Harness::new().await;
    let (code, _) = token_error(h.token(&[("client_id", "public")]).await);
    assert_eq!(code, "invalid_request");
}

#[tokio::test]
async fn unknown_grant_types_are_unsupported() {
    let h = Harness::new().await;
    for grant in ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"] {
        let (code, why) = token_error(h.token(&[("grant_type", grant), ("client_id", "public")]).await);
        assert_eq!(code, "unsupported_grant_type", "{grant}");
        assert!(why.contains(grant), "{why}");
    }
}

#[tokio::test]
async fn a_code_is_exchanged_for_tokens_bound_to_the_grant() {
    let h = Harness::new().await;
    let t = h.tokens(SCOPE).await;
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.scope, SCOPE);
    assert_eq!(t.expires_in, 3600, "access tokens live at most an hour (item 62)");
    let claims = h.auth.verify_bearer(&t.access_token, NOW).unwrap();
    assert_eq!((claims.aud.as_str(), claims.client_id.as_str(), claims.sub.as_str()), (FHIR, "public", "u-dr"));
    assert!(t.refresh_token.is_some(), "offline_access brings a refresh token");
    assert!(t.id_token.is_some(), "openid brings an id_token");
    assert!(h.auth.verify_bearer(&t.access_token, NOW + 3600).is_err(), "never accepted after expires_in");
}

#[tokio::test]
async fn no_refresh_token_without_offline_or_online_access() {
    let h = Harness::new().await;
    let t = h.tokens("user/*.rs").await;
    assert!(t.refresh_token.is_none());
    assert!(t.id_token.is_none(), "no openid, no id_token");
}

#[tokio::test]
async fn the_id_token_carries_the_nonce_and_fhir_user() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", "openid fhirUser").await;
    let pairs = request("public", "openid fhirUser", &[("nonce", "n-123")]);
    let code = code_of(&h.authorize(&pairs, Some(&cookie)).await.unwrap());
    let t = h.exchange("public", &code).await.unwrap();
    let id_token = t.id_token.unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["nonce"], "n-123");
    assert_eq!(claims["fhirUser"], format!("{FHIR}/Practitioner/pr1"));
    assert_eq!(claims["aud"], "public");
    assert_eq!(claims["iss"], PUBLIC_URL);
}

#[tokio::test]
async fn code_and_redirect_uri_are_required() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let no_code = [("grant_type", "authorization_code"), ("redirect_uri", REDIRECT), ("client_id", "public")];
    assert_eq!(token_error(h.token(&no_code).await).0, "invalid_request");
    let no_redirect = [("grant_type", "authorization_code"), ("code", code.as_str()), ("client_id", "public")];
    assert_eq!(token_error(h.token(&no_redirect).await).0, "invalid_request");
}

#[tokio::test]
async fn the_authorization_code_grant_needs_an_identified_client() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(token_error(h.token(&pairs).await).0, "invalid_client");
}

#[tokio::test]
async fn an_unknown_code_is_invalid_grant() {
    let h = Harness::new().await;
    let (code, why) = token_error(h.exchange("public", "no-such-code").await);
    assert_eq!(code, "invalid_grant");
    assert_eq!(why, "the code is unknown, expired or already used");
    let long = "x".repeat(300);
    assert_eq!(token_error(h.exchange("public", &long).await).0, "invalid_grant");
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "public"),
    ];
    // Codes live 60 s (item 31).
    assert_eq!(token_error(h.token_at(&pairs, None, NOW + 60).await).0, "invalid_grant");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_the_grant() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let first = h.exchange("public", &code).await.unwrap();
    let (err, why) = token_error(h.exchange("public", &code).await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("already used"), "{why}");
    assert!(h.auth.verify_bearer(&first.access_token, NOW).is_err(), "the first access token is revoked");
    let refresh = first.refresh_token.unwrap();
    let pairs = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "public")];
    assert_eq!(token_error(h.token(&pairs).await).0, "invalid_grant", "the refresh family is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_is_single_use_even_when_redeemed_concurrently() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let auth = h.auth.clone();
            let code = code.clone();
            tokio::spawn(async move {
                let req = form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_id", "public"),
                ]);
                auth.token(req, None, NOW).await
            })
        })
        .collect();
    let mut issued = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => issued += 1,
            Err(e) => assert_eq!(e.code(), "invalid_grant"),
        }
    }
    assert_eq!(issued, 1, "of racing redemptions exactly one gets tokens");
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_refused() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (err, why) = token_error(h.token_at(&pairs, basic("basic", SECRET), NOW).await);
    assert_eq!(err, "invalid_grant");
    assert_eq!(why, "the code was issued to another client");
}

#[tokio::test]
async fn redirect_uri_must_equal_the_one_sent_to_authorize() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9000/cb/other"),
        ("code_verifier", VERIFIER),
        ("client_id", "public"),
    ];
    let (err, why) = token_error(h.token(&pairs).await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("redirect_uri differs"), "{why}");
}

#[tokio::test]
async fn the_pkce_verifier_is_required() {
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "public"),
    ];
    let (err, why) = token_error(h.token(&pairs).await);
    assert_eq!(err, "invalid_grant");
    assert_eq!(why, "code_verifier is required (PKCE)");
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let h = Harness::new().await;
    for wrong in ["a".repeat(43), CHALLENGE.to_owned(), "short".to_owned()] {
        let code = h.code("public", SCOPE).await;
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", wrong.as_str()),
            ("client_id", "public"),
        ];
        assert_eq!(token_error(h.token(&pairs).await).0, "invalid_grant", "{wrong}");
    }
}

#[tokio::test]
async fn a_verifier_for_a_code_without_challenge_is_refused() {
    // A PKCE downgrade: a code stored without a challenge never accepts a verifier.
    let h = Harness::new().await;
    let grant = CodeGrant {
        grant_id: "g".into(),
        client_id: "public".into(),
        redirect_uri: REDIRECT.into(),
        code_challenge: String::new(),
        aud: FHIR.into(),
        user_id: "u-dr".into(),
        fhir_user: "Practitioner/pr1".into(),
        user_name: "DR".into(),
        scope: "user/*.rs".into(),
        patient: None,
        encounter: None,
        nonce: None,
        session_id: None,
        auth_time: NOW,
        context: Default::default(),
        simulate_error: None,
        trace: None,
    };
    h.store.insert_code(&hash_token("bare-code"), &grant, NOW + 60).await.unwrap();
    let (err, why) = token_error(h.exchange("public", "bare-code").await);
    assert_eq!(err, "invalid_grant");
    assert!(why.contains("without a code_challenge"), "{why}");
}

#[tokio::test]
async fn a_client_not_registered_for_the_grant_is_unauthorized() {
    let h = Harness::new().await;
    let assertion = h.assertion("svc");
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", "whatever"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion.as_str()),
    ];
    assert_eq!(token_error(h.token(&pairs).await).0, "unauthorized_client");
}

#[tokio::test]
async fn a_refused_code_exchange_stores_no_grant() {
    // Wrong verifier: the code is spent, and nothing refreshable was created.
    let h = Harness::new().await;
    let code = h.code("public", SCOPE).await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &"b".repeat(43)),
        ("client_id", "public"),
    ];
    assert!(h.token(&pairs).await.is_err());
    assert!(h.auth.store.user_authorizations("u-dr", NOW).await.unwrap().iter().all(|a| !a.refreshable));
}
