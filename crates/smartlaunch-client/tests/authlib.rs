//! smartlaunch-client against a second, independent authorization server: Authlib (Python,
//! Flask) with PKCE, refresh-token rotation, OpenID Connect and RFC 9068 JWT access tokens
//! (tests/interop/authlib_server.py).  The library must depend on the standards, not on
//! smartlaunch's quirks.
//!
//! Needs `SMARTLAUNCH_INTEROP_PYTHON`: a Python with tests/interop/requirements.txt installed
//! (scripts/test.sh makes one).  Without it the test fails under `CI`, and is skipped (with a
//! note) otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use futures_util::TryStreamExt;
use serde_json::Value;
use smartlaunch_client::{ClientAuth, Error, SmartApp};

const REDIRECT: &str = "http://127.0.0.1:9/app/callback";
const SCOPE: &str = "openid fhirUser launch/patient patient/*.rs offline_access";

struct Authlib {
    child: Child,
    base: String,
}

impl Drop for Authlib {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_authlib() -> Option<Authlib> {
    let Ok(python) = std::env::var("SMARTLAUNCH_INTEROP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: SMARTLAUNCH_INTEROP_PYTHON must name a Python with tests/interop/requirements.txt"
        );
        eprintln!("skipped: set SMARTLAUNCH_INTEROP_PYTHON to a Python with tests/interop/requirements.txt");
        return None;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/authlib_server.py");
    let mut child =
        Command::new(python).arg(script).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("python starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("authlib server on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    Some(Authlib { child, base })
}

/// The Authlib server approves at once: the authorize URL answers with the redirect.
async fn approve(http: &reqwest::Client, authorize: &str) -> String {
    let r = http.get(authorize).send().await.unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    location.split_once('?').unwrap().1.to_owned()
}

#[tokio::test]
async fn the_library_launches_refreshes_and_reads_fhir_with_an_authlib_server() {
    let Some(authlib) = start_authlib() else { return };
    let fhir = format!("{}/fhir", authlib.base);
    let http = smartlaunch_client::http_client().unwrap();
    for (client_id, auth) in
        [("public-app", ClientAuth::Public), ("confidential-app", ClientAuth::SecretBasic("authlib-secret".into()))]
    {
        let app = SmartApp::builder(client_id, REDIRECT)
            .scope(SCOPE)
            .client_auth(auth)
            .allowed_issuers([fhir.clone()])
            .build()
            .unwrap();
        let (url, pending) = app.standalone_launch(&fhir).await.unwrap();
        let query = approve(&http, url.as_str()).await;

        // A callback with another state is refused before any code is sent.
        let forged = query.replace(&format!("state={}", pending.state), "state=forged");
        assert!(matches!(app.complete(&pending, &forged).await, Err(Error::StateMismatch(_))));

        let session = app.complete(&pending, &query).await.unwrap_or_else(|e| panic!("{client_id}: {e}"));
        let context = session.context();
        assert_eq!(context.patient.as_deref(), Some("p1"));
        assert!(context.need_patient_banner);
        let user = context.fhir_user().expect("fhirUser from Authlib's verified id_token");
        assert_eq!(user.reference(), "Patient/p1");

        let fhir_client = session.fhir();
        let patient = fhir_client.read_patient().await.unwrap();
        assert_eq!(smartlaunch_client::resource::patient_name(&patient).as_deref(), Some("Ada Lovelace"));
        let observations: Vec<Value> =
            fhir_client.search_patient("Observation", &[("_count", "10")]).unwrap().try_collect().await.unwrap();
        assert_eq!(observations.len(), 25, "three pages followed");

        // Refresh with rotation: the second refresh uses the rotated token.
        session.refresh().await.unwrap();
        session.refresh().await.unwrap();
        assert_eq!(session.refreshes(), 2);
        assert_eq!(fhir_client.read_patient().await.unwrap()["id"], "p1");
        // Another patient is Authlib's FHIR endpoint's 403, typed.
        assert!(fhir_client.read("Patient", "p2").await.unwrap_err().is_forbidden());
    }
}

#[tokio::test]
async fn a_tampered_authlib_id_token_is_refused() {
    let Some(authlib) = start_authlib() else { return };
    let fhir = format!("{}/fhir", authlib.base);
    let http = smartlaunch_client::http_client().unwrap();
    let app = SmartApp::builder("public-app", REDIRECT).scope(SCOPE).allowed_issuers([fhir.clone()]).build().unwrap();
    let (url, pending) = app.standalone_launch(&fhir).await.unwrap();
    let query = approve(&http, url.as_str()).await;
    let code = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "code").unwrap().1.into_owned();
    // The token exchange by hand, to hold Authlib's own id_token.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &pending.code_verifier),
        ("client_id", "public-app"),
    ];
    let tokens: Value =
        http.post(format!("{}/token", authlib.base)).form(&form).send().await.unwrap().json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let jwks = format!("{}/jwks", authlib.base);
    let cache = smartlaunch_client::JwksCache::default();
    let nonce = pending.nonce.clone().unwrap();
    let now = smartlaunch_client::unix_now();
    let check = |client: &'static str| {
        let nonce = nonce.clone();
        let base = authlib.base.clone();
        move |c: &smartlaunch_client::IdTokenClaims| c.check(&base, client, Some(&nonce), now)
    };
    cache.verify_id_token(&http, &jwks, &id_token, check("public-app")).await.expect("Authlib's id_token verifies");
    let refused = cache.verify_id_token(&http, &jwks, &id_token, check("confidential-app")).await;
    assert!(matches!(refused, Err(Error::InvalidIdToken(_))), "another app's audience");

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = id_token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["fhirUser"] = Value::String(format!("{fhir}/Patient/p2"));
    let changed = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let refused = cache.verify_id_token(&http, &jwks, &changed, check("public-app")).await;
    assert!(matches!(refused, Err(Error::InvalidIdToken(_))), "a changed claim");
}

#[tokio::test]
async fn an_older_server_is_discovered_through_its_capability_statement() {
    let Some(authlib) = start_authlib() else { return };
    let legacy = format!("{}/legacy/fhir", authlib.base);
    let http = smartlaunch_client::http_client().unwrap();
    let config = smartlaunch_client::discover(&http, &legacy).await.unwrap();
    assert_eq!(config.source, smartlaunch_client::discovery::Source::CapabilityStatement);
    assert_eq!(config.token_endpoint, format!("{}/token", authlib.base));

    let app = SmartApp::builder("public-app", REDIRECT)
        .scope("launch/patient patient/*.rs")
        .allowed_issuers([legacy.clone()])
        .build()
        .unwrap();
    let (url, pending) = app.standalone_launch(&legacy).await.unwrap();
    let query = approve(&http, url.as_str()).await;
    let session = app.complete(&pending, &query).await.unwrap();
    assert_eq!(session.fhir().read_patient().await.unwrap()["id"], "p1");

    // Such a server announces no issuer or key set: an id_token cannot be verified, and the
    // app that asks for one is told so rather than handed unverified claims.
    let openid =
        SmartApp::builder("public-app", REDIRECT).scope(SCOPE).allowed_issuers([legacy.clone()]).build().unwrap();
    let (url, pending) = openid.standalone_launch(&legacy).await.unwrap();
    let query = approve(&http, url.as_str()).await;
    match openid.complete(&pending, &query).await {
        Err(Error::InvalidIdToken(why)) => assert!(why.contains("announced no issuer"), "{why}"),
        other => panic!("{:?}", other.err()),
    }
}
