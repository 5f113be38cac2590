//! Client authentication at the token endpoint: public, `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt` (checklist items 42–55), and the
//! `client_credentials` grant of backend services (items 98–102).

use serde_json::json;

use super::*;

const SCOPE: &str = "offline_access user/*.rs";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The code-exchange form of `client_id` without any client authentication.
async fn exchange_form(h: &Harness, client_id: &str) -> Vec<(&'static str, String)> {
    let code = h.code(client_id, SCOPE).await;
    vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", REDIRECT.into()),
        ("code_verifier", VERIFIER.into()),
    ]
}

fn with<'a>(pairs: &'a [(&'static str, String)], extra: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).chain(extra.iter().copied()).collect()
}

#[tokio::test]
async fn a_public_client_authenticates_by_client_id_alone() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "public").await;
    assert!(h.token(&with(&pairs, &[("client_id", "public")])).await.is_ok());
}

#[tokio::test]
async fn a_public_client_sending_a_secret_is_refused() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "public").await;
    let (err, why) = token_error(h.token(&with(&pairs, &[("client_id", "public"), ("client_secret", "x")])).await);
    assert_eq!(err, "invalid_client");
    assert!(why.contains("public client"), "{why}");
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "public").await;
    let (err, _) = token_error(h.token(&with(&pairs, &[("client_id", "nobody")])).await);
    assert_eq!(err, "invalid_client");
    let e = h.token(&with(&pairs, &[("client_id", "nobody")])).await.unwrap_err();
    assert_eq!(e.status(), 401, "invalid_client answers 401");
}

#[tokio::test]
async fn client_secret_basic_authenticates() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "basic").await;
    assert!(h.token_at(&with(&pairs, &[]), basic("basic", SECRET), NOW).await.is_ok());
}

#[tokio::test]
async fn client_secret_post_authenticates() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "post").await;
    assert!(h.token(&with(&pairs, &[("client_id", "post"), ("client_secret", SECRET)])).await.is_ok());
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "basic").await;
    let (err, why) = token_error(h.token_at(&with(&pairs, &[]), basic("basic", "wrong"), NOW).await);
    assert_eq!((err, why.as_str()), ("invalid_client", "the client secret is wrong"));
    let (err, _) = token_error(h.token(&with(&pairs, &[("client_id", "post"), ("client_secret", "wrong")])).await);
    assert_eq!(err, "invalid_client");
}

#[tokio::test]
async fn a_confidential_client_without_its_secret_is_invalid_client() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "basic").await;
    let (err, why) = token_error(h.token(&with(&pairs, &[("client_id", "basic")])).await);
    assert_eq!(err, "invalid_client");
    assert!(why.contains("confidential"), "{why}");
}

#[tokio::test]
async fn the_secret_is_sent_once() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "basic").await;
    let both = with(&pairs, &[("client_secret", SECRET)]);
    assert_eq!(token_error(h.token_at(&both, basic("basic", SECRET), NOW).await).0, "invalid_request");
}

#[tokio::test]
async fn client_id_in_the_body_must_match_the_basic_user() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "basic").await;
    let other = with(&pairs, &[("client_id", "post")]);
    assert_eq!(token_error(h.token_at(&other, basic("basic", SECRET), NOW).await).0, "invalid_client");
}

#[tokio::test]
async fn client_secret_post_needs_client_id() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "post").await;
    let (err, why) = token_error(h.token(&with(&pairs, &[("client_secret", SECRET)])).await);
    assert_eq!(err, "invalid_client");
    assert!(why.contains("without client_id"), "{why}");
}

#[tokio::test]
async fn private_key_jwt_authenticates_with_a_signed_assertion() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "jwt").await;
    let assertion = h.assertion("jwt");
    let form = with(&pairs, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert!(h.token(&form).await.is_ok());
}

#[tokio::test]
async fn a_replayed_assertion_jti_is_invalid_client() {
    let h = Harness::new().await;
    let assertion = h.assertion("jwt");
    let first = exchange_form(&h, "jwt").await;
    let form = with(&first, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert!(h.token(&form).await.is_ok());
    let second = exchange_form(&h, "jwt").await;
    let form = with(&second, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    let (err, why) = token_error(h.token(&form).await);
    assert_eq!(err, "invalid_client");
    assert!(why.contains("jti"), "{why}");
}

#[tokio::test]
async fn assertion_claims_are_checked() {
    let h = Harness::new().await;
    let good = json!({"iss": "jwt", "sub": "jwt", "aud": TOKEN_URL, "exp": NOW + 300, "jti": "j"});
    let cases = [
        ("aud", json!("http://elsewhere/token")),
        ("exp", json!(NOW - 1)),
        ("exp", json!(NOW + 3600)),
        ("sub", json!("other")),
        ("jti", Value::Null),
    ];
    for (i, (claim, value)) in cases.into_iter().enumerate() {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(claim);
        } else {
            claims[claim] = value;
            claims["jti"] = json!(format!("j{i}"));
        }
        let assertion = h.assertion_with(claims);
        let pairs = exchange_form(&h, "jwt").await;
        let form = with(&pairs, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
        assert_eq!(token_error(h.token(&form).await).0, "invalid_client", "{claim}");
    }
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_is_invalid_client() {
    let h = Harness::new().await;
    let stranger = SigningKey::generate(KeyKind::Es384).unwrap();
    let assertion = stranger.client_assertion("jwt", TOKEN_URL, NOW).unwrap();
    let pairs = exchange_form(&h, "jwt").await;
    let form = with(&pairs, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client");
}

#[tokio::test]
async fn the_assertion_type_must_be_jwt_bearer() {
    let h = Harness::new().await;
    let assertion = h.assertion("jwt");
    let pairs = exchange_form(&h, "jwt").await;
    let form = with(&pairs, &[("client_assertion_type", "urn:other"), ("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client");
    let form = with(&pairs, &[("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client", "a missing type");
}

#[tokio::test]
async fn the_assertion_iss_must_match_client_id() {
    let h = Harness::new().await;
    let assertion = h.assertion("jwt");
    let pairs = exchange_form(&h, "jwt").await;
    let form =
        with(&pairs, &[("client_id", "svc"), ("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client");
}

#[tokio::test]
async fn an_assertion_and_a_secret_together_are_refused() {
    let h = Harness::new().await;
    let assertion = h.assertion("jwt");
    let pairs = exchange_form(&h, "jwt").await;
    let form = with(
        &pairs,
        &[("client_secret", SECRET), ("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)],
    );
    assert_eq!(token_error(h.token(&form).await).0, "invalid_request");
}

#[tokio::test]
async fn a_private_key_jwt_client_cannot_use_a_secret_or_nothing() {
    let h = Harness::new().await;
    let pairs = exchange_form(&h, "jwt").await;
    let (err, why) = token_error(h.token(&with(&pairs, &[("client_id", "jwt")])).await);
    assert_eq!(err, "invalid_client");
    assert!(why.contains("private_key_jwt"), "{why}");
}

#[tokio::test]
async fn a_secret_client_cannot_authenticate_with_an_assertion() {
    let h = Harness::new().await;
    let assertion = h.key.client_assertion("basic", TOKEN_URL, NOW).unwrap();
    let pairs = exchange_form(&h, "basic").await;
    let form = with(&pairs, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client");
}

// ---- client_credentials (SMART Backend Services) ----

fn backend<'a>(assertion: &'a str, scope: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    pairs
}

#[tokio::test]
async fn a_backend_service_gets_a_short_system_token_without_refresh() {
    let h = Harness::new().await;
    let assertion = h.assertion("svc");
    let t = h.token(&backend(&assertion, Some("system/Patient.rs"))).await.unwrap();
    assert_eq!(t.scope, "system/Patient.rs");
    assert!(t.expires_in <= 300, "backend tokens live at most five minutes (item 102)");
    assert!(t.refresh_token.is_none() && t.id_token.is_none() && t.patient.is_none());
    let claims = h.auth.verify_bearer(&t.access_token, NOW).unwrap();
    assert_eq!((claims.sub.as_str(), claims.client_id.as_str()), ("svc", "svc"));
}

#[tokio::test]
async fn client_credentials_needs_an_authenticated_client() {
    let h = Harness::new().await;
    let pairs = [("grant_type", "client_credentials"), ("scope", "system/Patient.rs")];
    assert_eq!(token_error(h.token(&pairs).await).0, "invalid_client");
}

#[tokio::test]
async fn client_credentials_needs_a_scope() {
    let h = Harness::new().await;
    let assertion = h.assertion("svc");
    assert_eq!(token_error(h.token(&backend(&assertion, None)).await).0, "invalid_scope");
}

#[tokio::test]
async fn client_credentials_grants_only_pre_authorized_system_scopes() {
    let h = Harness::new().await;
    for (i, asked) in ["patient/*.rs", "system/*.cruds offline_access", "system/Patient.c"].into_iter().enumerate() {
        let assertion = h.assertion_with(
            json!({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": NOW + 300, "jti": format!("s{i}")}),
        );
        assert_eq!(token_error(h.token(&backend(&assertion, Some(asked))).await).0, "invalid_scope", "{asked}");
    }
}

#[tokio::test]
async fn a_client_not_registered_for_client_credentials_is_unauthorized() {
    let h = Harness::new().await;
    let pairs = [("grant_type", "client_credentials"), ("scope", "system/Patient.rs"), ("client_id", "public")];
    assert_eq!(token_error(h.token(&pairs).await).0, "unauthorized_client");
}

#[tokio::test]
async fn client_credentials_from_a_browser_is_refused() {
    let h = Harness::new().await;
    let assertion = h.assertion("svc");
    let mut req = form(&backend(&assertion, Some("system/Patient.rs")));
    req.from_browser = true;
    let e = h.auth.token(req, None, NOW).await.unwrap_err();
    assert_eq!(e.code(), "unauthorized_client");
}

#[tokio::test]
async fn a_jku_other_than_the_registered_jwks_url_is_refused() {
    let h = Harness::new().await;
    let claims = json!({"iss": "jwt", "sub": "jwt", "aud": TOKEN_URL, "exp": NOW + 300, "jti": "jku-1"});
    let assertion = h.key.sign_jwt(&claims, &[("jku", json!("https://attacker.example/jwks"))]).unwrap();
    let pairs = exchange_form(&h, "jwt").await;
    let form = with(&pairs, &[("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)]);
    assert_eq!(token_error(h.token(&form).await).0, "invalid_client");
}

#[tokio::test]
async fn a_backend_sessions_simulated_errors_answer_at_the_token_endpoint() {
    use crate::launch::SimulatedError;
    let h = Harness::new().await;
    for (i, (error, code)) in [
        (SimulatedError::BackendInvalidClientAssertion, "invalid_client"),
        (SimulatedError::BackendInvalidScope, "invalid_scope"),
    ]
    .into_iter()
    .enumerate()
    {
        h.auth.create_backend_session("svc", Some(error), NOW).await.unwrap();
        let assertion = h.assertion_with(
            json!({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": NOW + 300, "jti": format!("b{i}")}),
        );
        let (err, why) = token_error(h.token(&backend(&assertion, Some("system/Patient.rs"))).await);
        assert_eq!(err, code);
        assert!(why.contains("simulated"), "{why}");
    }
}
