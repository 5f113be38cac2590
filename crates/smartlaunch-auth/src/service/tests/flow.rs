//! The browser steps of an authorization (ARCHITECTURE.md "Security design"): sign-in,
//! patient and encounter pickers (checklist items 33, 36), consent and its denial (item 32),
//! each bound to the browser that started the request and to its CSRF token.

use super::*;
use crate::service::{Credentials, FlowStep};
use crate::store::{GrantStore, PendingAuthorization};

/// A request started in a fresh browser: its pending request and flow key.
async fn start(h: &Harness, client_id: &str, scope: &str) -> (Box<PendingAuthorization>, String) {
    match h.authorize(&request(client_id, scope, &[]), None).await.unwrap() {
        Progress::Step { step: FlowStep::SignIn, pending, flow_key: Some(key), .. } => (pending, key),
        other => panic!("expected the sign-in page, got {other:?}"),
    }
}

fn creds<'a>(username: &'a str, password: &'a str) -> Credentials<'a> {
    Credentials { username, password, client_addr: Some("127.0.0.9") }
}

/// Signs `username` in and shows the next step.
async fn signed_in(h: &Harness, pending: &PendingAuthorization, key: &str, username: &str) -> Progress {
    h.auth.sign_in(&pending.id, Some(key), &pending.csrf, creds(username, PASSWORD), NOW).await.unwrap();
    h.auth.resume(&pending.id, Some(key), NOW).await.unwrap()
}

fn step(progress: &Progress) -> &FlowStep {
    match progress {
        Progress::Step { step, .. } => step,
        other => panic!("expected a step, got {other:?}"),
    }
}

#[tokio::test]
async fn sign_in_and_consent_issue_a_code_and_remember_the_consent() {
    let h = Harness::new().await;
    let scope = "openid offline_access user/*.rs";
    let (pending, key) = start(&h, "public", scope).await;
    assert_eq!(step(&signed_in(&h, &pending, &key, "dr").await), &FlowStep::Consent);
    let all: Vec<String> = scope.split(' ').map(str::to_owned).collect();
    let done = h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &all, NOW).await.unwrap();
    let t = h.exchange("public", &code_of(&done)).await.unwrap();
    assert_eq!(t.scope, scope);
    let apps = h.store.user_authorizations("u-dr", NOW).await.unwrap();
    assert_eq!((apps[0].client_id.as_str(), apps[0].refreshable), ("public", true));
    assert!(matches!(h.auth.resume(&pending.id, Some(&key), NOW).await, Err(AuthorizeError::UnknownRequest)), "done");
}

#[tokio::test]
async fn a_wrong_password_fails_without_saying_which_part() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    for (user, pw) in [("dr", "wrong"), ("nobody", PASSWORD)] {
        let r = h.auth.sign_in(&pending.id, Some(&key), &pending.csrf, creds(user, pw), NOW).await;
        assert!(matches!(r, Err(AuthorizeError::SignInFailed)), "{r:?}");
    }
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_throttled() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    let mut throttled = false;
    for _ in 0..20 {
        match h.auth.sign_in(&pending.id, Some(&key), &pending.csrf, creds("dr", "wrong"), NOW).await {
            Err(AuthorizeError::Throttled { retry_after }) => {
                assert!(retry_after > 0);
                throttled = true;
                break;
            }
            Err(AuthorizeError::SignInFailed) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(throttled, "growing delays after repeated failures");
}

#[tokio::test]
async fn signing_in_twice_for_one_request_is_refused() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    let r = h.auth.sign_in(&pending.id, Some(&key), &pending.csrf, creds("dr", PASSWORD), NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "{r:?}");
}

#[tokio::test]
async fn a_step_from_another_browser_is_refused() {
    let h = Harness::new().await;
    let (pending, _) = start(&h, "public", "user/*.rs").await;
    for key in [None, Some("another-browser")] {
        let r = h.auth.sign_in(&pending.id, key, &pending.csrf, creds("dr", PASSWORD), NOW).await;
        assert!(matches!(r, Err(AuthorizeError::OtherBrowser)), "{r:?}");
        assert!(matches!(h.auth.resume(&pending.id, key, NOW).await, Err(AuthorizeError::OtherBrowser)));
    }
}

#[tokio::test]
async fn a_step_without_the_requests_csrf_token_is_refused() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    let r = h.auth.sign_in(&pending.id, Some(&key), "forged", creds("dr", PASSWORD), NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "{r:?}");
    signed_in(&h, &pending, &key, "dr").await;
    let r = h.auth.consent(&pending.id, Some(&key), "forged", true, &["user/*.rs".into()], NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "{r:?}");
}

#[tokio::test]
async fn an_unknown_or_expired_request_cannot_continue() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    assert!(matches!(h.auth.resume("no-such-id", Some(&key), NOW).await, Err(AuthorizeError::UnknownRequest)));
    let later = NOW + 30 * 60;
    assert!(matches!(h.auth.resume(&pending.id, Some(&key), later).await, Err(AuthorizeError::UnknownRequest)));
}

#[tokio::test]
async fn denying_consent_redirects_with_access_denied() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    let r = h.auth.consent(&pending.id, Some(&key), &pending.csrf, false, &[], NOW).await;
    assert_eq!(redirect_error(&r), ("access_denied".into(), "the user denied the request".into()));
}

#[tokio::test]
async fn approving_nothing_redirects_with_access_denied() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    let r = h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &["system/*.rs".into()], NOW).await;
    assert_eq!(redirect_error(&r).1, "the user approved none of the requested permissions");
}

#[tokio::test]
async fn consent_can_only_narrow_the_request() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "openid user/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    let approved = vec!["user/*.rs".to_owned(), "user/*.cruds".to_owned(), "offline_access".to_owned()];
    let done = h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &approved, NOW).await.unwrap();
    let t = h.exchange("public", &code_of(&done)).await.unwrap();
    assert_eq!(t.scope, "user/*.rs", "unrequested scopes in the form are ignored");
}

#[tokio::test]
async fn consent_is_refused_before_its_step() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    let r = h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &["user/*.rs".into()], NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "before sign-in: {r:?}");
}

#[tokio::test]
async fn standalone_patient_and_encounter_pickers_establish_the_context() {
    let h = Harness::new().await;
    let scope = "launch/patient launch/encounter patient/*.rs";
    let (pending, key) = start(&h, "public", scope).await;
    let next = signed_in(&h, &pending, &key, "dr").await;
    assert_eq!(step(&next), &FlowStep::PickPatient { choices: vec![] });
    let r = h.auth.choose_patient(&pending.id, Some(&key), &pending.csrf, "nobody", NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep("That patient does not exist."))), "{r:?}");
    h.auth.choose_patient(&pending.id, Some(&key), &pending.csrf, "p1", NOW).await.unwrap();
    let next = h.auth.resume(&pending.id, Some(&key), NOW).await.unwrap();
    assert_eq!(step(&next), &FlowStep::PickEncounter { encounter_ids: vec!["e2".into(), "e1".into()] });
    let r = h.auth.choose_encounter(&pending.id, Some(&key), &pending.csrf, "e9", NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep("That encounter is not one of this patient's."))), "{r:?}");
    h.auth.choose_encounter(&pending.id, Some(&key), &pending.csrf, "e1", NOW).await.unwrap();
    let all: Vec<String> = scope.split(' ').map(str::to_owned).collect();
    let done = h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &all, NOW).await.unwrap();
    let t = h.exchange("public", &code_of(&done)).await.unwrap();
    assert_eq!((t.patient.as_deref(), t.encounter.as_deref()), (Some("p1"), Some("e1")));
}

#[tokio::test]
async fn a_patient_scope_alone_still_establishes_a_patient() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "patient/*.rs").await;
    assert!(matches!(step(&signed_in(&h, &pending, &key, "dr").await), FlowStep::PickPatient { .. }));
}

#[tokio::test]
async fn pickers_refuse_choices_out_of_turn() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    let r = h.auth.choose_patient(&pending.id, Some(&key), &pending.csrf, "p1", NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "{r:?}");
    let r = h.auth.choose_encounter(&pending.id, Some(&key), &pending.csrf, "e1", NOW).await;
    assert!(matches!(r, Err(AuthorizeError::BadStep(_))), "{r:?}");
}

#[tokio::test]
async fn the_encounter_step_is_skipped_for_a_patient_without_encounters() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "launch/patient launch/encounter patient/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    h.auth.choose_patient(&pending.id, Some(&key), &pending.csrf, "p2", NOW).await.unwrap();
    assert_eq!(step(&h.auth.resume(&pending.id, Some(&key), NOW).await.unwrap()), &FlowStep::Consent);
}

#[tokio::test]
async fn a_patient_user_shares_their_own_record_without_a_picker() {
    let h = Harness::new().await;
    let scope = "launch/patient patient/*.rs";
    let (pending, key) = start(&h, "public", scope).await;
    assert_eq!(step(&signed_in(&h, &pending, &key, "pat").await), &FlowStep::Consent);
    let done =
        h.auth.consent(&pending.id, Some(&key), &pending.csrf, true, &["patient/*.rs".into()], NOW).await.unwrap();
    assert_eq!(h.exchange("public", &code_of(&done)).await.unwrap().patient.as_deref(), Some("p1"));
}

#[tokio::test]
async fn sign_out_of_a_request_returns_to_sign_in_and_forgets_the_choices() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "launch/patient patient/*.rs").await;
    signed_in(&h, &pending, &key, "dr").await;
    h.auth.choose_patient(&pending.id, Some(&key), &pending.csrf, "p1", NOW).await.unwrap();
    h.auth.sign_out_of_flow(&pending.id, Some(&key), &pending.csrf, None, NOW).await.unwrap();
    assert_eq!(step(&h.auth.resume(&pending.id, Some(&key), NOW).await.unwrap()), &FlowStep::SignIn);
    let next = signed_in(&h, &pending, &key, "other").await;
    assert!(matches!(step(&next), FlowStep::PickPatient { .. }), "the patient was forgotten");
}

#[tokio::test]
async fn a_session_joins_a_request_only_at_its_start() {
    let h = Harness::new().await;
    let (pending, key) = start(&h, "public", "user/*.rs").await;
    // A session opened elsewhere does not sign this request in.
    h.session("u-dr").await;
    assert_eq!(step(&h.auth.resume(&pending.id, Some(&key), NOW).await.unwrap()), &FlowStep::SignIn);
}

#[tokio::test]
async fn sign_out_needs_the_sessions_csrf_token() {
    let h = Harness::new().await;
    let cookie = h.session("u-dr").await;
    assert!(matches!(h.auth.sign_out(&cookie, "forged", NOW).await, Err(AuthorizeError::BadStep(_))));
    assert!(h.auth.session_user(&cookie, NOW).await.unwrap().is_some());
    h.auth.sign_out(&cookie, "session-csrf", NOW).await.unwrap();
    assert!(h.auth.session_user(&cookie, NOW).await.unwrap().is_none());
}
