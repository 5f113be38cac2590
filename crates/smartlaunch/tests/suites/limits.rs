//! The FHIR limits (issue 7, item 6; docs/DESIGN.md "Limits (FHIR)"): each is reached over
//! HTTP and answered with a 4xx OperationOutcome that names it, never a 500.  The memory test
//! runs the real binary and reads its peak RSS.

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smartlaunch_fhir::limits::{
    MAX_BATCH_ENTRIES, MAX_BODY_BYTES, MAX_COUNT, MAX_JSON_OBJECTS, MAX_OR_VALUES, MAX_SEARCH_PARAMETERS,
    MAX_TRANSACTION_ENTRIES,
};

use crate::support::*;

fn assert_outcome(body: &Value, says: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(diagnostics.contains(says), "`{diagnostics}` should say `{says}`");
}

/// Finding 7: axum's default 2 MiB applied, so a Synthea Bundle of a few MiB got a 413.
#[tokio::test]
async fn bundles_up_to_32_mib_are_accepted_and_larger_bodies_get_a_413_operation_outcome() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let note = "x".repeat(2_500);
    let entries: Vec<Value> = (0..2_000)
        .map(|n| {
            let mut o = observation("pat-001", f64::from(n));
            o["note"] = json!([{ "text": note }]);
            json!({ "resource": o, "request": { "method": "POST", "url": "Observation" } })
        })
        .collect();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let size = bundle.to_string().len();
    assert!(size > 5 * 1024 * 1024, "{size}");
    let (status, response) = post_bundle(&s, &t, &bundle).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["entry"].as_array().unwrap().len(), 2_000);

    let too_large = vec![b' '; MAX_BODY_BYTES + 1024 * 1024];
    for path in ["", "/Observation", "/Observation/_search"] {
        let r = s
            .http
            .post(format!("{}{path}", s.fhir))
            .bearer_auth(&t)
            .header(CONTENT_TYPE, "application/fhir+json")
            .body(too_large.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "POST {path}");
        assert_outcome(&r.json().await.unwrap(), "32 MiB");
    }
    s.stop().await;
}

/// The bearer token is checked before a body is read: a caller without a valid token that
/// announces a 1 GiB body and sends a few bytes of it gets its 401 at once (the server neither
/// waits for nor buffers the rest), on every FHIR route that takes a body.
#[tokio::test]
async fn an_unauthenticated_body_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start().await;
    let authority = s.base.strip_prefix("http://").unwrap().trim_end_matches('/').to_owned();
    let fhir_path = s.fhir.strip_prefix(&s.base).unwrap().to_owned();
    for (method, path, auth) in [
        ("POST", "", ""),
        ("POST", "/Observation", ""),
        ("PUT", "/Observation/o-1", ""),
        ("POST", "/Observation/_search", ""),
        ("POST", "/$export", ""),
        ("POST", "/Patient/$export", "Authorization: Bearer not-a-token\r\n"),
        ("POST", "/Group/g/$export", "Authorization: Bearer not-a-token\r\n"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let head = format!(
            "{method} {fhir_path}{path} HTTP/1.1\r\nHost: {authority}\r\n{auth}\
             Content-Type: application/fhir+json\r\nContent-Length: 1073741824\r\n\r\n{{\"resourceType\":"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer)).await;
        let n = read.unwrap_or_else(|_| panic!("{method} {path}: no answer while the body is unsent")).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{method} {path}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("www-authenticate: bearer"), "{method} {path}: {answer}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bundles_over_the_entry_limits_are_refused_with_the_limit() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let read = json!({ "request": { "method": "GET", "url": "Patient/pat-001" } });
    let batch = |n: usize| json!({ "resourceType": "Bundle", "type": "batch", "entry": vec![read.clone(); n] });
    let (status, response) = post_bundle(&s, &t, &batch(MAX_BATCH_ENTRIES)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["entry"].as_array().unwrap().len(), MAX_BATCH_ENTRIES);
    let (status, response) = post_bundle(&s, &t, &batch(MAX_BATCH_ENTRIES + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_outcome(&response, "at most 1000 entries per batch");

    let delete = json!({ "request": { "method": "DELETE", "url": "Observation/none" } });
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction",
                              "entry": vec![delete; MAX_TRANSACTION_ENTRIES + 1] });
    let (status, response) = post_bundle(&s, &t, &transaction).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_outcome(&response, "at most 10000 entries per transaction");
    s.stop().await;
}

/// Finding 7: 495 or more OR values gave a 500 ("Expression tree is too large").
#[tokio::test]
async fn or_values_past_the_cap_get_a_400_and_count_is_clamped() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    let codes = |n: usize| (0..n).map(|i| format!("http://loinc.org|{i}")).collect::<Vec<_>>().join(",");
    let (status, _) = search(&s, &t, &format!("Observation?code={}", codes(MAX_OR_VALUES))).await;
    assert_eq!(status, StatusCode::OK);
    for n in [MAX_OR_VALUES + 1, 495, 2_000] {
        let (status, body) = search(&s, &t, &format!("Observation?code={}", codes(n))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{n} values");
        assert_outcome(&body, "at most 100 are accepted per parameter");
    }
    let many = vec!["status=final"; 1_200].join("&");
    let (status, body) = search(&s, &t, &format!("Observation?{many}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_outcome(&body, "at most 50 are accepted");
    // The largest search accepted: every parameter at its most OR values, of the deepest kind.
    let quantities = (0..MAX_OR_VALUES).map(|i| format!("lt{i}.5|http://unitsofmeasure.org|mg")).collect::<Vec<_>>();
    let largest: Vec<(&str, String)> =
        (0..MAX_SEARCH_PARAMETERS).map(|_| ("value-quantity", quantities.join(","))).collect();
    let r = s.http.post(format!("{}/Observation/_search", s.fhir)).bearer_auth(&t).form(&largest).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Values past what the database accepts (a `LIKE` pattern over 50,000 bytes, 2,500 sort keys).
    for (key, value) in [("code", "x".repeat(60_000)), ("_sort", vec!["date"; 2_500].join(","))] {
        let r = s
            .http
            .post(format!("{}/Observation/_search", s.fhir))
            .bearer_auth(&t)
            .form(&[(key, value)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{key}");
        assert_outcome(&r.json().await.unwrap(), "at most");
    }
    let (status, body) = search(&s, &t, "Observation?_count=100000").await;
    assert_eq!(status, StatusCode::OK);
    let this = body["link"][0]["url"].as_str().unwrap();
    assert!(this.contains(&format!("_count={MAX_COUNT}")), "clamped: {this}");
    // Any non-negative `_offset` pages (it used to overflow into a panic).
    for query in ["Observation?_offset=9223372036854775807", "Observation/_history?_offset=9223372036854775807"] {
        assert_eq!(search(&s, &t, query).await.0, StatusCode::OK, "{query}");
    }
    // Includes of many matches stay under the database's expression limit.
    let (status, body) = search(&s, &t, "Observation?_count=1000&_revinclude=Observation:subject").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

/// A search or a history page is read only up to the response budget: past it, a 400 that
/// says to page with a smaller `_count`.
#[tokio::test]
async fn searches_past_the_response_budget_get_a_400_that_says_to_page() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let admin = token(&s, &client, "user/*.cruds", "clinician").await;
    let large = |n: usize| {
        let mut o = observation("pat-001", n as f64);
        o["note"] = json!([{ "text": "w".repeat(2 * 1024 * 1024) }]);
        json!({ "resource": o, "request": { "method": "POST", "url": "Observation" } })
    };
    for _ in 0..2 {
        let bundle =
            json!({ "resourceType": "Bundle", "type": "transaction", "entry": (0..9).map(large).collect::<Vec<_>>() });
        assert_eq!(post_bundle(&s, &admin, &bundle).await.0, StatusCode::OK);
    }
    let p = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    for query in ["Observation?_count=1000", "Observation/_history?_count=1000"] {
        let (status, body) = search(&s, &p, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["issue"][0]["code"], "too-costly");
        assert_outcome(&body, "page with a smaller _count");
    }
    let (status, body) = search(&s, &p, "Observation?_count=5&_elements=id").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = search(&s, &p, "Observation?_count=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["entry"].as_array().unwrap().len(), 5);
    s.stop().await;
}

/// Finding 2: one 64 KiB batch of 1,000 × `GET Observation?_count=1000` over two 1.9 MiB
/// Observations built a 3.9 GB response (13 GB RSS).  The batch's response budget stops it
/// with a 400 before it grows the server by more than a few hundred MiB.
#[tokio::test]
async fn a_batch_of_large_searches_stops_at_the_response_budget_without_growing_memory() {
    let server = Process::start(&[]);
    let s = Server::at(&server.base);
    let peak_rss_kib = || server.status_kib("VmHWM:");
    let client = s.public_app().await;
    let admin = token(&s, &client, "user/*.cruds", "clinician").await;
    for n in 0..2 {
        let mut large = observation("pat-001", f64::from(n));
        large["note"] = json!([{ "text": "y".repeat(1_900 * 1024) }]);
        let r = send(&s, reqwest::Method::POST, "Observation", &admin, Some(&large), None).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let p = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    let (status, one) = search(&s, &p, "Observation?_count=1000").await;
    assert_eq!(status, StatusCode::OK, "one such search is fine");
    drop(one);
    let idle = peak_rss_kib();

    let entry = json!({ "request": { "method": "GET", "url": "Observation?_count=1000" } });
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": vec![entry; 1_000] });
    assert!(batch.to_string().len() < 80 * 1024);
    let started = std::time::Instant::now();
    let (status, body) = post_bundle(&s, &p, &batch).await;
    let peak = peak_rss_kib();
    println!(
        "VmHWM before the batch {} MiB, after {} MiB ({} ms)",
        idle / 1024,
        peak / 1024,
        started.elapsed().as_millis()
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_outcome(&body, "page the searches with a smaller _count");
    assert!(peak.saturating_sub(idle) < 300 * 1024, "grew from {idle} KiB to {peak} KiB");

    // The densest JSON within the limits, and past them: one create of tiny objects.
    let create = |objects: usize| {
        let mut body =
            String::from(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"extension":["#);
        body.push_str(&r#"{"url":"u","valueInteger":1},"#.repeat(objects));
        body.push_str(r#"{"url":"u"}]}"#);
        s.http
            .post(format!("{}/Observation", s.fhir))
            .bearer_auth(&admin)
            .header(CONTENT_TYPE, "application/fhir+json")
            .body(body)
            .send()
    };
    let r = create(3 * MAX_JSON_OBJECTS).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_outcome(&r.json().await.unwrap(), "JSON objects");
    let refused = peak_rss_kib();
    println!(
        "VmHWM after a denser create refused {} MiB (it is refused first, so this is its own peak)",
        refused / 1024
    );
    assert!(refused.saturating_sub(idle) < 300 * 1024, "grew from {idle} KiB to {refused} KiB");
    let started = std::time::Instant::now();
    let r = create(MAX_JSON_OBJECTS - 10).await.unwrap();
    let densest = peak_rss_kib();
    println!("VmHWM after the densest create accepted {} MiB ({} ms)", densest / 1024, started.elapsed().as_millis());
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(densest.saturating_sub(idle) < 300 * 1024, "grew from {idle} KiB to {densest} KiB");
}
