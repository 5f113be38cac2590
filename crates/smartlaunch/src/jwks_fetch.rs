//! Fetching a client's `jwks_uri` (issue 8): reqwest over rustls (aws-lc-rs), `Accept:
//! application/json`, no redirects, a 5 s timeout and a 64 KiB cap read as the body streams.
//! The response body is never echoed in an error (the URL is the client's, its content may be
//! anything).  The cache and the refetch-on-unknown-kid rule are the core's
//! (`smartlaunch_auth::jwks_cache`).
//!
//! A registrant chooses the URL, so the fetch is a request on their behalf (SSRF).  Unless the
//! server itself listens on loopback (a developer's sandbox, where apps serve their keys from
//! `localhost`), it never connects to a loopback, private, link-local or otherwise internal
//! address: IP literals are refused before connecting, and names resolve through a resolver that
//! drops such addresses (so a name that resolves to 127.0.0.1 or 10.x is refused too, at the
//! moment of the connection — no check-then-use gap).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use reqwest::header::{ACCEPT, CACHE_CONTROL};
use smartlaunch_auth::jwk::MAX_JWKS_BYTES;
use smartlaunch_auth::jwks_cache::{cache_control_max_age, FetchedJwks, JwksFetcher};

pub struct HttpJwksFetcher {
    http: reqwest::Client,
    allow_internal: bool,
}

/// Whether an address is this machine or an internal network: never fetched for a
/// registrant unless the server is a loopback sandbox.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Whether a URL's host is a loopback name or an internal IP literal (names are checked when
/// they resolve, by [`PublicOnly`]).
fn names_internal_host(url: &str) -> bool {
    match url::Url::parse(url).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// A resolver that keeps only public addresses.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err("the name resolves only to internal addresses".into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

impl HttpJwksFetcher {
    /// `allow_internal`: the server listens on loopback (a developer's machine), so apps may
    /// serve their keys from `localhost`.
    pub fn new(allow_internal: bool) -> anyhow::Result<HttpJwksFetcher> {
        // One TLS crypto backend for the whole binary; another caller may have installed it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder();
        if !allow_internal {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("smartlaunch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpJwksFetcher { http, allow_internal })
    }

    async fn get(&self, url: &str) -> Result<FetchedJwks, String> {
        if !self.allow_internal && names_internal_host(url) {
            return Err("it names a loopback or internal address, which this server does not fetch (it is not a loopback sandbox): serve the JWK Set at a public https URL, or register it by value (jwks)".to_owned());
        }
        let sent = self.http.get(url).header(ACCEPT, "application/json, application/jwk-set+json").send().await;
        let mut response = sent.map_err(|e| {
            if e.is_timeout() {
                "no answer within 5 s".to_owned()
            } else if !self.allow_internal {
                // Also what a name that resolves only to internal addresses gives.
                "the request failed (name resolution, connection or TLS; internal addresses are not fetched)".to_owned()
            } else {
                "the request failed (connection or TLS)".to_owned()
            }
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_and_names_are_recognised() {
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://10.1.2.3/jwks",
            "https://192.168.0.1/jwks",
            "https://172.16.5.4/jwks",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://localhost/jwks",
            "http://app.localhost./jwks",
        ] {
            assert!(names_internal_host(url), "{url}");
        }
        for url in ["https://app.example/jwks.json", "https://8.8.8.8/jwks", "https://[2001:4860::8888]/"] {
            assert!(!names_internal_host(url), "{url}");
        }
    }
}
