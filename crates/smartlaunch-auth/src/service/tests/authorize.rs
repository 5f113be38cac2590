//! The authorize endpoint's request rules (checklist items 21–30, 40): who gets an error page
//! and who a redirect, `response_type`, PKCE, `aud`, `state`, scope negotiation and `prompt`.

use super::*;

const SCOPE: &str = "openid fhirUser user/*.rs";

fn not_redirectable(result: Result<Progress, AuthorizeError>) -> String {
    match result {
        Err(AuthorizeError::NotRedirectable(why)) => why,
        other => panic!("expected an error page, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_client_gets_an_error_page_not_a_redirect() {
    let h = Harness::new().await;
    let why = not_redirectable(h.authorize(&request("nobody", SCOPE, &[]), None).await);
    assert!(why.contains("not registered"), "{why}");
    let why = not_redirectable(h.authorize(&request("", SCOPE, &[("client_id", "")]), None).await);
    assert!(why.contains("no client_id"), "{why}");
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let h = Harness::new().await;
    for bad in ["http://127.0.0.1:9000/cb/", "http://evil.example/cb", "http://127.0.0.1:9000/cb?x=1"] {
        let why = not_redirectable(h.authorize(&request("public", SCOPE, &[("redirect_uri", bad)]), None).await);
        assert!(why.contains("not registered for this app"), "{bad}: {why}");
    }
    let why = not_redirectable(h.authorize(&request("public", SCOPE, &[("redirect_uri", "")]), None).await);
    assert!(why.contains("no redirect_uri"), "{why}");
}

#[tokio::test]
async fn a_repeated_client_id_or_redirect_uri_gets_an_error_page() {
    let h = Harness::new().await;
    let mut pairs = request("public", SCOPE, &[]);
    pairs.push(("redirect_uri", REDIRECT));
    not_redirectable(h.authorize(&pairs, None).await);
}

#[tokio::test]
async fn other_repeated_parameters_are_refused_by_redirect() {
    let h = Harness::new().await;
    let mut pairs = request("public", SCOPE, &[]);
    pairs.push(("scope", "openid"));
    assert_eq!(redirect_error(&h.authorize(&pairs, None).await).0, "invalid_request");
}

#[tokio::test]
async fn response_type_code_is_required() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("response_type", "")]), None).await;
    assert_eq!(redirect_error(&r).0, "invalid_request");
}

#[tokio::test]
async fn the_implicit_and_hybrid_flows_are_refused() {
    let h = Harness::new().await;
    for rt in ["token", "code id_token", "id_token"] {
        let r = h.authorize(&request("public", SCOPE, &[("response_type", rt)]), None).await;
        let (error, why) = redirect_error(&r);
        assert_eq!(error, "unsupported_response_type", "{rt}");
        assert!(why.contains("implicit"), "{why}");
    }
}

#[tokio::test]
async fn a_client_without_the_authorization_code_grant_is_unauthorized() {
    let h = Harness::new().await;
    let mut svc = client("svc-cb", crate::client::TokenEndpointAuthMethod::None, &["client_credentials"], None);
    svc.metadata.redirect_uris = vec![REDIRECT.into()];
    h.store.insert_client(&svc).await.unwrap();
    let r = h.authorize(&request("svc-cb", SCOPE, &[]), None).await;
    assert_eq!(redirect_error(&r).0, "unauthorized_client");
}

#[tokio::test]
async fn state_is_required() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("state", "")]), None).await;
    match r {
        Err(AuthorizeError::Redirect { error, state: None, .. }) => assert_eq!(error.error, "invalid_request"),
        other => panic!("expected invalid_request without state, got {other:?}"),
    }
}

#[tokio::test]
async fn pkce_s256_is_required() {
    let h = Harness::new().await;
    for changes in [[("code_challenge", "")], [("code_challenge_method", "")]] {
        let r = h.authorize(&request("public", SCOPE, &changes), None).await;
        assert_eq!(redirect_error(&r).0, "invalid_request", "{changes:?}");
    }
}

#[tokio::test]
async fn pkce_plain_is_refused() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("code_challenge_method", "plain")]), None).await;
    let (error, why) = redirect_error(&r);
    assert_eq!(error, "invalid_request");
    assert!(why.contains("S256"), "{why}");
}

#[tokio::test]
async fn aud_is_required_and_must_be_our_fhir_base() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("aud", "")]), None).await;
    assert_eq!(redirect_error(&r).0, "invalid_request");
    let r = h.authorize(&request("public", SCOPE, &[("aud", "https://counterfeit.example/fhir")]), None).await;
    let (error, why) = redirect_error(&r);
    assert_eq!(error, "invalid_request");
    assert!(why.contains("not this server's FHIR base"), "{why}");
}

#[tokio::test]
async fn resource_is_a_synonym_of_aud_and_must_agree_with_it() {
    let h = Harness::new().await;
    let pairs = request("public", SCOPE, &[("aud", ""), ("resource", FHIR)]);
    assert!(matches!(h.authorize(&pairs, None).await, Ok(Progress::Step { .. })));
    let mut pairs = request("public", SCOPE, &[]);
    pairs.push(("resource", "http://127.0.0.1:8080/other"));
    assert_eq!(redirect_error(&h.authorize(&pairs, None).await).0, "invalid_request");
}

#[tokio::test]
async fn the_token_is_bound_to_aud() {
    let h = Harness::new().await;
    let t = h.tokens("user/*.rs").await;
    assert_eq!(h.auth.verify_bearer(&t.access_token, NOW).unwrap().aud, FHIR);
    assert!(h.auth.verify_bearer_for(&t.access_token, "http://127.0.0.1:8080/sim/x/fhir", NOW).is_err());
}

#[tokio::test]
async fn scope_is_required_and_must_parse() {
    let h = Harness::new().await;
    assert_eq!(redirect_error(&h.authorize(&request("public", "", &[]), None).await).0, "invalid_scope");
    assert_eq!(redirect_error(&h.authorize(&request("public", "patient/*.zz!", &[]), None).await).0, "invalid_scope");
}

#[tokio::test]
async fn scopes_are_negotiated_against_the_client_limit() {
    let h = Harness::new().await;
    let cookie = h.session("u-pat").await;
    let r = h.authorize(&request("narrow", "patient/*.rs launch/patient offline_access", &[]), Some(&cookie)).await;
    match r {
        Ok(Progress::Step { step: crate::service::FlowStep::Consent, pending, .. }) => {
            assert_eq!(pending.scope, "patient/Observation.rs launch/patient", "narrowed, no refresh grant");
        }
        other => panic!("expected the consent page, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_grantable_is_invalid_scope() {
    let h = Harness::new().await;
    let r = h.authorize(&request("narrow", "user/Patient.rs", &[]), None).await;
    assert_eq!(redirect_error(&r).0, "invalid_scope");
}

#[tokio::test]
async fn the_launch_parameter_needs_the_launch_scope() {
    let h = Harness::new().await;
    let launch = h.launch("public", None, Default::default()).await;
    let r = h.authorize(&request("public", SCOPE, &[("launch", &launch)]), None).await;
    assert_eq!(redirect_error(&r).0, "invalid_scope");
    let mut pairs = request("public", "launch user/*.rs", &[]);
    pairs.push(("launch", ""));
    assert_eq!(redirect_error(&h.authorize(&pairs, None).await).0, "invalid_request", "an empty launch");
}

#[tokio::test]
async fn an_unknown_prompt_is_refused() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("prompt", "select_account")]), None).await;
    assert_eq!(redirect_error(&r).0, "invalid_request");
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let h = Harness::new().await;
    let r = h.authorize(&request("public", SCOPE, &[("prompt", "none")]), None).await;
    assert_eq!(
        redirect_error(&r),
        ("login_required".into(), "prompt=none was requested but the user must act first".into())
    );
}

#[tokio::test]
async fn prompt_none_without_consent_is_consent_required() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    let r = h.authorize(&request("public", SCOPE, &[("prompt", "none")]), Some(&cookie)).await;
    assert_eq!(redirect_error(&r).0, "consent_required");
}

#[tokio::test]
async fn prompt_none_with_a_picker_due_is_interaction_required() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", "launch/patient patient/*.rs").await;
    let r = h.authorize(&request("public", "launch/patient patient/*.rs", &[("prompt", "none")]), Some(&cookie)).await;
    assert_eq!(redirect_error(&r).0, "interaction_required");
}

#[tokio::test]
async fn prompt_none_completes_when_nothing_is_asked() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", SCOPE).await;
    code_of(&h.authorize(&request("public", SCOPE, &[("prompt", "none")]), Some(&cookie)).await.unwrap());
}

#[tokio::test]
async fn prompt_login_ignores_the_session() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", SCOPE).await;
    let r = h.authorize(&request("public", SCOPE, &[("prompt", "login")]), Some(&cookie)).await.unwrap();
    assert!(matches!(r, Progress::Step { step: crate::service::FlowStep::SignIn, .. }), "{r:?}");
}

#[tokio::test]
async fn prompt_consent_shows_the_consent_page_despite_a_remembered_consent() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", SCOPE).await;
    let r = h.authorize(&request("public", SCOPE, &[("prompt", "consent")]), Some(&cookie)).await.unwrap();
    assert!(matches!(r, Progress::Step { step: crate::service::FlowStep::Consent, .. }), "{r:?}");
}

#[tokio::test]
async fn a_remembered_consent_must_cover_the_request() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    h.consented("u-dr", "public", "user/Patient.rs").await;
    let r = h.authorize(&request("public", SCOPE, &[]), Some(&cookie)).await.unwrap();
    assert!(matches!(r, Progress::Step { step: crate::service::FlowStep::Consent, .. }), "{r:?}");
}

#[tokio::test]
async fn a_new_request_is_bound_to_its_browser_by_a_flow_key() {
    let h = Harness::new().await;
    match h.authorize(&request("public", SCOPE, &[]), None).await.unwrap() {
        Progress::Step { step, pending, user, flow_key } => {
            assert_eq!(step, crate::service::FlowStep::SignIn);
            assert!(user.is_none());
            let key = flow_key.unwrap();
            assert_eq!(pending.browser, hash_token(&key));
            assert_eq!(pending.state, "st4te");
            assert_eq!(pending.code_challenge, CHALLENGE);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_long_session_cookie_is_ignored() {
    let h = Harness::new().await;
    let long = "c".repeat(65);
    let r = h.authorize(&request("public", SCOPE, &[]), Some(&long)).await.unwrap();
    assert!(matches!(r, Progress::Step { step: crate::service::FlowStep::SignIn, .. }));
}
