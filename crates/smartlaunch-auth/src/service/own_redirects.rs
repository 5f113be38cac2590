//! Redirect URIs on this server itself.  An authorization code sent to one of our own pages
//! would land where the app cannot see it but any page of ours could (the launcher, the
//! inspector, an error page quoting its address), so a registration may name exactly one
//! address of this server: the built-in callback page `{public_url}/dev/callback`, which only
//! shows the code to the developer who opened the authorize URL — and only a registrant with
//! the sandbox powers may name it (docs/SECURITY.md, "The built-in callback page").

use url::Url;

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
        let same_host = match (url.host_str(), public.host_str()) {
            (Some(h), Some(p)) => h.eq_ignore_ascii_case(p) || (is_loopback_host(h) && is_loopback_host(p)),
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
