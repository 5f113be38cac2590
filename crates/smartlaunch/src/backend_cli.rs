//! `smartlaunch keys generate` and `smartlaunch token`: a backend-services client on the
//! command line, for people testing their setup (issue 8, item 5).  The token is made through
//! the real token endpoint with a real `private_key_jwt` assertion.

use std::path::{Path, PathBuf};

use serde_json::Value;
use smartlaunch_auth::client_assertion::JWT_BEARER;
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};

/// Writes a new private key (`{out}.pem`, PKCS#8, readable by the owner only) and its public
/// JWK Set (`{out}.jwks.json`); returns the key.
pub fn generate_keys(alg: &str, out: &Path) -> anyhow::Result<(SigningKey, PathBuf, PathBuf)> {
    let kind = KeyKind::parse(alg).map_err(anyhow::Error::msg)?;
    let key = SigningKey::generate(kind).map_err(anyhow::Error::msg)?;
    let pem_path = with_suffix(out, ".pem");
    let jwks_path = with_suffix(out, ".jwks.json");
    anyhow::ensure!(
        !pem_path.exists(),
        "{} exists: choose another --out (keys are never overwritten)",
        pem_path.display()
    );
    write_private(&pem_path, key.to_pem().map_err(anyhow::Error::msg)?.as_bytes())?;
    std::fs::write(&jwks_path, serde_json::to_string_pretty(&key.public_jwks())? + "\n")?;
    Ok((key, pem_path, jwks_path))
}

fn with_suffix(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes)?;
    Ok(())
}

/// What `smartlaunch token` needs.
pub struct TokenArgs {
    pub client_id: String,
    pub key_pem: String,
    pub alg: Option<String>,
    pub scope: String,
    /// The token URL, or `None` to discover it from `fhir_base`.
    pub token_url: Option<String>,
    pub fhir_base: Option<String>,
}

/// Gets a `client_credentials` token; `Ok(body)` on 200, `Err` with the server's error otherwise.
pub async fn fetch_token(args: TokenArgs) -> anyhow::Result<Value> {
    let kind = args.alg.as_deref().map(KeyKind::parse).transpose().map_err(anyhow::Error::msg)?;
    let key = SigningKey::from_pem(&args.key_pem, kind).map_err(anyhow::Error::msg)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let token_url = match (args.token_url, args.fhir_base) {
        (Some(url), _) => url,
        (None, Some(base)) => {
            let url = format!("{}/.well-known/smart-configuration", base.trim_end_matches('/'));
            let config: Value =
                http.get(&url).header("Accept", "application/json").send().await?.error_for_status()?.json().await?;
            config["token_endpoint"].as_str().ok_or_else(|| anyhow::anyhow!("{url} has no token_endpoint"))?.to_owned()
        }
        (None, None) => anyhow::bail!("give --token-url, or --fhir-base to discover it"),
    };
    let assertion = key.client_assertion(&args.client_id, &token_url, now()).map_err(anyhow::Error::msg)?;
    let response = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", args.scope.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {} — {}",
            body["error"].as_str().unwrap_or("no error code"),
            body["error_description"].as_str().unwrap_or("no description")
        );
    }
    Ok(body)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
