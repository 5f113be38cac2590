//! The Vitals demo app registers itself with the FHIR server's authorization server (RFC
//! 7591), and keeps the registration in its data directory to use again after a restart while
//! the server still knows it (RFC 7592 read).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The scopes Vitals asks for: the patient and their Observations, who the user is, and a
/// refresh token that outlives the browser (the "last seen" page after a restart).
pub const SCOPE: &str =
    "launch launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs offline_access";

/// A registration as kept on disk (mode 0600: it holds the client secret).
#[derive(Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    pub client_secret: String,
    registration_access_token: Option<String>,
    registration_client_uri: Option<String>,
    launch_uri: String,
    redirect_uri: String,
}

/// Registers the app at `url` with the server of `fhir_base`, or uses the kept registration.
pub async fn register(
    http: &reqwest::Client,
    fhir_base: &str,
    url: &str,
    dir: &Path,
    registration_token: Option<&str>,
) -> anyhow::Result<Registration> {
    let (launch_uri, redirect_uri) = (format!("{url}/launch"), format!("{url}/callback"));
    let file = dir.join("registration.json");
    let kept: Option<Registration> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(kept) = kept {
        let same_urls = kept.launch_uri == launch_uri && kept.redirect_uri == redirect_uri;
        if let (Some(uri), Some(token)) = (&kept.registration_client_uri, &kept.registration_access_token) {
            if same_urls {
                let known = http.get(uri).bearer_auth(token).send().await.is_ok_and(|r| r.status().is_success());
                if known {
                    return Ok(kept);
                }
            } else {
                // Another port than last time: the old registration goes (best effort).
                let _ = http.delete(uri).bearer_auth(token).send().await;
            }
        }
    }
    let config = smartlaunch_client::discover(http, fhir_base).await?;
    let endpoint = config.registration_endpoint.context("the server offers no dynamic registration")?;
    let mut request = http.post(&endpoint).json(&json!({
        "client_name": "Vitals",
        "redirect_uris": [redirect_uri],
        "initiate_login_uri": launch_uri,
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": SCOPE,
    }));
    if let Some(token) = registration_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "registration at {endpoint} answered {status}: {body}");
    let text = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let registration = Registration {
        client_id: text("client_id").context("the registration response has no client_id")?,
        client_secret: text("client_secret").context("the registration response has no client_secret")?,
        registration_access_token: text("registration_access_token"),
        registration_client_uri: text("registration_client_uri"),
        launch_uri,
        redirect_uri,
    };
    std::fs::create_dir_all(dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&file)?;
    // A file left by an earlier run keeps its mode on open: set it.
    #[cfg(unix)]
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut out, &serde_json::to_vec(&registration)?)?;
    Ok(registration)
}
