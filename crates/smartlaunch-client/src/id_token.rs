//! The id_token's claims (OpenID Connect Core §3.1.3.7, SMART 2.2 §"Scopes for requesting
//! identity data") and the `fhirUser` they name.  The signature is checked by the HTTP layer
//! against the server's JWKS before these claims are trusted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authorize::same_secret;
use crate::issuer::normalize;
use crate::Error;

/// How far clocks may disagree (seconds).
pub const LEEWAY: u64 = 60;

/// `aud`: one string or a list (OIDC Core §2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Audience::One(a) => a == client_id,
            Audience::Many(all) => all.iter().any(|a| a == client_id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(all) => all.len(),
        }
    }
}

/// The claims of a verified id_token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    /// The user's FHIR resource (`Practitioner/…`, `Patient/…`, …), absolute or relative.
    #[serde(default, rename = "fhirUser")]
    pub fhir_user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IdTokenClaims {
    /// Checks issuer, audience, expiry and nonce (OIDC Core §3.1.3.7 steps 2–4, 9, 11).
    pub fn check(&self, issuer: &str, client_id: &str, nonce: Option<&str>, now: u64) -> Result<(), Error> {
        let bad = |why: String| Err(Error::InvalidIdToken(why));
        if normalize(&self.iss) != normalize(issuer) {
            return bad(format!("issued by {}, not by {issuer}", self.iss));
        }
        if !self.aud.contains(client_id) {
            return bad(format!("its audience is not this app ({client_id})"));
        }
        if self.aud.len() > 1 && self.azp.as_deref() != Some(client_id) {
            return bad("several audiences and no azp naming this app".into());
        }
        if self.exp.saturating_add(LEEWAY) < now {
            return bad(format!("it expired {} s ago", now - self.exp));
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(LEEWAY)) {
            return bad("it was issued in the future".into());
        }
        match (nonce, &self.nonce) {
            (Some(expected), Some(got)) if same_secret(expected, got) => Ok(()),
            (Some(_), _) => bad("its nonce is not the one this authorization sent".into()),
            (None, _) => Ok(()),
        }
    }

    /// The `fhirUser`, parsed.
    pub fn fhir_user(&self) -> Option<FhirUser> {
        self.fhir_user.as_deref().and_then(FhirUser::parse)
    }
}

/// A `fhirUser` claim resolved to a resource type and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FhirUser {
    /// `Practitioner`, `Patient`, `RelatedPerson` or `Person`.
    pub resource_type: String,
    pub id: String,
    /// The claim as sent (absolute URL or relative reference).
    pub url: String,
}

impl FhirUser {
    pub fn parse(url: &str) -> Option<FhirUser> {
        let mut parts = url.trim_end_matches('/').rsplit('/');
        let id = parts.next()?.to_owned();
        let resource_type = parts.next()?.to_owned();
        let known = matches!(resource_type.as_str(), "Practitioner" | "Patient" | "RelatedPerson" | "Person");
        (known && !id.is_empty()).then(|| FhirUser { resource_type, id, url: url.to_owned() })
    }

    /// `Type/id`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> IdTokenClaims {
        let mut base = json!({"iss": "https://ehr.example", "sub": "u1", "aud": "app", "exp": 2000, "iat": 1000, "nonce": "n1",
                              "fhirUser": "https://ehr.example/fhir/Practitioner/pr1"});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_good_id_token_passes_and_names_its_fhir_user() {
        let c = claims(json!({}));
        c.check("https://ehr.example/", "app", Some("n1"), 1500).unwrap();
        assert_eq!(c.fhir_user().unwrap().reference(), "Practitioner/pr1");
    }

    #[test]
    fn each_wrong_claim_is_refused() {
        let now = 1500;
        for (why, c) in [
            ("issuer", claims(json!({"iss": "https://evil.example"}))),
            ("audience", claims(json!({"aud": "other-app"}))),
            ("audiences without azp", claims(json!({"aud": ["app", "other"]}))),
            ("expired", claims(json!({"exp": now - LEEWAY - 1}))),
            ("future", claims(json!({"iat": now + LEEWAY + 1}))),
            ("nonce", claims(json!({"nonce": "n2"}))),
            ("no nonce", claims(json!({"nonce": null}))),
        ] {
            assert!(
                matches!(c.check("https://ehr.example", "app", Some("n1"), now), Err(Error::InvalidIdToken(_))),
                "{why}"
            );
        }
        claims(json!({"aud": ["app", "other"], "azp": "app"}))
            .check("https://ehr.example", "app", Some("n1"), now)
            .unwrap();
    }

    #[test]
    fn fhir_user_takes_relative_and_absolute_references_of_user_types_only() {
        assert_eq!(FhirUser::parse("Patient/p1").unwrap().resource_type, "Patient");
        assert_eq!(FhirUser::parse("https://x/fhir/RelatedPerson/r1").unwrap().id, "r1");
        assert!(FhirUser::parse("Observation/o1").is_none());
        assert!(FhirUser::parse("p1").is_none());
    }
}
