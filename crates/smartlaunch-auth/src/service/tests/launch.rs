//! The `launch` parameter of an EHR launch (checklist items 19, 20, 26, 35, 63): resolved to
//! the EHR's context, single use, for its client and its user, and never after it expired.

use super::*;
use crate::service::{FlowStep, LAUNCH_LIFETIME};
use crate::store::LaunchStore;

const SCOPE: &str = "launch openid fhirUser patient/*.rs";

/// An authorization request with `launch`, in a browser signed in as `user_id` (consent
/// remembered).
async fn launched(h: &Harness, launch: &str, user_id: &str, now: UnixTime) -> Result<Progress, AuthorizeError> {
    let cookie = h.session(user_id).await;
    h.consented(user_id, "public", SCOPE).await;
    h.authorize_at(&request("public", SCOPE, &[("launch", launch)]), Some(&cookie), now).await
}

#[tokio::test]
async fn an_ehr_launch_resolves_its_context_without_pickers() {
    let h = Harness::new().await;
    let launch = h.launch("public", Some("u-dr"), Default::default()).await;
    let code = code_of(&launched(&h, &launch, "u-dr", NOW).await.unwrap());
    let t = h.exchange("public", &code).await.unwrap();
    assert_eq!(t.patient.as_deref(), Some("p1"));
    assert!(t.scope.split(' ').any(|s| s == "launch"), "the launch scope is kept for an EHR launch: {}", t.scope);
}

#[tokio::test]
async fn an_unknown_launch_is_refused_by_redirect() {
    let h = Harness::new().await;
    let r = launched(&h, "no-such-launch", "u-dr", NOW).await;
    let (error, why) = redirect_error(&r);
    assert_eq!(error, "invalid_request");
    assert!(why.contains("names no launch"), "{why}");
}

#[tokio::test]
async fn a_launch_is_used_once() {
    let h = Harness::new().await;
    let launch = h.launch("public", Some("u-dr"), Default::default()).await;
    code_of(&launched(&h, &launch, "u-dr", NOW).await.unwrap());
    let (error, why) = redirect_error(&launched(&h, &launch, "u-dr", NOW).await);
    assert_eq!(error, "invalid_request");
    assert!(why.contains("already used"), "{why}");
}

#[tokio::test]
async fn a_reusable_launch_may_be_used_until_it_expires() {
    let h = Harness::new().await;
    let new = NewLaunch {
        client_id: "public".into(),
        user_id: Some("u-dr".into()),
        patient: Some("p1".into()),
        reusable_for: Some(600),
        ..Default::default()
    };
    let launch = h.auth.create_launch(new, NOW).await.unwrap().launch;
    code_of(&launched(&h, &launch, "u-dr", NOW).await.unwrap());
    code_of(&launched(&h, &launch, "u-dr", NOW + 1).await.unwrap());
    assert!(redirect_error(&launched(&h, &launch, "u-dr", NOW + 600).await).1.contains("expired"));
}

#[tokio::test]
async fn a_launch_for_another_client_is_refused() {
    let h = Harness::new().await;
    let launch = h.launch("basic", Some("u-dr"), Default::default()).await;
    let (error, why) = redirect_error(&launched(&h, &launch, "u-dr", NOW).await);
    assert_eq!(error, "invalid_request");
    assert!(why.contains("“basic”"), "names the launched client: {why}");
}

#[tokio::test]
async fn an_expired_launch_is_refused() {
    let h = Harness::new().await;
    let launch = h.launch("public", Some("u-dr"), Default::default()).await;
    let (_, why) = redirect_error(&launched(&h, &launch, "u-dr", NOW + LAUNCH_LIFETIME).await);
    assert!(why.contains("expired"), "{why}");
}

#[tokio::test]
async fn a_launch_of_another_users_session_is_refused() {
    let h = Harness::new().await;
    let launch = h.launch("public", Some("u-dr"), Default::default()).await;
    let (_, why) = redirect_error(&launched(&h, &launch, "u-other", NOW).await);
    assert!(why.contains("another user"), "{why}");
}

#[tokio::test]
async fn a_launch_naming_its_user_admits_only_that_user_at_sign_in() {
    let h = Harness::new().await;
    let launch = h.launch("public", Some("u-dr"), Default::default()).await;
    let progress = h.authorize(&request("public", SCOPE, &[("launch", &launch)]), None).await.unwrap();
    let Progress::Step { step: FlowStep::SignIn, pending, flow_key: Some(key), .. } = progress else {
        panic!("expected the sign-in page, got {progress:?}");
    };
    let creds = crate::service::Credentials { username: "other", password: PASSWORD, client_addr: None };
    let r = h.auth.sign_in(&pending.id, Some(&key), &pending.csrf, creds, NOW).await;
    assert!(matches!(&r, Err(AuthorizeError::WrongUser(name)) if name == "dr"), "{r:?}");
}

#[tokio::test]
async fn a_launch_without_a_user_lets_the_browser_user_in() {
    let h = Harness::new().await;
    let launch = h.launch("public", None, Default::default()).await;
    let t = h.exchange("public", &code_of(&launched(&h, &launch, "u-other", NOW).await.unwrap())).await.unwrap();
    assert_eq!(h.auth.verify_bearer(&t.access_token, NOW).unwrap().sub, "u-other");
}

#[tokio::test]
async fn skip_sign_in_completes_without_a_session_and_without_online_access() {
    let h = Harness::new().await;
    let options = LaunchOptions { skip_sign_in: true, skip_consent: true, ..Default::default() };
    let launch = h.launch("public", Some("u-dr"), options).await;
    let scope = "launch online_access patient/*.rs";
    let progress = h.authorize(&request("public", scope, &[("launch", &launch)]), None).await.unwrap();
    let t = h.exchange("public", &code_of(&progress)).await.unwrap();
    assert!(!t.scope.contains("online_access"), "online_access needs a session: {}", t.scope);
    assert!(t.refresh_token.is_none());
}

#[tokio::test]
async fn a_simulated_authorize_error_answers_as_asked() {
    use crate::launch::SimulatedError;
    let h = Harness::new().await;
    for (error, expect_page) in [
        (SimulatedError::AuthorizeInvalidClient, true),
        (SimulatedError::AuthorizeInvalidRedirectUri, true),
        (SimulatedError::AuthorizeInvalidScope, false),
    ] {
        let options = LaunchOptions { simulate_error: Some(error), ..Default::default() };
        let launch = h.launch("public", Some("u-dr"), options).await;
        let r = launched(&h, &launch, "u-dr", NOW).await;
        if expect_page {
            assert!(matches!(&r, Err(AuthorizeError::NotRedirectable(why)) if why.contains("simulated")), "{r:?}");
        } else {
            assert_eq!(redirect_error(&r).0, "invalid_scope");
        }
    }
}

#[tokio::test]
async fn a_launch_is_bound_to_existing_patients_and_their_encounters() {
    let h = Harness::new().await;
    let bad = NewLaunch { client_id: "public".into(), patient: Some("nobody".into()), ..Default::default() };
    assert!(h.auth.create_launch(bad, NOW).await.is_err());
    let bad = NewLaunch {
        client_id: "public".into(),
        patient: Some("p2".into()),
        encounter: Some("e1".into()),
        ..Default::default()
    };
    assert!(h.auth.create_launch(bad, NOW).await.is_err(), "e1 is p1's encounter");
    assert!(h.store.recent_launches(10).await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn simulated_token_errors_answer_after_the_code_checks() {
    use crate::launch::SimulatedError;
    let h = Harness::new().await;
    for (error, code) in [
        (SimulatedError::TokenInvalidClientSecret, "invalid_client"),
        (SimulatedError::TokenInvalidCode, "invalid_grant"),
        (SimulatedError::TokenInvalidScope, "invalid_scope"),
    ] {
        let options = LaunchOptions { simulate_error: Some(error), ..Default::default() };
        let launch = h.launch("public", Some("u-dr"), options).await;
        let code_value = code_of(&launched(&h, &launch, "u-dr", NOW).await.unwrap());
        let (err, why) = token_error(h.exchange("public", &code_value).await);
        assert_eq!(err, code);
        assert!(why.contains("simulated"), "{why}");
    }
}

#[tokio::test]
async fn simulated_fhir_errors_refuse_the_access_token() {
    use crate::launch::SimulatedError;
    let h = Harness::new().await;
    let options = LaunchOptions { simulate_error: Some(SimulatedError::FhirInvalidToken), ..Default::default() };
    let launch = h.launch("public", Some("u-dr"), options).await;
    let t = h.exchange("public", &code_of(&launched(&h, &launch, "u-dr", NOW).await.unwrap())).await.unwrap();
    assert!(h.auth.verify_bearer(&t.access_token, NOW).is_err());
    let opened = h.auth.open_bearer(&t.access_token).unwrap();
    assert!(h.auth.trace_of(&opened, NOW).is_some_and(|p| p.simulates_refusal));
    assert!(h.auth.verify_opened_for(opened, &h.auth.config.fhir_base(), NOW).is_err(), "opened or not: refused");
}
