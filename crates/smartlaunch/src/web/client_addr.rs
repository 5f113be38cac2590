//! The client's address, the one key of every per-address defence: the rate limits
//! ([`super::limits`]) and the sign-in throttle (`smartlaunch_auth::throttle`).  It is worked
//! out once per request, by [`record`], from the TCP peer and, only when that peer is a trusted
//! proxy (`--trusted-proxy`), from `X-Forwarded-For`; everything else reads what it recorded.
//!
//! Behind a reverse proxy every request comes from the proxy's address, so without this all
//! users would share one bucket: one attacker could lock everyone out.  `X-Forwarded-For` is
//! written by the client first and then appended to by each proxy, so only its right-hand part
//! is trustworthy: the address chosen is the right-most one that is not itself a trusted proxy
//! (the left-most is whatever the client chose).  axum-client-ip's `RightmostXForwardedFor`
//! trusts the header from any peer and skips no proxy hops, and tower_governor's
//! `SmartIpKeyExtractor` takes the left-most entry: neither is the rule, so it is written here
//! (with `ipnet` for the CIDR ranges).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The most `X-Forwarded-For` entries read from the right: a chain of proxies is short, and a
/// long header costs no more than this.
const MAX_HOPS: usize = 16;

/// One `--trusted-proxy`: an address (`127.0.0.1`, `::1`) or a range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange(IpNet);

impl FromStr for ProxyRange {
    type Err = String;

    fn from_str(s: &str) -> Result<ProxyRange, String> {
        let s = s.trim();
        let net = match s.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => s
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR range (10.0.0.0/8, fd00::/8)"))?,
        };
        Ok(ProxyRange(net))
    }
}

/// The proxies whose `X-Forwarded-For` is believed; empty (the default): none, the header is
/// ignored and the client is the TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ProxyRange>);

impl TrustedProxies {
    pub fn new(ranges: Vec<ProxyRange>) -> TrustedProxies {
        TrustedProxies(ranges)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.0.contains(&ip))
    }

    /// The client of a request that came from `peer` with these `X-Forwarded-For` header
    /// lines (in order).  An untrusted peer is the client.  From a trusted proxy: the right-most
    /// entry that is not a trusted proxy; the peer when the header is missing, holds only
    /// trusted proxies, or that entry is not an address (garbled: nothing to the right of it
    /// can be believed either, and nothing to its left ever is).
    pub fn client_of<'a>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut entries = forwarded_for.rev().flat_map(|line| line.rsplit(|b| *b == b',')).take(MAX_HOPS);
        entries
            .find_map(|entry| match parse_entry(entry) {
                Some(ip) if self.contains(ip) => None,
                Some(ip) => Some(ip),
                None => Some(peer),
            })
            .unwrap_or(peer)
    }
}

/// One `X-Forwarded-For` entry: an address, surrounded by optional white space.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(entry).ok()?.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The client's address, as [`record`] worked it out (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub IpAddr);

/// Records the request's [`ClientIp`]: the one place it is worked out.  A request without
/// connection info (none in this server) gets none, and the per-address defences then answer
/// as they do for an unknown address.
pub(crate) fn record(trusted: Arc<TrustedProxies>) -> impl Fn(Request) -> Request + Clone {
    move |mut request: Request| {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if let Some(peer) = peer {
            let client = client_from_headers(&trusted, peer, request.headers());
            request.extensions_mut().insert(ClientIp(client));
        }
        request
    }
}

fn client_from_headers(trusted: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    trusted.client_of(peer, headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    fn client(trusted: &TrustedProxies, peer: &str, lines: &[&str]) -> String {
        trusted.client_of(peer.parse().unwrap(), lines.iter().map(|l| l.as_bytes())).to_string()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(client(&none, "203.0.113.7", &["198.51.100.1"]), "203.0.113.7");
        assert_eq!(client(&none, "127.0.0.1", &["198.51.100.1"]), "127.0.0.1");
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client(&t, "203.0.113.7", &["198.51.100.1"]), "203.0.113.7");
        assert_eq!(client(&t, "203.0.113.7", &["10.0.0.1"]), "203.0.113.7");
    }

    #[test]
    fn from_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(client(&t, "127.0.0.1", &["198.51.100.1"]), "198.51.100.1");
        // The client wrote the first entry; the proxy appended the address it saw.
        assert_eq!(client(&t, "127.0.0.1", &["1.2.3.4, 198.51.100.1"]), "198.51.100.1");
        // A chain of trusted proxies is skipped from the right.
        assert_eq!(client(&t, "10.0.0.2", &["1.2.3.4, 198.51.100.1,10.0.0.5 , 127.0.0.1"]), "198.51.100.1");
        // A client claiming to be a trusted proxy gains nothing: the proxy appended its address.
        assert_eq!(client(&t, "127.0.0.1", &["10.0.0.9, 198.51.100.1"]), "198.51.100.1");
        // Several header lines are one list, in order.
        assert_eq!(client(&t, "127.0.0.1", &["1.2.3.4", "198.51.100.1"]), "198.51.100.1");
        assert_eq!(client(&t, "127.0.0.1", &["2001:db8::1"]), "2001:db8::1");
    }

    #[test]
    fn a_missing_garbled_or_all_trusted_header_leaves_the_peer() {
        let t = trusted(&["127.0.0.0/8"]);
        assert_eq!(client(&t, "127.0.0.1", &[]), "127.0.0.1");
        assert_eq!(client(&t, "127.0.0.1", &[""]), "127.0.0.1");
        assert_eq!(client(&t, "127.0.0.1", &["not-an-address"]), "127.0.0.1");
        assert_eq!(client(&t, "127.0.0.1", &["198.51.100.1:4711"]), "127.0.0.1");
        assert_eq!(client(&t, "127.0.0.1", &["198.51.100.1, unknown"]), "127.0.0.1", "nothing left of garbage");
        assert_eq!(client(&t, "127.0.0.1", &["garbage, 198.51.100.1"]), "198.51.100.1");
        assert_eq!(client(&t, "127.0.0.1", &["127.0.0.5, 127.0.0.1"]), "127.0.0.1");
        let t = trusted(&["127.0.0.1"]);
        assert_eq!(client(&t, "127.0.0.1", &["127.0.0.2"]), "127.0.0.2", "one address is not its range");
    }

    #[test]
    fn only_the_last_hops_are_read() {
        let t = trusted(&["10.0.0.0/8"]);
        let proxies = vec!["10.0.0.1"; MAX_HOPS].join(", ");
        assert_eq!(client(&t, "10.0.0.2", &[&format!("198.51.100.1, {proxies}")]), "10.0.0.2");
    }

    #[test]
    fn ipv4_mapped_peers_are_their_ipv4_address() {
        let t = trusted(&["127.0.0.1"]);
        assert_eq!(client(&t, "::ffff:127.0.0.1", &["198.51.100.1"]), "198.51.100.1");
        assert_eq!(client(&TrustedProxies::default(), "::ffff:203.0.113.7", &[]), "203.0.113.7");
    }

    #[test]
    fn ranges_parse_from_an_address_or_cidr() {
        assert!("10.0.0.0/8".parse::<ProxyRange>().is_ok());
        assert!("10.1.2.3/8".parse::<ProxyRange>().is_ok(), "host bits are dropped");
        assert!(" ::1 ".parse::<ProxyRange>().is_ok());
        assert!("fd00::/8".parse::<ProxyRange>().is_ok());
        let e = "nginx".parse::<ProxyRange>().unwrap_err();
        assert!(e.contains("neither an IP address nor a CIDR range"), "{e}");
        assert!("10.0.0.0/33".parse::<ProxyRange>().is_err());
    }
}
