//! smartlaunch-client against the real server (issue 11): both launches, every client type,
//! the `iss` allow-list, `state` bound to the browser, and id_token verification.  The
//! browser's part (sign-in, picker, consent) is played by the scripted browser of
//! `support`; the e2e suite does the same in Chromium through the demo app.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};
use smartlaunch_client::{
    AuthorizationStore, ClientAuth, Error, JwksCache, MemoryStore, OAuthErrorCode, PendingAuthorization, PrivateKey,
    Session, SmartApp,
};

use super::ehr_launch::{create_launch, ehr_app, launch_of, EHR_SCOPE};
use crate::support::*;

pub(super) const STANDALONE_SCOPE: &str = "launch/patient openid fhirUser patient/*.cruds offline_access";

/// The callback URL's query, after the scripted browser went through the server's pages
/// from `authorize_url` (signing in as `user`, picking `patient`, consenting to all).
pub(super) async fn browse_to_callback(s: &Server, authorize_url: &str, user: &str, patient: Option<&str>) -> String {
    let mut browser = Browser::new(s);
    let mut landing = browser.get(authorize_url).await;
    loop {
        match landing {
            Landing::App(url) => return url.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default(),
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in(user, user).await,
            Landing::Page(_) if browser.is_patient_picker() => {
                landing = browser.pick_patient(patient.expect("a patient to pick")).await
            }
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(true, None).await,
            Landing::Page(p) => panic!("unexpected page {p}: {}", browser.page),
        }
    }
}

pub(super) fn app(s: &Server, client_id: &str, scope: &str, auth: ClientAuth) -> SmartApp {
    SmartApp::builder(client_id, &s.redirect_uri())
        .scope(scope)
        .client_auth(auth)
        .allowed_issuers([s.fhir.clone()])
        .build()
        .unwrap()
}

/// A standalone launch by the library as the clinician, picking pat-001.
pub(super) async fn standalone_session(s: &Server, app: &SmartApp) -> Session {
    let (url, pending) = app.standalone_launch(&s.fhir).await.unwrap();
    let query = browse_to_callback(s, url.as_str(), "clinician", Some("pat-001")).await;
    app.complete(&pending, &query).await.unwrap()
}

/// Registers an app of `method` for the standalone launch; its client id and authentication.
pub(super) async fn registered(s: &Server, method: &str, kind: Option<KeyKind>) -> (String, ClientAuth) {
    let mut metadata = json!({
        "client_name": format!("Library App ({method})"),
        "redirect_uris": [s.redirect_uri()],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": method,
    });
    let key = kind.map(|k| SigningKey::generate(k).unwrap());
    if let Some(key) = &key {
        metadata["jwks"] = key.public_jwks();
    }
    let reg = s.register(metadata).await;
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = || reg["client_secret"].as_str().unwrap().to_owned();
    let auth = match (method, key) {
        ("none", _) => ClientAuth::Public,
        ("client_secret_basic", _) => ClientAuth::SecretBasic(secret()),
        ("client_secret_post", _) => ClientAuth::SecretPost(secret()),
        ("private_key_jwt", Some(key)) => {
            let pem = key.to_pem().unwrap();
            ClientAuth::PrivateKeyJwt(match kind {
                Some(KeyKind::Rs384) => PrivateKey::rs384(key.kid(), &pem).unwrap(),
                _ => PrivateKey::es384(key.kid(), &pem).unwrap(),
            })
        }
        (other, _) => panic!("{other}"),
    };
    (client_id, auth)
}

#[tokio::test]
async fn an_ehr_launch_by_the_library_delivers_the_context_and_a_verified_fhir_user() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Library EHR App").await;
    let r = create_launch(
        &s,
        json!({"client_id": client, "patient": "pat-001", "encounter": "enc-001-1", "user": "Practitioner/pract-001",
               "fhirContext": [{"reference": "Questionnaire/phq-9", "role": "https://example.org/role/to-complete"}],
               "intent": "complete-questionnaire", "tenant": "north-clinic"}),
        None,
    )
    .await;
    let created: Value = r.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());

    let app = app(&s, &client, EHR_SCOPE, ClientAuth::Public);
    let (url, pending) = app.ehr_launch(&s.fhir, &launch).await.unwrap();
    let q = query_of(url.as_str());
    assert_eq!(q["launch"], launch);
    assert_eq!(q["aud"], s.fhir);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 43, "a state of 256 bits");

    let query = browse_to_callback(&s, url.as_str(), "clinician", None).await;
    let session = app.complete(&pending, &query).await.unwrap();
    let c = session.context();
    assert_eq!(c.patient.as_deref(), Some("pat-001"));
    assert_eq!(c.encounter.as_deref(), Some("enc-001-1"));
    assert_eq!(c.fhir_context[0].reference.as_deref(), Some("Questionnaire/phq-9"));
    assert_eq!(c.intent.as_deref(), Some("complete-questionnaire"));
    assert_eq!(c.tenant.as_deref(), Some("north-clinic"));
    assert!(c.need_patient_banner, "the launch API's launches are not framed by the EHR");
    assert!(c.smart_style_url.is_some());
    assert!(c.granted_scopes().contains(&smart_scopes::Scope::Launch));
    let user = c.fhir_user().expect("fhirUser from the verified id_token");
    assert_eq!(user.reference(), "Practitioner/pract-001");

    let fhir = session.fhir();
    let patient = fhir.read_patient().await.unwrap();
    assert_eq!(patient["id"], "pat-001");
    assert!(smartlaunch_client::resource::patient_name(&patient).is_some());
    let practitioner = fhir.resolve(&user.url).await;
    assert!(practitioner.is_ok() || practitioner.as_ref().is_err_and(Error::is_forbidden), "{practitioner:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_standalone_launch_works_for_every_client_type() {
    let s = Server::start().await;
    for (method, kind) in [
        ("none", None),
        ("client_secret_basic", None),
        ("client_secret_post", None),
        ("private_key_jwt", Some(KeyKind::Rs384)),
        ("private_key_jwt", Some(KeyKind::Es384)),
    ] {
        let (client, auth) = registered(&s, method, kind).await;
        let app = app(&s, &client, STANDALONE_SCOPE, auth);
        let session = standalone_session(&s, &app).await;
        assert_eq!(session.context().patient.as_deref(), Some("pat-001"), "{method} {kind:?}");
        assert!(session.can_refresh().await, "offline_access gives a refresh token");
        assert_eq!(session.fhir().read_patient().await.unwrap()["id"], "pat-001");
        // The refresh authenticates the same way.
        session.refresh().await.unwrap_or_else(|e| panic!("{method} {kind:?}: {e}"));
        assert_eq!(session.refreshes(), 1);
        assert_eq!(session.fhir().read_patient().await.unwrap()["id"], "pat-001");
    }
    // A wrong secret is the server's invalid_client, typed.
    let (client, _) = registered(&s, "client_secret_basic", None).await;
    let app = app(&s, &client, STANDALONE_SCOPE, ClientAuth::SecretBasic("wrong".into()));
    let (url, pending) = app.standalone_launch(&s.fhir).await.unwrap();
    let query = browse_to_callback(&s, url.as_str(), "clinician", Some("pat-001")).await;
    match app.complete(&pending, &query).await {
        Err(Error::OAuth(e)) => assert_eq!(e.code, OAuthErrorCode::InvalidClient),
        other => panic!("{:?}", other.err()),
    }
    s.stop().await;
}

#[tokio::test]
async fn an_iss_not_on_the_allow_list_is_refused_before_any_request() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Careful App").await;
    let strict =
        SmartApp::builder(&client, &s.redirect_uri()).allowed_issuers(["https://ehr.example/fhir"]).build().unwrap();
    assert!(matches!(strict.ehr_launch(&s.fhir, "L").await, Err(Error::IssuerNotAllowed(_))));
    // With no allow-list at all, nothing is allowed (on by default).
    let default = SmartApp::builder(&client, &s.redirect_uri()).build().unwrap();
    assert!(matches!(default.ehr_launch(&s.fhir, "L").await, Err(Error::IssuerNotAllowed(_))));
    assert!(matches!(default.standalone_launch(&s.fhir).await, Err(Error::IssuerNotAllowed(_))));
    // A lookalike of an allowed server is another server.
    let allowed = app(&s, &client, EHR_SCOPE, ClientAuth::Public);
    let lookalike = format!("{}x", s.fhir);
    assert!(matches!(allowed.ehr_launch(&lookalike, "L").await, Err(Error::IssuerNotAllowed(_))));
    s.stop().await;
}

#[tokio::test]
async fn a_callback_with_another_state_or_from_another_browser_is_refused_and_redeems_nothing() {
    let s = Server::start().await;
    let (client, auth) = registered(&s, "none", None).await;
    let app = app(&s, &client, STANDALONE_SCOPE, auth);
    let store = MemoryStore::default();
    let (url, pending) = app.standalone_launch(&s.fhir).await.unwrap();
    let carried = store.save(&pending).unwrap();
    let query = browse_to_callback(&s, url.as_str(), "clinician", Some("pat-001")).await;

    // The attacker's own authorization (another state) meets this browser's callback.
    let (_, other) = app.standalone_launch(&s.fhir).await.unwrap();
    assert!(matches!(app.complete(&other, &query).await, Err(Error::StateMismatch(_))));
    // A tampered state.
    let forged = query.replace(&format!("state={}", pending.state), "state=forged");
    assert!(matches!(app.complete(&pending, &forged).await, Err(Error::StateMismatch(_))));
    // A browser without the cookie has no pending authorization.
    assert!(matches!(store.take(None, smartlaunch_client::unix_now()), Err(Error::StateMismatch(_))));

    // Nothing was redeemed: the right browser still completes, once.
    let taken: PendingAuthorization = store.take(Some(&carried), smartlaunch_client::unix_now()).unwrap();
    let session = app.complete(&taken, &query).await.unwrap();
    assert_eq!(session.context().patient.as_deref(), Some("pat-001"));
    assert!(store.take(Some(&carried), smartlaunch_client::unix_now()).is_err(), "once");
    match app.complete(&taken, &query).await {
        Err(Error::OAuth(e)) => assert_eq!(e.code, OAuthErrorCode::InvalidGrant, "a code is single-use"),
        other => panic!("{:?}", other.err()),
    }
    // A user who says no comes back as access_denied, typed (a new app: the clinician's
    // consent to this one is remembered).
    let (client, auth) = registered(&s, "none", None).await;
    let app = super::client_launch::app(&s, &client, STANDALONE_SCOPE, auth);
    let (url, pending) = app.standalone_launch(&s.fhir).await.unwrap();
    let mut browser = Browser::new(&s);
    let mut landing = browser.get(url.as_str()).await;
    let denied = loop {
        match landing {
            Landing::App(u) => break u.split_once('?').unwrap().1.to_owned(),
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in("clinician", "clinician").await,
            Landing::Page(_) if browser.is_patient_picker() => landing = browser.pick_patient("pat-001").await,
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(false, None).await,
            Landing::Page(p) => panic!("{p}"),
        }
    };
    match app.complete(&pending, &denied).await {
        Err(Error::OAuth(e)) => assert_eq!(e.code, OAuthErrorCode::AccessDenied),
        other => panic!("{:?}", other.err()),
    }
    s.stop().await;
}

/// A real id_token of the server, from a raw launch, with the nonce it was asked with.
async fn real_id_token(s: &Server) -> (String, String, String) {
    let client = s.public_app().await;
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "openid fhirUser launch/patient patient/*.rs", &verifier);
    params.push(("nonce".into(), "nonce-1".into()));
    let query = browse_to_callback(s, &s.authorize_url(&params), "clinician", Some("pat-001")).await;
    let code = query_of(&format!("http://x/?{query}"))["code"].clone();
    let token = redeem(s, &client, &code, &verifier).await;
    (token["id_token"].as_str().unwrap().to_owned(), client, "nonce-1".into())
}

#[tokio::test]
async fn a_tampered_id_token_is_detected() {
    let s = Server::start().await;
    let (id_token, client, nonce) = real_id_token(&s).await;
    let jwks_uri = format!("{}/.well-known/jwks.json", s.base);
    let http = smartlaunch_client::http_client().unwrap();
    let cache = JwksCache::default();
    let issuer: Value =
        s.http.get(format!("{}/.well-known/smart-configuration", s.fhir)).send().await.unwrap().json().await.unwrap();
    let issuer = issuer["issuer"].as_str().unwrap().to_owned();
    let now = smartlaunch_client::unix_now();
    let verify = |token: String, client: String, nonce: String| {
        let (http, cache, jwks_uri, issuer) = (&http, &cache, &jwks_uri, &issuer);
        async move { cache.verify_id_token(http, jwks_uri, &token, |c| c.check(issuer, &client, Some(&nonce), now)).await }
    };
    let claims = verify(id_token.clone(), client.clone(), nonce.clone()).await.expect("the real token verifies");
    assert!(claims.fhir_user.is_some());

    let parts: Vec<&str> = id_token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["fhirUser"] = json!(format!("{}/Practitioner/someone-else", s.fhir));
    let changed = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload.to_string()), parts[2]);
    assert!(
        matches!(verify(changed, client.clone(), nonce.clone()).await, Err(Error::InvalidIdToken(_))),
        "a changed claim"
    );

    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    header["alg"] = json!("none");
    let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), parts[1]);
    assert!(matches!(verify(unsigned, client.clone(), nonce.clone()).await, Err(Error::InvalidIdToken(_))), "alg none");

    // Signed by another key that claims the server's kid.
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let claims_json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let alg = header["alg"].as_str().unwrap();
    let forger = SigningKey::generate(KeyKind::parse(alg).unwrap()).unwrap();
    let forged = forger.sign_jwt(&claims_json, &[("kid", json!(kid))]).unwrap();
    assert!(
        matches!(verify(forged, client.clone(), nonce.clone()).await, Err(Error::InvalidIdToken(_))),
        "another key"
    );
    let unknown_kid = forger.sign_jwt(&claims_json, &[]).unwrap();
    assert!(
        matches!(verify(unknown_kid, client.clone(), nonce.clone()).await, Err(Error::InvalidIdToken(_))),
        "unknown kid"
    );

    // The genuine token, for another app or with another nonce.
    assert!(matches!(verify(id_token.clone(), "other-app".into(), nonce.clone()).await, Err(Error::InvalidIdToken(_))));
    assert!(matches!(verify(id_token, client, "other-nonce".into()).await, Err(Error::InvalidIdToken(_))));
    s.stop().await;
}

#[tokio::test]
async fn the_library_refreshes_before_expiry_with_one_refresh_for_32_waiting_requests() {
    let s = Server::start().await;
    let (client, auth) = registered(&s, "none", None).await;
    let now = Arc::new(std::sync::atomic::AtomicU64::new(smartlaunch_client::unix_now()));
    let clock = now.clone();
    let app = SmartApp::builder(&client, &s.redirect_uri())
        .scope(STANDALONE_SCOPE)
        .client_auth(auth)
        .allowed_issuers([s.fhir.clone()])
        .clock(Arc::new(move || clock.load(std::sync::atomic::Ordering::Relaxed)))
        .build()
        .unwrap();
    let session = standalone_session(&s, &app).await;
    let fhir = session.fhir();
    fhir.read_patient().await.unwrap();
    assert_eq!(session.refreshes(), 0);

    // An hour later by the app's clock, 32 requests at once find the token due.
    now.fetch_add(3600, std::sync::atomic::Ordering::Relaxed);
    let reads = (0..32).map(|_| {
        let fhir = fhir.clone();
        tokio::spawn(async move { fhir.read_patient().await })
    });
    for r in futures_join(reads).await {
        assert_eq!(r.unwrap()["id"], "pat-001");
    }
    assert_eq!(session.refreshes(), 1, "exactly one refresh for 32 concurrent requests");

    // A second refresh uses the rotated refresh token (the first one is dead now).
    now.fetch_add(3600, std::sync::atomic::Ordering::Relaxed);
    fhir.read_patient().await.unwrap();
    assert_eq!(session.refreshes(), 2);
    s.stop().await;
}

#[tokio::test]
async fn the_library_refreshes_once_after_32_requests_meet_a_401() {
    let s = Server::start().await;
    let (client, auth) = registered(&s, "client_secret_basic", None).await;
    let app = app(&s, &client, STANDALONE_SCOPE, auth);
    let session = standalone_session(&s, &app).await;
    // The session resumed with an access token the server does not know (as after a key
    // rotation or a revocation): every request gets a 401 first.
    let mut saved = serde_json::to_value(session.save().await).unwrap();
    saved["tokens"]["access_token"] = json!("not-a-token");
    let resumed = Session::restore(&app, serde_json::from_value(saved).unwrap());
    let fhir = resumed.fhir();
    let reads = (0..32).map(|_| {
        let fhir = fhir.clone();
        tokio::spawn(async move { fhir.read_patient().await })
    });
    for r in futures_join(reads).await {
        assert_eq!(r.unwrap()["id"], "pat-001");
    }
    assert_eq!(resumed.refreshes(), 1, "exactly one refresh for 32 requests refused at once");

    // Without a refresh token, the 401 is the caller's, typed.
    let mut saved = serde_json::to_value(resumed.save().await).unwrap();
    saved["tokens"]["access_token"] = json!("not-a-token");
    saved["tokens"]["refresh_token"] = Value::Null;
    let stuck = Session::restore(&app, serde_json::from_value(saved).unwrap());
    assert!(matches!(stuck.fhir().read_patient().await, Err(Error::Fhir { status: 401, .. })));
    s.stop().await;
}

/// Awaits every task.
pub(super) async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}
