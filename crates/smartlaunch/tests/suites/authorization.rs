//! The authorization server end to end: discovery, registration, authorize, token,
//! refresh, introspection, revocation, the management page and the command line.  Checklist
//! item numbers refer to ../shared/spec/SMART-APP-LAUNCH-2.2.md §5.

use crate::support::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, LOCATION, ORIGIN, PRAGMA, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PATIENT_SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

fn assert_no_store(r: &reqwest::Response) {
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()[PRAGMA], "no-cache");
}

async fn oauth_error(r: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status(), status);
    assert_no_store(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(!description.is_empty());
    description
}

// ---------------------------------------------------------------- discovery (items 1–15, 92)

#[tokio::test]
async fn smart_configuration_has_every_required_and_recommended_field() {
    let s = Server::start().await;
    let r = s
        .http
        .get(format!("{}/.well-known/smart-configuration", s.fhir))
        .header("Accept", "text/html")
        .header(ORIGIN, "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let d: Value = r.json().await.unwrap();
    for field in ["issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "registration_endpoint"] {
        let url = d[field].as_str().unwrap_or_else(|| panic!("{field} missing"));
        assert!(url.starts_with("http://127.0.0.1:"), "{field} must be absolute: {url}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["grant_types_supported"], json!(["authorization_code", "refresh_token", "client_credentials"]));
    assert_eq!(d["token_endpoint_auth_signing_alg_values_supported"], json!(["RS384", "ES384", "RS256", "ES256"]));
    assert!(d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("private_key_jwt")));
    assert!(d["scopes_supported"].as_array().unwrap().len() >= 5);
    assert!(d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("client_secret_basic")));
    assert_eq!(d["issuer"], s.base);
    // RECOMMENDED fields; each is exercised by its own test below.
    assert_eq!(d["introspection_endpoint"], format!("{}/auth/introspect", s.base));
    assert_eq!(d["revocation_endpoint"], format!("{}/auth/revoke", s.base));
    assert_eq!(d["management_endpoint"], format!("{}/account", s.base));
    assert_eq!(d["user_access_brand_bundle"], format!("{}/smart/brands.json", s.base));
    assert_eq!(d["user_access_brand_identifier"]["value"], s.base);
    s.stop().await;
}

#[tokio::test]
async fn capabilities_are_exactly_the_tested_ones() {
    // Each capability below has a test in this file named after it.
    let tested = [
        "launch-ehr",                     // suites::ehr_launch (every test)
        "launch-standalone",              // patient_standalone_launch_end_to_end
        "authorize-post",                 // authorize_by_post_works_like_get
        "client-public",                  // patient_standalone_launch_end_to_end
        "client-confidential-symmetric",  // confidential_clients_authenticate_with_basic_or_post
        "client-confidential-asymmetric", // suites::backend (every test)
        "sso-openid-connect",             // patient_standalone_launch_end_to_end (id_token)
        "context-standalone-patient",     // provider_launch_picks_patient_and_encounter
        "context-standalone-encounter",   // provider_launch_picks_patient_and_encounter
        "context-ehr-patient",            // suites::ehr_launch::ehr_and_portal_launch_apps_with_their_context…
        "context-ehr-encounter",          // suites::ehr_launch::ehr_and_portal_launch_apps_with_their_context…
        "context-banner",                 // need_patient_banner: suites::ehr_launch (framed: false, API: true)
        "context-style",                  // smart_style_url: suites::ehr_launch::launch_api_launches_deliver…
        "permission-offline",             // refresh_rotates_and_reuse_revokes_the_family
        "permission-online",              // online_access_ends_with_the_session
        "permission-patient",             // patient_token_cannot_read_another_patient
        "permission-user",                // user_scopes_follow_the_signed_in_user
        "permission-v1",                  // v1_scopes_are_granted_and_returned_as_v1
        "permission-v2",                  // patient_standalone_launch_end_to_end (patient/*.rs)
    ];
    let s = Server::start().await;
    let d: Value =
        s.http.get(format!("{}/.well-known/smart-configuration", s.fhir)).send().await.unwrap().json().await.unwrap();
    let advertised: Vec<&str> = d["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(advertised, tested);
    s.stop().await;
}

#[tokio::test]
async fn openid_configuration_jwks_and_capability_statement() {
    let s = Server::start().await;
    let oidc: Value =
        s.http.get(format!("{}/.well-known/openid-configuration", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(oidc["issuer"], s.base, "issuer = the URL the document was fetched from");
    assert!(oidc["id_token_signing_alg_values_supported"].as_array().unwrap().contains(&json!("RS256")));
    let jwks: Value = s.http.get(oidc["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert!(key["kid"].as_str().is_some() && key["n"].as_str().is_some() && key["e"].as_str().is_some());
    assert!(key.get("d").is_none(), "no private parts");

    let r = s.http.get(format!("{}/metadata", s.fhir)).header(ORIGIN, "http://elsewhere.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let cs: Value = r.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let security = &cs["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let ext = &security["extension"][0];
    assert_eq!(ext["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    let uri = |name: &str| {
        ext["extension"].as_array().unwrap().iter().find(|e| e["url"] == name).unwrap()["valueUri"].clone()
    };
    assert_eq!(uri("authorize"), json!(format!("{}/auth/authorize", s.base)));
    assert_eq!(uri("token"), json!(format!("{}/auth/token", s.base)));
    assert_eq!(uri("register"), json!(format!("{}/auth/register", s.base)));
    assert_eq!(uri("introspect"), json!(format!("{}/auth/introspect", s.base)));
    assert_eq!(uri("revoke"), json!(format!("{}/auth/revoke", s.base)));
    assert_eq!(uri("manage"), json!(format!("{}/account", s.base)));
    // Exactly the implemented interactions and search parameters.
    let observation =
        cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Observation").unwrap();
    let interactions: Vec<&str> =
        observation["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(
        interactions,
        ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"]
    );
    let params: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["_id", "_lastUpdated", "patient", "code", "category", "date", "value-quantity"] {
        assert!(params.contains(&p), "{p}");
    }
    assert!(observation["searchInclude"].as_array().unwrap().contains(&json!("Observation:patient")));
    assert_eq!(cs["rest"][0]["interaction"], json!([{"code": "transaction"}, {"code": "batch"}]));
    s.stop().await;
}

// ---------------------------------------------------------------- registration (items 17–18)

#[tokio::test]
async fn registration_validates_and_returns_metadata() {
    let s = Server::start().await;
    let public = s
        .register(json!({"client_name": "P", "redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none",
                         "scope": "openid patient/*.rs", "initiate_login_uri": "http://127.0.0.1:1/launch", "logo_uri": "https://x.example/l.png"}))
        .await;
    let client_id = public["client_id"].as_str().unwrap();
    assert_eq!(client_id.len(), 32, "128 random bits");
    assert!(
        client_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{client_id}: a client_id must be safe to paste anywhere — a leading '-' reads as a command-line flag"
    );
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["initiate_login_uri"], "http://127.0.0.1:1/launch");
    assert_eq!(public["scope"], "openid patient/*.rs");
    assert_eq!(public["grant_types"], json!(["authorization_code"]));
    let confidential = s.register(json!({"redirect_uris": ["https://app.example/cb"]})).await;
    assert_eq!(confidential["token_endpoint_auth_method"], "client_secret_basic");
    assert!(confidential["client_secret"].as_str().unwrap().len() >= 32);

    let post = |body: String, ct: &'static str| {
        let http = s.http.clone();
        let url = format!("{}/auth/register", s.base);
        async move { http.post(url).header(CONTENT_TYPE, ct).body(body).send().await.unwrap() }
    };
    let cases = [
        (json!({"redirect_uris": ["http://evil.example/cb"]}).to_string(), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}).to_string(), "invalid_redirect_uri"),
        (json!({"client_name": "x"}).to_string(), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://a.example/cb#f"]}).to_string(), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "magic"}).to_string(),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}).to_string(),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "patient/Observation.sr"}).to_string(),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": "https://a.example/cb"}).to_string(), "invalid_client_metadata"),
        ("{not json".to_string(), "invalid_client_metadata"),
    ];
    for (body, code) in cases {
        oauth_error(post(body.clone(), "application/json").await, StatusCode::BAD_REQUEST, code).await;
    }
    oauth_error(post("{}".into(), "text/plain").await, StatusCode::BAD_REQUEST, "invalid_client_metadata").await;
    s.stop().await;
}

#[tokio::test]
async fn registration_requires_the_initial_access_token_when_configured() {
    let s = Server::start_with(Some("s3cret-token")).await;
    let body = json!({"redirect_uris": ["https://a.example/cb"]});
    let url = format!("{}/auth/register", s.base);
    let r = s.http.post(&url).json(&body).send().await.unwrap();
    assert!(r.headers().contains_key(WWW_AUTHENTICATE));
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = s.http.post(&url).bearer_auth("wrong").json(&body).send().await.unwrap();
    oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = s.http.post(&url).bearer_auth("s3cret-token").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    s.stop().await;
}

// ---------------------------------------------------------------- authorize (items 21–36)

#[tokio::test]
async fn unknown_client_and_unregistered_redirect_get_an_error_page_not_a_redirect() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut params = s.authorize_params("no-such-client", PATIENT_SCOPE, &random(32));
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get(LOCATION).is_none());
    assert!(r.text().await.unwrap().contains("is not registered"));
    for bad in ["http://evil.example/cb", "http://127.0.0.1:9/app/callback/", "http://127.0.0.1:9/app/callback?x=1"] {
        params = s.authorize_params(&client, PATIENT_SCOPE, &random(32));
        params.iter_mut().find(|(k, _)| k == "redirect_uri").unwrap().1 = bad.into();
        let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get(LOCATION).is_none(), "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn authorize_errors_redirect_with_error_description_and_state() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("response_type", Some("token"), "unsupported_response_type"),
        ("response_type", Some("code id_token"), "unsupported_response_type"),
        ("response_type", None, "invalid_request"),
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("code_challenge_method", None, "invalid_request"),
        ("aud", None, "invalid_request"),
        ("aud", Some("https://evil.example/fhir"), "invalid_request"),
        ("aud", Some("http://127.0.0.1:1/fhir"), "invalid_request"),
        ("scope", Some("patient/Observation.sr"), "invalid_scope"),
        ("scope", None, "invalid_scope"),
        ("scope", Some("profile email"), "invalid_scope"),
        ("prompt", Some("sometimes"), "invalid_request"),
        ("launch", Some("not-issued-here"), "invalid_scope"), // without the `launch` scope
    ];
    for (name, value, code) in cases {
        let mut params = s.authorize_params(&client, PATIENT_SCOPE, &random(32));
        params.retain(|(k, _)| k != name);
        if let Some(v) = value {
            params.push((name.into(), v.into()));
        }
        let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{name}={value:?}");
        let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(location.starts_with(&s.redirect_uri()), "{location}");
        let q = query_of(&location);
        assert_eq!(q["error"], code, "{name}={value:?}: {q:?}");
        assert!(!q["error_description"].is_empty());
        assert_eq!(q["state"], "state-0123456789abcdef", "state is echoed (item 30)");
        assert!(!q.contains_key("code"));
    }
    let mut params = s.authorize_params(&client, PATIENT_SCOPE, &random(32));
    params.retain(|(k, _)| k != "state");
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    assert_eq!(query_of(r.headers()[LOCATION].to_str().unwrap())["error"], "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn aud_with_trailing_slash_or_resource_is_accepted() {
    let s = Server::start().await;
    let client = s.public_app().await;
    for (name, value) in [("aud", format!("{}/", s.fhir)), ("resource", s.fhir.clone())] {
        let mut params = s.authorize_params(&client, PATIENT_SCOPE, &random(32));
        params.retain(|(k, _)| k != "aud");
        params.push((name.into(), value));
        let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/auth/flow/"), "{name}");
    }
    s.stop().await;
}

#[tokio::test]
async fn authorize_by_post_works_like_get() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let params = s.authorize_params(&client, "openid fhirUser patient/*.rs", &verifier);
    let r = s.http.post(format!("{}/auth/authorize", s.base)).form(&params).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let flow = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let mut b = Browser::new(&s);
    b.take_cookie(&r);
    b.get(&format!("{}{flow}", s.base)).await;
    assert!(b.is_sign_in());
    b.sign_in("patient", "patient").await;
    let Landing::App(url) = b.consent(true, None).await else { panic!("expected the app") };
    let code = query_of(&url)["code"].clone();
    let tokens = redeem(&s, &client, &code, &verifier).await;
    assert_eq!(tokens["patient"], "pat-001");
    s.stop().await;
}

// ---------------------------------------------------------------- launches

#[tokio::test]
async fn patient_standalone_launch_end_to_end() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let mut params = s.authorize_params(&client, PATIENT_SCOPE, &verifier);
    params.push(("nonce".into(), "n-0S6_WzA2Mj".into()));
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    assert!(b.is_sign_in());
    assert!(
        b.page.contains("<label for=\"username\">Username</label>")
            && b.page.contains("<label for=\"password\">Password</label>")
    );
    b.sign_in("patient", "patient").await;
    assert!(b.is_consent(), "a patient user gets their own record, no picker");
    assert!(b.page.contains("Test App") && b.page.contains("Amy Shaw"));
    assert_eq!(b.offered_scopes(), vec!["launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"]);
    let Landing::App(url) = b.consent(true, None).await else { panic!("expected the app") };
    let code = query_of(&url)["code"].clone();
    assert!(
        code.len() >= 43 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "URL-safe, ≥ 128 bits"
    );

    let r = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(r.status(), 200);
    assert_no_store(&r);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_i64().unwrap() <= 3600);
    assert_eq!(t["scope"], PATIENT_SCOPE);
    assert_eq!(t["patient"], "pat-001");
    assert!(t["refresh_token"].as_str().is_some());

    // The id_token verifies with the published JWKS (items 87–90).
    let id_token = t["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let jwks: Value =
        s.http.get(format!("{}/.well-known/jwks.json", s.base)).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let dk = DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&client]);
    validation.set_issuer(&[&s.base]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &dk, &validation).unwrap().claims;
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    let fhir_user = claims["fhirUser"].as_str().unwrap();
    assert_eq!(fhir_user, format!("{}/Patient/pat-001", s.fhir));
    assert!(claims["sub"].as_str().is_some() && claims["iat"].as_i64().is_some() && claims["exp"].as_i64().is_some());

    // fhirUser resolves on our FHIR base with the access token.
    let access = t["access_token"].as_str().unwrap();
    let r = s.http.get(fhir_user).bearer_auth(access).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let patient: Value = r.json().await.unwrap();
    assert_eq!(patient["name"][0]["family"], "Shaw");
    assert_eq!(patient["meta"]["versionId"], "1");
    let r = s.read("Patient/pat-001", access).await;
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/fhir+json"));
    s.stop().await;
}

#[tokio::test]
async fn provider_launch_picks_patient_and_encounter() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let scope = "launch/patient launch/encounter openid fhirUser patient/*.rs";
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&s.authorize_params(&client, scope, &verifier))).await;
    b.sign_in("clinician", "clinician").await;
    assert!(b.is_patient_picker());
    assert!(b.page.contains("Patients 1–10 of 24"));
    assert!(b.page.contains(">Next page</a>"));
    // The name search narrows the list.
    let id = b.flow_id();
    b.get(&format!("{}/auth/flow/{id}?q=okafor", s.base)).await;
    assert!(b.page.contains("Okafor") && b.page.contains("of 1"));
    // A nonexistent patient is refused.
    let csrf = b.csrf();
    assert_eq!(
        b.post_status(&format!("/auth/flow/{id}/patient"), &[("csrf", &csrf), ("patient", "pat-999")]).await,
        400
    );
    b.pick_patient("pat-004").await;
    assert!(b.is_encounter_picker());
    let first = b.page.find("enc-004-1").unwrap();
    assert!(first < b.page.find("enc-004-2").unwrap(), "newest first");
    // An encounter of another patient is refused.
    let csrf = b.csrf();
    assert_eq!(
        b.post_status(&format!("/auth/flow/{id}/encounter"), &[("csrf", &csrf), ("encounter", "enc-001-1")]).await,
        400
    );
    b.pick_encounter("enc-004-2").await;
    assert!(b.is_consent());
    assert!(b.page.contains("Samuel Okafor") || b.page.contains("Okafor"));
    let Landing::App(url) = b.consent(true, None).await else { panic!() };
    let t = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(t["patient"], "pat-004");
    assert_eq!(t["encounter"], "enc-004-2");
    let claims = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["fhirUser"], format!("{}/Practitioner/pract-001", s.fhir));
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-004", access).await.status(), 200);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 403);
    s.stop().await;
}

#[tokio::test]
async fn patient_token_cannot_read_another_patient() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "launch/patient patient/*.rs", "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 200);
    let r = s.read("Patient/pat-002", access).await;
    assert_eq!(r.status(), 403);
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(s.read("Practitioner/pract-001", access).await.status(), 403, "not in the patient compartment");
    assert_eq!(s.read("Observation/obs-001-1-1", access).await.status(), 200);
    assert_eq!(s.read("Observation/obs-002-1-1", access).await.status(), 403);
    assert_eq!(s.read("Patient/pat-999", access).await.status(), 403, "another patient's id, existing or not");
    s.stop().await;
}

#[tokio::test]
async fn user_scopes_follow_the_signed_in_user() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "openid fhirUser user/*.rs", "clinician", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    assert!(t.get("patient").is_none(), "no patient context without launch/patient or patient/ scopes");
    let access = t["access_token"].as_str().unwrap();
    for path in ["Patient/pat-001", "Patient/pat-002", "Practitioner/pract-001"] {
        assert_eq!(s.read(path, access).await.status(), 200, "{path}");
    }
    let (code, verifier) = launch(&s, &client, "openid fhirUser user/*.rs", "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 200);
    assert_eq!(s.read("Patient/pat-002", access).await.status(), 403);
    // A scope for another type does not allow Patient reads.
    let (code, verifier) = launch(&s, &client, "user/Observation.rs", "clinician", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let r = s.read("Patient/pat-001", t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test]
async fn v1_scopes_are_granted_and_returned_as_v1() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "launch/patient patient/*.read", "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    assert_eq!(t["scope"], "launch/patient patient/*.read");
    assert_eq!(s.read("Patient/pat-001", t["access_token"].as_str().unwrap()).await.status(), 200);
    s.stop().await;
}

// ---------------------------------------------------------------- browser steps

#[tokio::test]
async fn wrong_credentials_show_the_form_again_without_saying_which_part() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &random(32)))).await;
    for (u, p) in [("patient", "wrong"), ("nobody", "patient")] {
        b.sign_in(u, p).await;
        assert!(b.is_sign_in());
        assert!(b.page.contains("role=\"alert\">The username or password is incorrect"));
        assert!(b.cookie.is_none());
    }
    b.sign_in("patient", "patient").await;
    assert!(b.is_consent());
    s.stop().await;
}

#[tokio::test]
async fn steps_cannot_be_skipped_or_forged() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut b = Browser::new(&s);
    let verifier = random(32);
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    let (id, csrf) = (b.flow_id(), b.csrf());
    // Every step carries the flow cookie of the browser that started the request.
    let flow_cookie = format!("smartlaunch_flow={}", b.other_cookies["smartlaunch_flow"]);
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let (http, cookie) = (s.http.clone(), flow_cookie.clone());
        async move { http.post(path).header("cookie", cookie).form(&form).send().await.unwrap().status() }
    };
    // Consent and pickers before sign-in, a wrong CSRF token, an unknown request: all refused.
    assert_eq!(
        post(format!("{}/auth/flow/{id}/consent", s.base), vec![("csrf", csrf.clone()), ("decision", "allow".into())])
            .await,
        400
    );
    assert_eq!(
        post(format!("{}/auth/flow/{id}/patient", s.base), vec![("csrf", csrf.clone()), ("patient", "pat-002".into())])
            .await,
        400
    );
    assert_eq!(
        post(
            format!("{}/auth/flow/{id}/signin", s.base),
            vec![("csrf", "forged".into()), ("username", "patient".into()), ("password", "patient".into())]
        )
        .await,
        400
    );
    assert_eq!(post(format!("{}/auth/flow/nope/signin", s.base), vec![("csrf", csrf.clone())]).await, 400);
    b.sign_in("patient", "patient").await;
    // A patient user cannot pick another patient.
    assert_eq!(
        post(format!("{}/auth/flow/{id}/patient", s.base), vec![("csrf", csrf.clone()), ("patient", "pat-002".into())])
            .await,
        400
    );
    // A forged scope in the consent form is ignored: the grant can only narrow.
    let Landing::App(url) = b.consent(true, Some(&["patient/*.rs", "user/*.cruds"])).await else { panic!() };
    let granted = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(granted["scope"], "patient/*.rs");
    // The request is finished: its id cannot be used again.
    assert_eq!(
        post(format!("{}/auth/flow/{id}/consent", s.base), vec![("csrf", csrf.clone()), ("decision", "allow".into())])
            .await,
        400
    );
    s.stop().await;
}

#[tokio::test]
async fn consent_narrows_denies_and_is_remembered() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let mut b = Browser::new(&s);
    // Deny → access_denied with state.
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    b.sign_in("patient", "patient").await;
    let Landing::App(url) = b.consent(false, None).await else { panic!() };
    let q = query_of(&url);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "state-0123456789abcdef");
    // Unchecking narrows the grant; the session is reused (no sign-in page).
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    assert!(b.is_consent(), "the signed-in session is reused");
    let Landing::App(url) = b.consent(true, Some(&["launch/patient", "patient/*.rs"])).await else { panic!() };
    let t = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(t["scope"], "launch/patient patient/*.rs");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());
    // The same or a narrower set is not asked again.
    for scope in ["launch/patient patient/*.rs", "patient/Patient.r"] {
        let landing = b.get(&s.authorize_url(&s.authorize_params(&client, scope, &verifier))).await;
        assert!(matches!(landing, Landing::App(ref u) if query_of(u).contains_key("code")), "{scope}: {landing:?}");
    }
    // A wider set is.
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    assert!(b.is_consent());
    // prompt=consent forces the page; prompt=none without a session fails with login_required.
    let mut params = s.authorize_params(&client, "patient/*.rs", &verifier);
    params.push(("prompt".into(), "consent".into()));
    b.get(&s.authorize_url(&params)).await;
    assert!(b.is_consent());
    let mut params = s.authorize_params(&client, "patient/*.rs", &verifier);
    params.push(("prompt".into(), "none".into()));
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    assert_eq!(query_of(r.headers()[LOCATION].to_str().unwrap())["error"], "login_required");
    s.stop().await;
}

#[tokio::test]
async fn session_cookie_is_httponly_lax_and_sign_out_ends_it() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let params = s.authorize_params(&client, PATIENT_SCOPE, &random(32));
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    let flow = format!("{}{}", s.base, r.headers()[LOCATION].to_str().unwrap());
    let flow_cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = s.http.get(&flow).header("cookie", &flow_cookie).send().await.unwrap().text().await.unwrap();
    let mut b = Browser::new(&s);
    b.take_cookie(&r);
    b.page = page;
    let (id, csrf) = (b.flow_id(), b.csrf());
    let r = s
        .http
        .post(format!("{}/auth/flow/{id}/signin", s.base))
        .header("cookie", &flow_cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "patient"), ("password", "patient")])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("smartlaunch_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"));
    let value = cookie.split(';').next().unwrap().trim_start_matches("smartlaunch_session=").to_owned();
    assert!(value.len() >= 43);
    // The consent page carries a sign-out form; signing out sends the request back to sign-in.
    b.cookie = Some(value);
    b.get(&flow).await;
    assert!(b.is_consent() && b.page.contains("Sign out</button>"));
    b.post(&format!("/auth/flow/{id}/signout"), &[("csrf", &csrf)]).await;
    assert!(b.is_sign_in());
    assert!(b.cookie.is_none());
    s.stop().await;
}

// ---------------------------------------------------------------- token endpoint (items 41–62)

#[tokio::test]
async fn token_endpoint_errors() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let other = s.public_app().await;
    let redirect = s.redirect_uri();
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let base = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", redirect.clone()),
            ("client_id", client.clone()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>| {
        let http = s.http.clone();
        let url = format!("{}/auth/token", s.base);
        async move { http.post(url).form(&form).send().await.unwrap() }
    };
    // PKCE (item 29): missing, empty, wrong, the challenge itself.  Each failure burns the
    // code, so every case gets a fresh launch.
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some(String::new()), "empty"),
        (Some(random(32)), "wrong"),
        (Some(s256(&verifier)), "challenge"),
    ];
    for (v, what) in cases {
        let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
        let mut form = base(&code);
        if let Some(v) = v {
            form.push(("code_verifier", if what == "challenge" { s256(&verifier) } else { v }));
        }
        let d = oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_grant").await;
        assert!(d.contains("code_verifier"), "{what}: {d}");
    }
    // Wrong redirect_uri, another client's code, unknown code.
    let (c2, v2) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let mut form = base(&c2);
    form[2].1 = "http://127.0.0.1:9/other".into();
    form.push(("code_verifier", v2.clone()));
    oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let (c3, v3) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let mut form = base(&c3);
    form[3].1 = other.clone();
    form.push(("code_verifier", v3));
    oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let mut form = base("unknown-code");
    form.push(("code_verifier", verifier.clone()));
    oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Missing code or redirect_uri, grant types, content type, client.
    oauth_error(
        send(vec![("grant_type", "authorization_code".into()), ("client_id", client.clone())]).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let mut form = base(&code);
    form.remove(2);
    oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    oauth_error(
        send(vec![("grant_type", "password".into()), ("client_id", client.clone())]).await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    )
    .await;
    oauth_error(send(vec![("grant_type", "implicit".into())]).await, StatusCode::BAD_REQUEST, "unsupported_grant_type")
        .await;
    oauth_error(send(vec![("client_id", client.clone())]).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = s
        .http
        .post(format!("{}/auth/token", s.base))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let mut form = base(&code);
    form[3].1 = "unknown-client".into();
    oauth_error(send(form).await, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let mut form = base(&code);
    form.remove(3);
    form.push(("code_verifier", verifier.clone()));
    oauth_error(send(form).await, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let mut form = base(&code);
    form.push(("client_secret", "public clients have none".into()));
    oauth_error(send(form).await, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let mut form = base(&code);
    form.push(("code", "twice".into()));
    oauth_error(send(form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Finally the good exchange still works: the code was not burnt by requests without a client.
    let mut form = base(&code);
    form.push(("code_verifier", verifier));
    assert_eq!(send(form).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_it_issued() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 200);
    let r = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = s.read("Patient/pat-001", access).await;
    assert_eq!(r.status(), 401, "tokens from a replayed code are revoked");
    assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    s.stop().await;
}

#[tokio::test]
async fn code_race_has_exactly_one_winner() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "launch/patient patient/*.rs", "patient", None).await;
    let url = format!("{}/auth/token", s.base);
    let redirect = s.redirect_uri();
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (http, url, code, verifier, client, redirect) =
                (s.http.clone(), url.clone(), code.clone(), verifier.clone(), client.clone(), redirect.clone());
            tokio::spawn(async move {
                http.post(url)
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", &redirect),
                        ("code_verifier", &verifier),
                        ("client_id", &client),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::BAD_REQUEST => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    s.stop().await;
}

#[tokio::test]
async fn codes_expire_after_sixty_seconds_and_tokens_after_an_hour() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    s.clock.advance(61);
    let r = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    s.clock.advance(t["expires_in"].as_i64().unwrap());
    let r = s.read("Patient/pat-001", access).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().contains("expired"));
    s.stop().await;
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post() {
    let s = Server::start().await;
    for method in ["client_secret_basic", "client_secret_post"] {
        let (client, secret) = s.confidential_app(method).await;
        for how in ["basic", "post"] {
            let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
            let redirect = s.redirect_uri();
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect.as_str()),
                ("code_verifier", verifier.as_str()),
            ];
            let request = s.http.post(format!("{}/auth/token", s.base));
            let request = if how == "basic" {
                request.basic_auth(&client, Some(&secret))
            } else {
                form.push(("client_id", &client));
                form.push(("client_secret", &secret));
                request
            };
            let r = request.form(&form).send().await.unwrap();
            assert_eq!(r.status(), 200, "{method} via {how}");
            let t: Value = r.json().await.unwrap();
            // Refresh needs the client to authenticate again.
            let refresh = t["refresh_token"].as_str().unwrap();
            let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
            oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
            let r = s
                .http
                .post(format!("{}/auth/token", s.base))
                .basic_auth(&client, Some(&secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        // A wrong secret, a missing secret: 401 invalid_client (with a Basic challenge).
        let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
        let redirect = s.redirect_uri();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let r = s
            .http
            .post(format!("{}/auth/token", s.base))
            .basic_auth(&client, Some("wrong"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
        oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
        let mut with_id = form.to_vec();
        with_id.push(("client_id", &client));
        let r = s.http.post(format!("{}/auth/token", s.base)).form(&with_id).send().await.unwrap();
        oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
        let r = s
            .http
            .post(format!("{}/auth/token", s.base))
            .header("Authorization", "Basic !!!")
            .form(&form)
            .send()
            .await
            .unwrap();
        oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    s.stop().await;
}

// ---------------------------------------------------------------- refresh (items 71–76)

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let other = s.public_app().await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let t0 = redeem(&s, &client, &code, &verifier).await;
    let r0 = t0["refresh_token"].as_str().unwrap().to_owned();
    // A public client is identified from the token itself (the JS client sends no client_id).
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &r0)]).await;
    assert_eq!(r.status(), 200);
    assert_no_store(&r);
    let t1: Value = r.json().await.unwrap();
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r0, r1, "rotated on every use");
    assert_eq!(t1["patient"], "pat-001");
    assert_eq!(t1["scope"], PATIENT_SCOPE);
    // Narrowing is allowed, widening is not.
    let r = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "patient/*.cruds"),
            ("client_id", &client),
        ])
        .await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("client_id", &other)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "offline_access patient/Patient.r"),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_eq!(t2["scope"], "offline_access patient/Patient.r");
    let a2 = t2["access_token"].as_str().unwrap().to_owned();
    let r2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(s.read("Patient/pat-001", &a2).await.status(), 200);
    // Presenting a rotated token revokes the whole family and its access tokens.
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &r0)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(s.read("Patient/pat-001", &a2).await.status(), 401);
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &r2)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Missing and unknown tokens.
    oauth_error(s.token(&[("grant_type", "refresh_token")]).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    oauth_error(
        s.token(&[("grant_type", "refresh_token"), ("refresh_token", "nope")]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn refresh_tokens_have_an_absolute_lifetime() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let mut refresh = redeem(&s, &client, &code, &verifier).await["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        s.clock.advance(9 * 24 * 3600);
        let t: Value =
            s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await.json().await.unwrap();
        refresh = t["refresh_token"].as_str().unwrap().to_owned();
    }
    s.clock.advance(4 * 24 * 3600);
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    s.stop().await;
}

#[tokio::test]
async fn online_access_ends_with_the_session() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&s.authorize_params(&client, "launch/patient online_access patient/*.rs", &verifier))).await;
    b.sign_in("patient", "patient").await;
    let Landing::App(url) = b.consent(true, None).await else { panic!() };
    let t = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(t["scope"], "launch/patient online_access patient/*.rs");
    let r: Value = s
        .token(&[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .await
        .json()
        .await
        .unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_owned();
    // Sign out from the home page.
    let home = s
        .http
        .get(format!("{}/", s.base))
        .header("Cookie", format!("smartlaunch_session={}", b.cookie.clone().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    b.page = home;
    let csrf = b.csrf();
    b.post("/auth/signout", &[("csrf", &csrf)]).await;
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    let d = oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(d.contains("online_access"));
    s.stop().await;
}

// ---------------------------------------------------------------- the resource server (item 77)

#[tokio::test]
async fn fhir_reads_need_a_valid_bearer_token() {
    let s = Server::start().await;
    let r = s.http.get(format!("{}/Patient/pat-001", s.fhir)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"smartlaunch\"");
    for bad in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        let r = s.read("Patient/pat-001", bad).await;
        assert_eq!(r.status(), 401);
        assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().contains("error=\"invalid_token\""));
        let oo: Value = r.json().await.unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    // A token from another smartlaunch (another key) is refused.
    let other = Server::start().await;
    let client = other.public_app().await;
    let (code, verifier) = launch(&other, &client, PATIENT_SCOPE, "patient", None).await;
    let t = redeem(&other, &client, &code, &verifier).await;
    assert_eq!(s.read("Patient/pat-001", t["access_token"].as_str().unwrap()).await.status(), 401);
    other.stop().await;
    s.stop().await;
}

// ---------------------------------------------------------------- hostile input

#[tokio::test]
async fn hostile_input_gets_a_4xx_never_a_5xx() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let big = "x".repeat(100 * 1024);
    let long = "y".repeat(5000);
    let mut checks: Vec<(String, reqwest::RequestBuilder)> = vec![
        (
            "big token body".into(),
            s.http
                .post(format!("{}/auth/token", s.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("code={big}")),
        ),
        (
            "big register body".into(),
            s.http
                .post(format!("{}/auth/register", s.base))
                .header(CONTENT_TYPE, "application/json")
                .body(format!("{{\"client_name\":\"{big}\"}}")),
        ),
        (
            "big authorize post".into(),
            s.http
                .post(format!("{}/auth/authorize", s.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("scope={big}")),
        ),
        (
            "binary token body".into(),
            s.http
                .post(format!("{}/auth/token", s.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(vec![0xff, 0xfe, 0x00, 0x25, 0x32]),
        ),
        (
            "bad percent".into(),
            s.http
                .post(format!("{}/auth/token", s.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=%zz&code=%"),
        ),
        (
            "long client_id".into(),
            s.http.post(format!("{}/auth/token", s.base)).form(&[
                ("grant_type", "authorization_code"),
                ("client_id", long.as_str()),
                ("code", "x"),
                ("redirect_uri", "y"),
            ]),
        ),
        (
            "long code".into(),
            s.http.post(format!("{}/auth/token", s.base)).form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client.as_str()),
                ("code", long.as_str()),
                ("redirect_uri", "y"),
            ]),
        ),
        (
            "long refresh".into(),
            s.http
                .post(format!("{}/auth/token", s.base))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", long.as_str())]),
        ),
        ("authorize without anything".into(), s.http.get(format!("{}/auth/authorize", s.base))),
        ("authorize junk".into(), s.http.get(format!("{}/auth/authorize?%%%=&client_id=%00", s.base))),
        ("authorize long client".into(), s.http.get(format!("{}/auth/authorize?client_id={long}", s.base))),
        (
            "authorize long state".into(),
            s.http.get(
                s.authorize_url(
                    &[s.authorize_params(&client, PATIENT_SCOPE, "v").as_slice(), &[("state".into(), long.clone())]]
                        .concat(),
                ),
            ),
        ),
        (
            "authorize long scope".into(),
            s.http.get(s.authorize_url(&s.authorize_params(&client, &format!("patient/*.rs {long}"), "v"))),
        ),
        ("flow unknown".into(), s.http.get(format!("{}/auth/flow/{long}", s.base))),
        ("flow post junk".into(), s.http.post(format!("{}/auth/flow/x/consent", s.base)).body("%%%")),
        ("fhir bad id".into(), s.http.get(format!("{}/Patient/{long}", s.fhir)).bearer_auth("x")),
        ("fhir nul".into(), s.http.get(format!("{}/Patient/%00", s.fhir))),
        ("fhir unknown type".into(), s.http.get(format!("{}/Nope/1/2/3", s.fhir))),
        ("register array".into(), s.http.post(format!("{}/auth/register", s.base)).json(&json!([1, 2]))),
        (
            "register nested".into(),
            s.http.post(format!("{}/auth/register", s.base)).json(&json!({"redirect_uris": [{"a": 1}]})),
        ),
        (
            "basic junk".into(),
            s.http
                .post(format!("{}/auth/token", s.base))
                .header("Authorization", "Basic Og==")
                .form(&[("grant_type", "refresh_token")]),
        ),
        (
            "introspect junk".into(),
            s.http
                .post(format!("{}/auth/introspect", s.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("token={big}")),
        ),
        ("introspect json".into(), s.http.post(format!("{}/auth/introspect", s.base)).json(&json!({"token": "x"}))),
        (
            "revoke long".into(),
            s.http
                .post(format!("{}/auth/revoke", s.base))
                .form(&[("token", long.as_str()), ("client_id", long.as_str())]),
        ),
        ("account signin junk".into(), s.http.post(format!("{}/account/signin", s.base)).body(vec![0xff, 0x00])),
        ("bearer junk".into(), s.http.get(format!("{}/Patient/pat-001", s.fhir)).header("Authorization", "Bearer")),
    ];
    for (what, request) in checks.drain(..) {
        let r = request.send().await.unwrap();
        // A 4xx, or for authorize an RFC 6749 error redirect to the registered redirect_uri.
        let error_redirect = r.status().is_redirection()
            && r.headers().get(LOCATION).is_some_and(|l| {
                l.to_str().unwrap().starts_with(&s.redirect_uri()) && l.to_str().unwrap().contains("error=")
            });
        assert!(r.status().is_client_error() || error_redirect, "{what}: {}", r.status());
    }
    s.stop().await;
}

#[tokio::test]
async fn cors_for_the_token_endpoint_and_fhir_api_is_limited_to_registered_origins() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let preflight = |origin: &'static str, path: String| {
        let http = s.http.clone();
        async move {
            http.request(reqwest::Method::OPTIONS, path)
                .header(ORIGIN, origin)
                .header("Access-Control-Request-Method", "POST")
                .send()
                .await
                .unwrap()
        }
    };
    let ok = preflight("http://127.0.0.1:9", format!("{}/auth/token", s.base)).await;
    assert_eq!(ok.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:9");
    let no = preflight("http://evil.example", format!("{}/auth/token", s.base)).await;
    assert!(no.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let r = s
        .http
        .post(format!("{}/auth/token", s.base))
        .header(ORIGIN, "http://127.0.0.1:9")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:9");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    let t: Value = r.json().await.unwrap();
    let r = s
        .http
        .get(format!("{}/Patient/pat-001", s.fhir))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .header(ORIGIN, "http://127.0.0.1:9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:9");
    s.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_clients_users_grants_and_keys() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-restart-{}", random(6)));
    let clock = std::sync::Arc::new(smartlaunch::SystemClock::default());
    let settings = smartlaunch::Settings {
        public_url: Some("http://127.0.0.1:1".into()),
        ..test_settings(&dir, database_for(&dir).await)
    };
    let first = smartlaunch::start(settings.clone(), clock.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let addr = first.addr;
    let jwks1: Value =
        http.get(format!("http://{addr}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let reg: Value = http
        .post(format!("http://{addr}/auth/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    first.stop().await;
    let second = smartlaunch::start(settings, clock).await.unwrap();
    let addr = second.addr;
    let jwks2: Value =
        http.get(format!("http://{addr}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks1, jwks2, "signing keys survive a restart");
    let home = http.get(format!("http://{addr}/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("<dt>Registered apps</dt><dd><a href=\"/apps\">1 — "), "{}", reg["client_id"]);
    assert!(home.contains("Dr. Susan Clark (Practitioner/pract-001)"));
    second.stop().await;
    drop_database_of(&dir).await;
    std::fs::remove_dir_all(dir).ok();
}

// ---------------------------------------------------------------- the command line

#[tokio::test]
async fn cli_manages_clients_and_users_in_the_data_directory() {
    let bin = env!("CARGO_BIN_EXE_smartlaunch");
    let dir = std::env::temp_dir().join(format!("smartlaunch-cli-{}", random(6)));
    let database_url = database_for(&dir).await;
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin)
            .args(args)
            .arg("--data")
            .arg(&dir)
            .args(database_url.iter().flat_map(|url| ["--database", url.as_str()]))
            // On PostgreSQL the signing keys are sealed: the command line needs the nodes' key.
            .env("SMARTLAUNCH_KEY_ENCRYPTION_KEY", TEST_KEY_ENCRYPTION_KEY)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(
        &["clients", "add", "--name", "CLI App", "--redirect-uri", "http://127.0.0.1:7/cb", "--confidential"],
        None,
    );
    assert!(ok, "{out}");
    let reg: Value = serde_json::from_str(&out).unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    assert!(reg["client_secret"].as_str().is_some());
    let (ok, out) = run(&["clients", "list"], None);
    assert!(ok && out.contains(&client_id) && out.contains("CLI App"), "{out}");
    let (ok, out) = run(&["clients", "add", "--name", "Bad", "--redirect-uri", "http://evil.example/cb"], None);
    assert!(!ok && out.contains("invalid_redirect_uri"), "{out}");
    let (ok, out) = run(
        &["users", "add", "--username", "drwho", "--fhir-user", "Practitioner/pract-002", "--name", "Dr. Who"],
        Some("tardis\n"),
    );
    assert!(ok, "{out}");
    let (ok, _) =
        run(&["users", "add", "--username", "drwho", "--fhir-user", "Practitioner/pract-002"], Some("again\n"));
    assert!(!ok, "usernames are unique");

    // The server sees both, and the new user can sign in.
    let clock = std::sync::Arc::new(smartlaunch::SystemClock::default());
    let settings = test_settings(&dir, database_url.clone());
    let running = smartlaunch::start(settings, clock).await.unwrap();
    let base = running.public_url.clone();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let params = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "http://127.0.0.1:7/cb"),
        ("scope", "openid fhirUser user/*.rs"),
        ("state", "abcdefghijklmnop"),
        ("aud", &format!("{base}/fhir")),
        ("code_challenge", &s256("a-verifier-that-is-long-enough-to-be-valid-123")),
        ("code_challenge_method", "S256"),
    ];
    let r = http
        .get(format!("{base}/auth/authorize?{}", serde_urlencoded::to_string(params).unwrap()))
        .send()
        .await
        .unwrap();
    let flow = format!("{base}{}", r.headers()[LOCATION].to_str().unwrap());
    let flow_cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(&flow).header("cookie", &flow_cookie).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = http
        .post(format!("{flow}/signin"))
        .header("cookie", &flow_cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "drwho"), ("password", "tardis")])
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("set-cookie"), "the CLI-added user signs in");
    running.stop().await;
    let (ok, out) = run(&["clients", "remove", &client_id], None);
    assert!(ok, "{out}");
    let (_, out) = run(&["clients", "list"], None);
    assert!(!out.contains(&client_id));
    drop_database_of(&dir).await;
    std::fs::remove_dir_all(dir).ok();
}

// ---------------------------------------------------------------- introspection, revocation (items 93–97)

#[tokio::test]
async fn introspection_reports_active_tokens_with_their_context() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let (resource_server, secret) = s.confidential_app("client_secret_basic").await;
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();
    let url = format!("{}/auth/introspect", s.base);
    let by_client =
        |token: &str| s.http.post(&url).basic_auth(&resource_server, Some(&secret)).form(&[("token", token)]).send();
    let r = by_client(access).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_no_store(&r);
    let i: Value = r.json().await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["scope"], PATIENT_SCOPE);
    assert_eq!(i["client_id"], client);
    assert_eq!(i["exp"], jwt_claims(access)["exp"]);
    assert_eq!(i["patient"], "pat-001");
    assert_eq!(i["iss"], s.base);
    assert!(i["sub"].as_str().is_some());
    assert_eq!(i["fhirUser"], format!("{}/Patient/pat-001", s.fhir));
    // A SMART access token may authenticate the caller too (item 97).
    let i: Value =
        s.http.post(&url).bearer_auth(access).form(&[("token", access)]).send().await.unwrap().json().await.unwrap();
    assert_eq!(i["active"], true);
    let i: Value = by_client(refresh).await.unwrap().json().await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["patient"], "pat-001");
    for token in ["garbage", "a.b.c"] {
        let i: Value = by_client(token).await.unwrap().json().await.unwrap();
        assert_eq!(i, json!({"active": false}));
    }
    // Callers must authenticate as a confidential client or with a valid bearer token.
    oauth_error(
        s.http.post(&url).form(&[("token", access)]).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    oauth_error(
        s.http.post(&url).form(&[("token", access), ("client_id", &client)]).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    oauth_error(
        s.http.post(&url).bearer_auth("forged").form(&[("token", access)]).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    oauth_error(
        s.http.post(&url).basic_auth(&resource_server, Some(&secret)).form(&[("x", "y")]).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    s.clock.advance(3600);
    let i: Value = by_client(access).await.unwrap().json().await.unwrap();
    assert_eq!(i["active"], false, "expired");
    s.stop().await;
}

#[tokio::test]
async fn revocation_ends_the_grant_of_the_calling_client_only() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let other = s.public_app().await;
    let url = format!("{}/auth/revoke", s.base);
    let (code, verifier) = launch(&s, &client, PATIENT_SCOPE, "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let (access, refresh) = (t["access_token"].as_str().unwrap(), t["refresh_token"].as_str().unwrap());
    // Another client cannot revoke it; unknown tokens are fine (RFC 7009 §2.2).
    let r = s.http.post(&url).form(&[("token", refresh), ("client_id", &other)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 200);
    assert_eq!(
        s.http.post(&url).form(&[("token", "unknown"), ("client_id", &client)]).send().await.unwrap().status(),
        200
    );
    oauth_error(
        s.http.post(&url).form(&[("token", refresh)]).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    oauth_error(
        s.http.post(&url).form(&[("client_id", &client)]).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let r = s
        .http
        .post(&url)
        .form(&[("token", refresh), ("token_type_hint", "refresh_token"), ("client_id", &client)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 401);
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Revoking an access token ends its grant too.
    let (code, verifier) = launch(&s, &client, "launch/patient patient/*.rs", "patient", None).await;
    let t = redeem(&s, &client, &code, &verifier).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        s.http.post(&url).form(&[("token", access), ("client_id", &client)]).send().await.unwrap().status(),
        200
    );
    assert_eq!(s.read("Patient/pat-001", access).await.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn brands_bundle_is_served_with_cors_timestamp_and_weak_etag() {
    let s = Server::start().await;
    let d: Value =
        s.http.get(format!("{}/.well-known/smart-configuration", s.fhir)).send().await.unwrap().json().await.unwrap();
    let r = s
        .http
        .get(d["user_access_brand_bundle"].as_str().unwrap())
        .header(ORIGIN, "http://any.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert!(bundle["timestamp"].as_str().is_some());
    let id = &d["user_access_brand_identifier"];
    let matching: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Organization")
        .filter(|e| {
            e["resource"]["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["system"] == id["system"] && i["value"] == id["value"])
        })
        .collect();
    assert_eq!(matching.len(), 1, "the identifier matches exactly one Organization");
    let endpoint =
        bundle["entry"].as_array().unwrap().iter().find(|e| e["resource"]["resourceType"] == "Endpoint").unwrap();
    assert_eq!(endpoint["resource"]["address"], s.fhir);
    let r = s
        .http
        .get(d["user_access_brand_bundle"].as_str().unwrap())
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    s.stop().await;
}

#[tokio::test]
async fn management_page_lists_and_revokes_apps() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let verifier = random(32);
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    b.sign_in("patient", "patient").await;
    let Landing::App(url) = b.consent(true, None).await else { panic!() };
    let t = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();

    b.get(&format!("{}/account", s.base)).await;
    assert!(b.page.contains("Revoke access of Test App"), "{}", b.page);
    assert!(b.page.contains("can keep access while you are away"));
    let csrf = b.csrf();
    // A forged form is refused.
    b.post("/account/revoke", &[("csrf", "forged"), ("client_id", &client)]).await;
    assert_eq!(s.read("Patient/pat-001", &access).await.status(), 200);
    b.post("/account/revoke", &[("csrf", &csrf), ("client_id", &client)]).await;
    assert!(b.page.contains("No apps have access."));
    assert_eq!(s.read("Patient/pat-001", &access).await.status(), 401, "revoked at once");
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // The consent is forgotten: the next launch asks again.
    b.get(&s.authorize_url(&s.authorize_params(&client, PATIENT_SCOPE, &verifier))).await;
    assert!(b.is_consent());
    let Landing::App(url) = b.consent(true, None).await else { panic!() };
    s.clock.advance(1);
    let (code, verifier2) = (query_of(&url)["code"].clone(), verifier.clone());
    let t = redeem(&s, &client, &code, &verifier2).await;
    assert_eq!(
        s.read("Patient/pat-001", t["access_token"].as_str().unwrap()).await.status(),
        200,
        "a new approval works"
    );
    s.stop().await;
}

#[tokio::test]
async fn management_page_signs_in_with_a_double_submit_csrf_cookie() {
    let s = Server::start().await;
    let r = s.http.get(format!("{}/account", s.base)).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("smartlaunch_csrf="));
    let page = r.text().await.unwrap();
    assert!(page.contains("<label for=\"username\">Username</label>"));
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let url = format!("{}/account/signin", s.base);
    let form = [("csrf", csrf.as_str()), ("username", "clinician"), ("password", "clinician")];
    let r = s.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 400, "no CSRF cookie");
    let r = s
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .form(&[("csrf", "other"), ("username", "clinician"), ("password", "clinician")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "mismatched CSRF");
    let r = s
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "clinician"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("role=\"alert\""));
    let r = s.http.post(&url).header("Cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page =
        s.http.get(format!("{}/account", s.base)).header("Cookie", session).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Signed in as Dr. Susan Clark") && page.contains("No apps have access."));
    s.stop().await;
}
