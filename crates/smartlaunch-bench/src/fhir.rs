//! The FHIR benchmark: a generated data set (1,000 patients × ~200 resources by default) and
//! the latency of `Patient/{id}` reads and `Observation?patient=…&category=…&date=ge…` searches
//! with a `patient/` token, one request at a time (the server's latency, not a queue's).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::{between, percentile, random, s256};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Patients to generate.
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// Encounters per patient (about 11 resources each).
    #[arg(long, default_value_t = 18)]
    encounters: i64,
    /// The directory to write the Bundles to.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct FhirArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The patient whose token is used (the clinician picks it).
    #[arg(long, default_value = "pat-500")]
    patient: String,
    /// Requests per measurement.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
}

/// Writes one transaction Bundle per patient (PUT entries: the generator's ids are kept).
pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let resources = smartlaunch_fhir::demo::generate_scaled(args.patients, args.encounters);
    let mut by_file: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in resources {
        let owner = smartlaunch_fhir::compartment::patient_of(&r).unwrap_or_else(|| "shared".into());
        let url =
            format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
        by_file.entry(owner).or_default().push(json!({ "resource": r, "request": { "method": "PUT", "url": url } }));
    }
    let mut total = 0;
    for (owner, entries) in &by_file {
        total += entries.len();
        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
        std::fs::write(args.out.join(format!("{owner}.json")), bundle.to_string())?;
    }
    println!("wrote {total} resources in {} Bundles to {}", by_file.len(), args.out.display());
    Ok(())
}

/// A `patient/` token for one patient: the clinician signs in, picks the patient, consents.
async fn patient_token(http: &reqwest::Client, base: &str, patient: &str) -> anyhow::Result<String> {
    let redirect = "http://127.0.0.1:9/bench/callback";
    let reg: Value = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"client_name": "smartlaunch-bench fhir", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let client_id = reg["client_id"].as_str().context("no client_id")?;
    let verifier = random(32);
    let scope = "launch/patient patient/*.rs";
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", scope),
            ("state", &random(18)),
            ("aud", &format!("{base}/fhir")),
            ("code_challenge", &s256(&verifier)),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let r = http.get(format!("{base}/auth/authorize?{query}")).send().await?;
    let flow = format!("{base}{}", r.headers().get(LOCATION).context("authorize did not redirect")?.to_str()?);
    // The flow's steps carry the flow cookie that authorize set, as a browser would.
    let flow_cookie = crate::set_cookie(&r, "smartlaunch_flow=").context("authorize set no flow cookie")?;
    let page = http.get(&flow).header(COOKIE, &flow_cookie).send().await?.text().await?;
    let csrf = between(&page, "name=\"csrf\" value=\"", '"').context("no sign-in form")?.to_owned();
    let r = http
        .post(format!("{flow}/signin"))
        .header(COOKIE, &flow_cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "clinician"), ("password", "clinician")])
        .send()
        .await?;
    let session = crate::set_cookie(&r, "smartlaunch_session=").context("sign-in failed")?;
    let cookie = format!("{session}; {flow_cookie}");
    http.post(format!("{flow}/patient"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str()), ("patient", patient)])
        .send()
        .await?;
    let mut form = vec![("csrf".to_owned(), csrf.clone()), ("decision".to_owned(), "allow".to_owned())];
    form.extend(scope.split(' ').map(|s| ("scope".to_owned(), s.to_owned())));
    let r = http.post(format!("{flow}/consent")).header(COOKIE, &cookie).form(&form).send().await?;
    let location = r.headers().get(LOCATION).context("consent did not redirect")?.to_str()?.to_owned();
    let code = url::Url::parse(&location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code")?;
    let t: Value = http
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
            ("client_id", client_id),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(t["access_token"].as_str().context("no access_token")?.to_owned())
}

async fn measure(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    requests: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(requests);
    let mut size = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let r = http.get(url).bearer_auth(token).send().await?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        size = r.bytes().await?.len();
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    Ok((latencies, size))
}

pub async fn run(args: FhirArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().redirect(Policy::none()).build()?;
    let token = patient_token(&http, &args.base, &args.patient).await?;
    let fhir = format!("{}/fhir", args.base);
    let search = format!(
        "{fhir}/Observation?patient={}&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&date=ge2025-01-01",
        args.patient
    );
    let matches: Value = http.get(format!("{search}&_summary=count")).bearer_auth(&token).send().await?.json().await?;
    println!("patient {}: the search matches {} Observations", args.patient, matches["total"]);
    println!("{:<44} {:>8} {:>9} {:>9} {:>9}", "request", "count", "p50 ms", "p99 ms", "bytes");
    for (name, url) in [
        (format!("Patient/{}", args.patient), format!("{fhir}/Patient/{}", args.patient)),
        ("Observation?patient&category&date=ge".to_owned(), search),
    ] {
        measure(&http, &url, &token, 50).await?;
        let (lat, size) = measure(&http, &url, &token, args.requests).await?;
        println!(
            "{name:<44} {:>8} {:>9.3} {:>9.3} {size:>9}",
            lat.len(),
            percentile(&lat, 0.5).as_secs_f64() * 1000.0,
            percentile(&lat, 0.99).as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
