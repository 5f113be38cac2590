//! SMART discovery (SMART 2.2 §"Conformance": `{iss}/.well-known/smart-configuration`), with
//! the CapabilityStatement's `oauth-uris` extension as the fallback older servers offer, and
//! capability checks before a step relies on one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// The capabilities of SMART 2.2 §"Capability sets" this library checks before use.
pub mod capability {
    pub const LAUNCH_EHR: &str = "launch-ehr";
    pub const LAUNCH_STANDALONE: &str = "launch-standalone";
    pub const CLIENT_PUBLIC: &str = "client-public";
    pub const CLIENT_CONFIDENTIAL_SYMMETRIC: &str = "client-confidential-symmetric";
    pub const CLIENT_CONFIDENTIAL_ASYMMETRIC: &str = "client-confidential-asymmetric";
    pub const SSO_OPENID_CONNECT: &str = "sso-openid-connect";
    pub const PERMISSION_OFFLINE: &str = "permission-offline";
    pub const PERMISSION_V2: &str = "permission-v2";
}

/// Where a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// `.well-known/smart-configuration`: capabilities are known.
    WellKnown,
    /// The CapabilityStatement's `oauth-uris` extension: only endpoints are known, so
    /// capability checks cannot refuse (the server never said).
    CapabilityStatement,
}

/// A server's SMART configuration: the fields of `.well-known/smart-configuration` this library
/// uses (unknown fields are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmartConfiguration {
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    pub management_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(skip, default = "well_known")]
    pub source: Source,
}

fn well_known() -> Source {
    Source::WellKnown
}

const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

impl SmartConfiguration {
    /// Parses the body of `.well-known/smart-configuration`.
    pub fn from_well_known(body: &[u8]) -> Result<SmartConfiguration, String> {
        let config: SmartConfiguration =
            serde_json::from_slice(body).map_err(|e| format!("smart-configuration is not valid JSON: {e}"))?;
        if config.capabilities.is_empty() {
            return Err("smart-configuration lists no capabilities (SMART 2.2 requires them)".into());
        }
        Ok(config)
    }

    /// Reads the endpoints of the `oauth-uris` extension of a CapabilityStatement (the way
    /// SMART 1.0 servers announced them).
    pub fn from_capability_statement(body: &Value) -> Result<SmartConfiguration, String> {
        let security_extensions = body
            .get("rest")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|rest| rest.pointer("/security/extension").and_then(Value::as_array))
            .flatten();
        let oauth = security_extensions
            .into_iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(OAUTH_URIS))
            .ok_or("the CapabilityStatement has no oauth-uris extension")?;
        let uri = |name: &str| {
            oauth.get("extension").and_then(Value::as_array).into_iter().flatten().find_map(|e| {
                (e.get("url").and_then(Value::as_str) == Some(name))
                    .then(|| e.get("valueUri").and_then(Value::as_str).map(str::to_owned))
                    .flatten()
            })
        };
        Ok(SmartConfiguration {
            issuer: None,
            jwks_uri: None,
            authorization_endpoint: uri("authorize"),
            token_endpoint: uri("token").ok_or("the oauth-uris extension has no token URI")?,
            token_endpoint_auth_methods_supported: Vec::new(),
            grant_types_supported: Vec::new(),
            registration_endpoint: uri("register"),
            scopes_supported: Vec::new(),
            management_endpoint: uri("manage"),
            introspection_endpoint: uri("introspect"),
            revocation_endpoint: uri("revoke"),
            capabilities: Vec::new(),
            code_challenge_methods_supported: Vec::new(),
            source: Source::CapabilityStatement,
        })
    }

    /// Whether the server announces `capability` (`None`: it never said, the configuration came
    /// from a CapabilityStatement).
    pub fn supports(&self, capability: &str) -> Option<bool> {
        match self.source {
            Source::WellKnown => Some(self.capabilities.iter().any(|c| c == capability)),
            Source::CapabilityStatement => None,
        }
    }

    /// Fails with [`Error::MissingCapability`] when the server says it lacks `capability`.
    pub fn require(&self, capability: &str, needed_for: &'static str) -> Result<(), Error> {
        match self.supports(capability) {
            Some(false) => Err(Error::MissingCapability { capability: capability.to_owned(), needed_for }),
            _ => Ok(()),
        }
    }

    /// The authorization endpoint, and a check that the server takes PKCE S256 (SMART 2.2
    /// requires servers to list it; this library never sends a request without it).
    pub fn authorization_endpoint_for_launch(&self) -> Result<&str, Error> {
        if self.source == Source::WellKnown && !self.code_challenge_methods_supported.iter().any(|m| m == "S256") {
            return Err(Error::MissingCapability {
                capability: "code_challenge_methods_supported: S256".into(),
                needed_for: "PKCE, which this library always uses",
            });
        }
        self.authorization_endpoint.as_deref().ok_or(Error::MissingCapability {
            capability: "authorization_endpoint".into(),
            needed_for: "a launch that signs the user in",
        })
    }

    /// Fails unless the token endpoint takes `method` (`none`, `client_secret_basic`,
    /// `client_secret_post`, `private_key_jwt`).  An empty list says nothing and passes.
    pub fn require_auth_method(&self, method: &str) -> Result<(), Error> {
        let methods = &self.token_endpoint_auth_methods_supported;
        if methods.is_empty() || methods.iter().any(|m| m == method) {
            Ok(())
        } else {
            Err(Error::MissingCapability {
                capability: format!("token_endpoint_auth_method {method}"),
                needed_for: "authenticating this client at the token endpoint",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn well_known_body(caps: &[&str], pkce: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "issuer": "https://ehr.example",
            "authorization_endpoint": "https://ehr.example/authorize",
            "token_endpoint": "https://ehr.example/token",
            "capabilities": caps,
            "code_challenge_methods_supported": pkce,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "something_new": {"ignored": true}
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_capability_is_a_clear_error_and_a_listed_one_passes() {
        let c = SmartConfiguration::from_well_known(&well_known_body(&["launch-standalone"], &["S256"])).unwrap();
        assert!(c.require(capability::LAUNCH_STANDALONE, "x").is_ok());
        let e = c.require(capability::LAUNCH_EHR, "an EHR launch").unwrap_err();
        assert!(e.to_string().contains("launch-ehr"), "{e}");
        assert!(c.require_auth_method("private_key_jwt").is_ok());
        assert!(matches!(c.require_auth_method("client_secret_basic"), Err(Error::MissingCapability { .. })));
    }

    #[test]
    fn a_server_without_s256_is_refused_before_any_redirect() {
        let c = SmartConfiguration::from_well_known(&well_known_body(&["launch-ehr"], &["plain"])).unwrap();
        assert!(matches!(c.authorization_endpoint_for_launch(), Err(Error::MissingCapability { .. })));
        let c = SmartConfiguration::from_well_known(&well_known_body(&["launch-ehr"], &["S256"])).unwrap();
        assert_eq!(c.authorization_endpoint_for_launch().unwrap(), "https://ehr.example/authorize");
    }

    #[test]
    fn a_configuration_without_capabilities_is_not_smart_2() {
        assert!(SmartConfiguration::from_well_known(&well_known_body(&[], &["S256"])).is_err());
        assert!(SmartConfiguration::from_well_known(b"<html>").is_err());
    }

    #[test]
    fn the_capability_statement_fallback_reads_oauth_uris() {
        let cs = json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "security": {"extension": [
            {"url": OAUTH_URIS, "extension": [
                {"url": "token", "valueUri": "https://ehr.example/token"},
                {"url": "authorize", "valueUri": "https://ehr.example/authorize"},
                {"url": "revoke", "valueUri": "https://ehr.example/revoke"}
            ]}
        ]}}]});
        let c = SmartConfiguration::from_capability_statement(&cs).unwrap();
        assert_eq!(c.token_endpoint, "https://ehr.example/token");
        assert_eq!(c.authorization_endpoint.as_deref(), Some("https://ehr.example/authorize"));
        assert_eq!(c.revocation_endpoint.as_deref(), Some("https://ehr.example/revoke"));
        assert_eq!(c.source, Source::CapabilityStatement);
        assert_eq!(c.supports(capability::LAUNCH_EHR), None);
        assert!(c.require(capability::LAUNCH_EHR, "x").is_ok());
        assert!(SmartConfiguration::from_capability_statement(&json!({"resourceType": "CapabilityStatement"})).is_err());
    }
}
