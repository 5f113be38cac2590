//! Per-address rate limits on the authorize, token and registration endpoints (tower_governor), answered
//! as `429 Too Many Requests` with `Retry-After` and an RFC 6749-shaped JSON error.  The values
//! are settings ([`RateLimits`]); docs/SECURITY.md lists them with the tests that attack them.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use governor::middleware::NoOpMiddleware;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use super::client_addr::ClientIp;

/// Request rates allowed per client address ([`super::client_addr`]: the peer of the TCP
/// connection, or behind a `--trusted-proxy` the address the proxy forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `/auth/authorize` requests per second per address, with a burst of five times that (each
    /// one may keep a pending authorization for 30 minutes); 0: off.
    pub authorize_per_second: u32,
    /// `POST /auth/token` requests per second per address, with a burst of twice that; 0: off.
    pub token_per_second: u32,
    /// Registrations (`POST /auth/register`, `POST /apps`, `POST /launcher` with its ad-hoc
    /// apps: one shared budget) per minute per address, with a burst of that many; 0: off.
    pub registrations_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits { authorize_per_second: 10, token_per_second: 100, registrations_per_minute: 30 }
    }
}

/// Keys the limits by the request's [`ClientIp`], as the sign-in throttle is keyed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientKey;

impl KeyExtractor for ClientKey {
    type Key = std::net::IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        req.extensions().get::<ClientIp>().map(|c| c.0).ok_or(GovernorError::UnableToExtractKey)
    }
}

pub(crate) type Limiter = GovernorLayer<ClientKey, NoOpMiddleware<governor::clock::QuantaInstant>, Body>;

/// A limiter of `count` requests (of `methods`) each `interval` per address (burst `burst`),
/// or none.  Clones share one budget.
pub(crate) fn per_address(
    count: u32,
    interval: Duration,
    burst: u32,
    methods: &[Method],
    what: &'static str,
) -> Option<Limiter> {
    if count == 0 {
        return None;
    }
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientKey)
        .period(interval / count)
        .burst_size(burst.max(1))
        .methods(methods.to_vec())
        .finish()?;
    let limiter = config.limiter().clone();
    // Addresses that stopped sending are forgotten, so the table stays small.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
    Some(GovernorLayer::new(config).error_handler(move |e| too_many(e, what)))
}

fn too_many(e: GovernorError, what: &str) -> Response<Body> {
    let (status, wait) = match e {
        GovernorError::TooManyRequests { wait_time, .. } => (StatusCode::TOO_MANY_REQUESTS, wait_time.max(1)),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, 1),
    };
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": format!("too many {what} requests from this address; retry after {wait} seconds"),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        headers.insert(header::RETRY_AFTER, v);
    }
    response
}
