//! Behind a reverse proxy (issue 10; README "Several nodes"): with `--trusted-proxy` the
//! per-address rate limits and the sign-in throttle count each client the proxy forwards, by
//! the right-most `X-Forwarded-For` address that is not a trusted proxy; without it, or from a
//! peer that is not a trusted proxy, the header is ignored.  The tests' requests come from
//! 127.0.0.1, standing in for the proxy.

use reqwest::header::{RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;
use smartlaunch::{RateLimits, TrustedProxies};
use smartlaunch_auth::throttle::ADDRESS_FREE_FAILURES;

use crate::support::*;

/// Two registrations a minute per address (a burst of two).
const LIMITS: RateLimits = RateLimits { authorize_per_second: 10, token_per_second: 100, registrations_per_minute: 2 };

async fn server(trusted: &[&str]) -> Server {
    let trusted = TrustedProxies::new(trusted.iter().map(|t| t.parse().unwrap()).collect());
    Server::start_configured(|c| {
        c.rate_limits = LIMITS;
        c.trusted_proxies = trusted;
    })
    .await
}

/// `POST /auth/register` with `X-Forwarded-For: forwarded_for` (none when empty): its status.
async fn register(s: &Server, forwarded_for: &str) -> u16 {
    let mut request = s.http.post(format!("{}/auth/register", s.base)).json(&json!({
        "client_name": "Behind the proxy", "redirect_uris": ["http://127.0.0.1:9/cb"],
        "token_endpoint_auth_method": "none"
    }));
    if !forwarded_for.is_empty() {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let r = request.send().await.unwrap();
    if r.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(r.headers().contains_key(RETRY_AFTER));
    }
    r.status().as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let s = server(&["127.0.0.1"]).await;
    let attacker = "198.51.100.66";
    let statuses = [register(&s, attacker).await, register(&s, attacker).await, register(&s, attacker).await];
    assert_eq!(statuses, [201, 201, 429], "the attacker spends its own budget");
    assert_eq!(register(&s, "198.51.100.7").await, 201, "another client behind the proxy is not locked out");
    assert_eq!(register(&s, "198.51.100.7").await, 201);
    assert_eq!(register(&s, "").await, 201, "the proxy's own requests count apart");
    s.stop().await;
}

#[tokio::test]
async fn a_forged_left_most_address_does_not_escape_the_limit() {
    let s = server(&["127.0.0.1"]).await;
    // The proxy appends the address it saw to whatever the client sent.
    let via_proxy = |forged: &str| format!("{forged}, 198.51.100.66");
    assert_eq!(register(&s, &via_proxy("203.0.113.1")).await, 201);
    assert_eq!(register(&s, &via_proxy("203.0.113.2")).await, 201);
    assert_eq!(register(&s, &via_proxy("203.0.113.3")).await, 429, "counted as 198.51.100.66, the real client");
    assert_eq!(register(&s, "198.51.100.66").await, 429);
    assert_eq!(register(&s, "198.51.100.66, 203.0.113.4").await, 201, "the right-most entry is the client");
    s.stop().await;
}

#[tokio::test]
async fn a_peer_that_is_no_trusted_proxy_cannot_forge_its_address() {
    // Without --trusted-proxy, and with one that is not the peer.
    for trusted in [&[][..], &["10.0.0.0/8"][..]] {
        let s = server(trusted).await;
        let forged = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
        let mut statuses = Vec::new();
        for f in forged {
            statuses.push(register(&s, f).await);
        }
        assert_eq!(statuses, [201, 201, 429], "trusted {trusted:?}: all count as the peer");
        s.stop().await;
    }
}

/// A failed (or throttled) sign-in at the EHR desk as `username`, forwarded for `client`.
async fn guess(s: &Server, username: &str, client: &str) -> StatusCode {
    let r = s.http.get(format!("{}/ehr", s.base)).send().await.unwrap();
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = attr_after(&r.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
    s.http
        .post(format!("{}/ehr/signin", s.base))
        .header("cookie", cookie)
        .header("x-forwarded-for", client)
        .form(&[("csrf", csrf.as_str()), ("username", username), ("password", "wrong")])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_sign_in_throttle_counts_each_forwarded_client() {
    let s = server(&["127.0.0.1"]).await;
    let attacker = "198.51.100.66";
    for i in 0..=ADDRESS_FREE_FAILURES {
        assert_eq!(guess(&s, &format!("user{i}"), attacker).await, StatusCode::OK, "guess {i} is answered");
    }
    assert_eq!(guess(&s, "someone", attacker).await, StatusCode::TOO_MANY_REQUESTS, "the attacker waits");
    assert_eq!(
        guess(&s, "someone", "198.51.100.7").await,
        StatusCode::OK,
        "another client behind the proxy is not throttled"
    );
    s.stop().await;
}
