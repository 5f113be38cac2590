//! The Bulk Data export benchmark: a backend service (ES384 `private_key_jwt`,
//! `client_credentials`) kicks off a system-level `$export` on a running server (after
//! importing `generate`'s data set: 1,000 patients × ~200 resources), polls until the manifest,
//! and reports resources written to NDJSON per second from kick-off to manifest; then it
//! downloads every file and checks the line counts against the manifest.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use smartlaunch_auth::client_assertion::JWT_BEARER;
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};

use crate::rss_kib;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The server's base URL (its FHIR base is <base>/fhir).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The kick-off path and query under the FHIR base.
    #[arg(long, default_value = "$export")]
    kickoff: String,
    /// Exports run one after another (the figure of each is printed).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The server's process id, to report its resident memory after each export.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// A `client_credentials` token for a newly registered backend service with `system/*.rs`.
async fn backend_token(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let key = SigningKey::generate(KeyKind::Es384).map_err(anyhow::Error::msg)?;
    let registration: Value = http
        .post(format!("{base}/auth/register"))
        .json(&json!({
            "client_name": "smartlaunch-bench export",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": key.public_jwks(),
            "scope": "system/*.rs",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let client_id = registration["client_id"].as_str().context("no client_id")?;
    let token_url = format!("{base}/auth/token");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let assertion = key.client_assertion(client_id, &token_url, now).map_err(anyhow::Error::msg)?;
    let token: Value = http
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(token["access_token"].as_str().context("no access_token")?.to_owned())
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let fhir = format!("{}/fhir", args.base);
    for n in 0..args.runs {
        // A token per run: a token lives at most 300 s.
        let token = backend_token(&http, &args.base).await?;
        let started = Instant::now();
        let r = http
            .get(format!("{fhir}/{}", args.kickoff))
            .bearer_auth(&token)
            .header("Prefer", "respond-async")
            .header("Accept", "application/fhir+json")
            .send()
            .await?;
        if r.status() != 202 {
            bail!("kick-off: {} {}", r.status(), r.text().await?);
        }
        let status_url = r.headers().get("content-location").context("no Content-Location")?.to_str()?.to_owned();
        // Polled every 50 ms (not at Retry-After) to time the job, not the poll.
        let manifest: Value = loop {
            let r = http.get(&status_url).bearer_auth(&token).send().await?;
            match r.status().as_u16() {
                202 => tokio::time::sleep(Duration::from_millis(50)).await,
                200 => break r.json().await?,
                other => bail!("status: {other} {}", r.text().await?),
            }
        };
        let elapsed = started.elapsed();
        let outputs = manifest["output"].as_array().context("no output")?;
        let resources: u64 = outputs.iter().filter_map(|o| o["count"].as_u64()).sum();
        println!(
            "export {}: {resources} resources in {} files, kick-off to manifest {:.2} s: {:.0} resources/s{}",
            n + 1,
            outputs.len(),
            elapsed.as_secs_f64(),
            resources as f64 / elapsed.as_secs_f64(),
            args.server_pid
                .and_then(rss_kib)
                .map(|k| format!("; server RSS {:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_default()
        );
        let download = Instant::now();
        let (mut lines, mut bytes) = (0u64, 0u64);
        for o in outputs {
            let mut r = http.get(o["url"].as_str().context("no url")?).bearer_auth(&token).send().await?;
            if r.status() != 200 {
                bail!("download {}: {}", o["url"], r.status());
            }
            let mut file_lines = 0u64;
            while let Some(chunk) = r.chunk().await? {
                bytes += chunk.len() as u64;
                file_lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            if Some(file_lines) != o["count"].as_u64() {
                bail!("{}: {file_lines} lines, the manifest says {}", o["url"], o["count"]);
            }
            lines += file_lines;
        }
        println!(
            "  downloaded {lines} lines, {:.1} MiB in {:.2} s; errors in the manifest: {}",
            bytes as f64 / (1024.0 * 1024.0),
            download.elapsed().as_secs_f64(),
            manifest["error"].as_array().map_or(0, Vec::len)
        );
        let r = http.delete(&status_url).bearer_auth(&token).send().await?;
        if r.status() != 202 {
            bail!("cancel: {}", r.status());
        }
    }
    Ok(())
}
