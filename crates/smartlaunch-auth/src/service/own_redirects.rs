//! Redirect URIs on this server itself.  An authorization code sent to one of our own pages
//! would land where the app cannot see it but any page of ours could (the launcher, the
//! inspector, an error page quoting its address), so a registration may name exactly one
//! address of this server: the built-in callback page `{public_url}/dev/callback`, which only
//! shows the code to the developer who opened the authorize URL — and only a registrant with
//! the sandbox powers may name it (docs/SECURITY.md, "The built-in callback page").

use url::{Host, Url};

use crate::config::is_loopback_host;
use crate::error::{LaunchError, RegistrationError};
use crate::store::AuthStore;
use crate::AuthService;

use super::Registrant;

/// Who registers, as far as our own redirect URIs go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OwnRedirectPowers<'a> {
    /// The command line on the server, or the launcher (whose callers passed
    /// [`AuthService::check_powers`]): `/dev/callback` is allowed.
    Trusted,
    /// A registration over HTTP: `/dev/callback` needs the sandbox powers.
    Http(Registrant<'a>),
}

/// Where a redirect URI points, seen from this server.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// Another origin: the app's own.
    Elsewhere,
    /// `{public_url}/dev/callback`.
    DevCallback,
    /// Any other address of this server.
    OwnPage,
}

impl<S: AuthStore> AuthService<S> {
    /// Refuses redirect URIs on this server other than `/dev/callback`, and `/dev/callback`
    /// from a registrant without the sandbox powers (never from a page of another site).
    /// `already` holds the URIs the client had registered before (an RFC 7592 update keeps
    /// them without the powers being asked again).
    pub(crate) fn check_own_redirect_uris(
        &self,
        uris: &[String],
        already: &[String],
        powers: OwnRedirectPowers<'_>,
    ) -> Result<(), RegistrationError> {
        let callback = self.config.dev_callback_uri();
        for uri in uris {
            match self.destination(uri) {
                Destination::Elsewhere => {}
                Destination::OwnPage => {
                    return Err(RegistrationError::InvalidRedirectUri(format!(
                        "redirect_uri `{}` is an address of this server: the only one a registration may name is {callback}, the built-in callback page for apps launched by hand",
                        uri.chars().take(100).collect::<String>()
                    )))
                }
                Destination::DevCallback if already.contains(uri) => {}
                Destination::DevCallback => match powers {
                    OwnRedirectPowers::Trusted => {}
                    OwnRedirectPowers::Http(registrant) => self.may_use_dev_callback(registrant)?,
                },
            }
        }
        Ok(())
    }

    /// `/dev/callback` as a redirect URI is a sandbox power: the same rule as a backend service.
    fn may_use_dev_callback(&self, registrant: Registrant<'_>) -> Result<(), RegistrationError> {
        let callback = self.config.dev_callback_uri();
        if registrant.cross_site {
            return Err(RegistrationError::Forbidden(format!(
                "{callback} cannot be registered from a web page of another site (this request has a foreign Origin): it is for apps launched by hand from this sandbox"
            )));
        }
        self.check_powers(registrant.bearer, registrant.host).map_err(|e| match e {
            LaunchError::Unauthorized(_) => RegistrationError::InvalidToken(format!(
                "registering the built-in callback page {callback} as a redirect URI needs this server's admin token: send `Authorization: Bearer <admin token>`, or use your app's own redirect URI"
            )),
            _ => RegistrationError::Forbidden(format!(
                "the built-in callback page {callback} is a sandbox power, and the sandbox powers are off for this request (see the server's start-up banner): use your app's own redirect URI"
            )),
        })
    }

    fn destination(&self, uri: &str) -> Destination {
        let (Ok(url), Ok(public)) = (Url::parse(uri), Url::parse(&self.config.public_url)) else {
            return Destination::Elsewhere;
        };
        let same_host = match (url.host(), public.host()) {
            (Some(h), Some(p)) => same_name(&h, &p) || (is_local(&h) && is_local(&p)),
            _ => false,
        };
        let own = url.scheme() == public.scheme()
            && same_host
            && url.port_or_known_default() == public.port_or_known_default();
        match (own, uri == self.config.dev_callback_uri()) {
            (false, _) => Destination::Elsewhere,
            (true, true) => Destination::DevCallback,
            (true, false) => Destination::OwnPage,
        }
    }
}

/// Whether two hosts name the same machine by name: equal, ignoring case and a trailing dot
/// (`sandbox.example.` is `sandbox.example` to DNS and to the browser that connects).
fn same_name(a: &Host<&str>, b: &Host<&str>) -> bool {
    let bare = |h: &Host<&str>| h.to_string().trim_end_matches('.').to_ascii_lowercase();
    bare(a) == bare(b)
}

/// Whether a host reaches this machine: a loopback name or address (also with a trailing dot,
/// or IPv4-mapped), or the unspecified address (`0.0.0.0`, `[::]`), which browsers on Linux
/// and macOS connect to the local host.
fn is_local(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => is_loopback_host(d.strip_suffix('.').unwrap_or(d)),
        Host::Ipv4(ip) => ip.is_loopback() || ip.is_unspecified(),
        Host::Ipv6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `check` to the host of `url`.
    fn on_host(url: &str, check: impl Fn(&Host<&str>) -> bool) -> bool {
        let url = Url::parse(url).unwrap();
        check(&url.host().unwrap())
    }

    #[test]
    fn a_trailing_dot_or_another_spelling_of_loopback_is_still_this_server() {
        let public = Url::parse("https://sandbox.example/").unwrap();
        let public = public.host().unwrap();
        let named = |u: &str| on_host(u, |h| same_name(h, &public));
        assert!(named("https://sandbox.example./dev/callback"));
        assert!(named("https://SANDBOX.example/x"));
        assert!(!named("https://sandbox.example.evil/x"));
        for local in [
            "http://localhost./",
            "http://a.localhost./",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://127.1/",
        ] {
            assert!(on_host(local, is_local), "{local}");
        }
        for remote in
            ["https://example.com/", "http://10.0.0.1/", "http://[::ffff:10.0.0.1]/", "https://localhost.example/"]
        {
            assert!(!on_host(remote, is_local), "{remote}");
        }
    }
}
