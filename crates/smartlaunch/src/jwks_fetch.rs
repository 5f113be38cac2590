//! Fetching a client's `jwks_uri` (issue 8): reqwest over rustls (aws-lc-rs), `Accept:
//! application/json`, no redirects, a 5 s timeout and a 64 KiB cap read as the body streams.
//! The response body is never echoed in an error (the URL is the client's, its content may be
//! anything).  The cache and the refetch-on-unknown-kid rule are the core's
//! (`smartlaunch_auth::jwks_cache`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL};
use smartlaunch_auth::jwk::MAX_JWKS_BYTES;
use smartlaunch_auth::jwks_cache::{cache_control_max_age, FetchedJwks, JwksFetcher};

pub struct HttpJwksFetcher {
    http: reqwest::Client,
}

impl HttpJwksFetcher {
    pub fn new() -> anyhow::Result<HttpJwksFetcher> {
        // One TLS crypto backend for the whole binary; another caller may have installed it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("smartlaunch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpJwksFetcher { http })
    }

    async fn get(&self, url: &str) -> Result<FetchedJwks, String> {
        let mut response =
            self.http.get(url).header(ACCEPT, "application/json, application/jwk-set+json").send().await.map_err(
                |e| {
                    if e.is_timeout() {
                        "no answer within 5 s".to_owned()
                    } else {
                        "the request failed (connection or TLS)".to_owned()
                    }
                },
            )?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!("it answered {status} (a redirect): register the final URL"));
        }
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(format!("the JWK Set is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let max_age =
            response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(cache_control_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| "the response body could not be read".to_owned())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWK Set is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice(&body).map_err(|_| "the response is not JSON".to_owned())?;
        Ok(FetchedJwks { body, max_age })
    }
}

impl JwksFetcher for HttpJwksFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, String>> + Send + 'a>> {
        Box::pin(self.get(url))
    }
}
