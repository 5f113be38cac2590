//! The allow-list of FHIR servers an app launches against (SMART 2.2 §"EHR launch": an app
//! SHALL check that `iss` is a server it trusts before sending the user there).
//!
//! On by default: an app built without `allowed_issuers` refuses every `iss`.  An app that
//! really must accept any server (a generic viewer) says so with [`IssuerPolicy::AnyIssuer`].

use url::Url;

use crate::Error;

/// Which FHIR servers the app accepts as `iss`.
#[derive(Debug, Clone)]
pub enum IssuerPolicy {
    /// Only these FHIR base URLs (compared after dropping one trailing `/`).
    AllowList(Vec<String>),
    /// Any `https` server, and `http` only on loopback.  Opt-in: the EHR launch then sends the
    /// user to whatever server a link names.
    AnyIssuer,
}

impl Default for IssuerPolicy {
    fn default() -> IssuerPolicy {
        IssuerPolicy::AllowList(Vec::new())
    }
}

/// Whether `url` is https, or http on loopback.
pub fn is_https_or_loopback(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            || (u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")))
    })
}

/// A FHIR base URL without its trailing `/`.
pub fn normalize(base: &str) -> &str {
    base.strip_suffix('/').unwrap_or(base)
}

impl IssuerPolicy {
    /// Checks `iss` and returns it normalized.
    pub fn check(&self, iss: &str) -> Result<String, Error> {
        let url =
            Url::parse(iss).map_err(|e| Error::BadUrl { what: "iss", url: iss.to_owned(), reason: e.to_string() })?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(Error::BadUrl {
                what: "iss",
                url: iss.to_owned(),
                reason: "a FHIR base URL has no query, fragment or user information".into(),
            });
        }
        let iss = normalize(iss);
        match self {
            IssuerPolicy::AllowList(allowed) => {
                if allowed.iter().any(|a| normalize(a) == iss) {
                    Ok(iss.to_owned())
                } else {
                    Err(Error::IssuerNotAllowed(iss.to_owned()))
                }
            }
            IssuerPolicy::AnyIssuer => {
                if is_https_or_loopback(iss) {
                    Ok(iss.to_owned())
                } else {
                    Err(Error::BadUrl {
                        what: "iss",
                        url: iss.to_owned(),
                        reason: "only https servers (or http on loopback) are accepted".into(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_refuses_every_issuer() {
        let e = IssuerPolicy::default().check("https://ehr.example/fhir").unwrap_err();
        assert!(matches!(e, Error::IssuerNotAllowed(_)));
    }

    #[test]
    fn an_allowed_issuer_passes_with_or_without_a_trailing_slash_and_lookalikes_do_not() {
        let p = IssuerPolicy::AllowList(vec!["https://ehr.example/fhir/".into()]);
        assert_eq!(p.check("https://ehr.example/fhir").unwrap(), "https://ehr.example/fhir");
        assert_eq!(p.check("https://ehr.example/fhir/").unwrap(), "https://ehr.example/fhir");
        for bad in [
            "https://ehr.example/fhir2",
            "https://ehr.example.evil/fhir",
            "http://ehr.example/fhir",
            "https://ehr.example/fhir?x=1",
            "https://user@ehr.example/fhir",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_issuer_still_wants_https_off_loopback() {
        let p = IssuerPolicy::AnyIssuer;
        assert!(p.check("https://ehr.example/fhir").is_ok());
        assert!(p.check("http://127.0.0.1:8080/fhir").is_ok());
        assert!(p.check("http://ehr.example/fhir").is_err());
        assert!(p.check("javascript:alert(1)").is_err());
    }
}
