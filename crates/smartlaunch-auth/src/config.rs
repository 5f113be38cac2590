//! The authorization server's settings, read once at start and passed down.

/// URLs and lifetimes of the authorization server.  Its `Debug` shows no secret (the tokens
/// only as set or not).
#[derive(Clone)]
pub struct AuthConfig {
    /// The externally visible base URL, without a trailing slash (e.g. `http://127.0.0.1:8080`).
    /// It is also the OpenID Connect `issuer`.
    pub public_url: String,
    /// Access-token lifetime in seconds (SHOULD ≤ 1 h, checklist item 62).
    pub access_token_lifetime: i64,
    /// Authorization-code lifetime in seconds (≤ 60, checklist item 31).
    pub code_lifetime: i64,
    /// Absolute lifetime of an `offline_access` refresh-token family.
    pub offline_lifetime: i64,
    /// Lifetime of a sign-in session; `online_access` refresh tokens end with it.
    pub session_lifetime: i64,
    /// How long a user has to finish the browser steps of one authorization.
    pub pending_lifetime: i64,
    /// When set, RFC 7591 registration requires `Authorization: Bearer <this>`.
    pub registration_token: Option<String>,
    /// When set, the launch API requires `Authorization: Bearer <this>`.
    pub admin_token: Option<String>,
    /// The open-sandbox powers (the launch API and launcher without a token, skip sign-in and
    /// skip consent, ad-hoc launcher apps, the recent-launches list) are on without the admin
    /// token.  On by default only on loopback (ARCHITECTURE.md "Security design").
    pub open_sandbox: bool,
    /// The sandbox is open because the server listens on loopback (not by `--open-sandbox`):
    /// the powers then answer only to requests that name a loopback host, so a web page cannot
    /// reach them through DNS rebinding (a name of its own that resolves to 127.0.0.1).
    pub loopback_sandbox: bool,
    /// Whether a name is a FHIR resource type, for the launch inspector's scope flags (`None`:
    /// types are not checked).  The FHIR crate knows the list; the server passes it in.
    pub known_resource_type: Option<fn(&str) -> bool>,
    /// Encrypts the signing keys in the database (required on PostgreSQL, optional on SQLite;
    /// docs/DESIGN.md "Stateless nodes").
    pub key_encryption_key: Option<crate::key_encryption::KeyEncryptionKey>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "(set)");
        f.debug_struct("AuthConfig")
            .field("public_url", &self.public_url)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("code_lifetime", &self.code_lifetime)
            .field("offline_lifetime", &self.offline_lifetime)
            .field("session_lifetime", &self.session_lifetime)
            .field("pending_lifetime", &self.pending_lifetime)
            .field("registration_token", &secret(&self.registration_token))
            .field("admin_token", &secret(&self.admin_token))
            .field("open_sandbox", &self.open_sandbox)
            .field("loopback_sandbox", &self.loopback_sandbox)
            .field("known_resource_type", &self.known_resource_type.is_some())
            // Its own Debug shows no key material.
            .field("key_encryption_key", &self.key_encryption_key)
            .finish()
    }
}

impl AuthConfig {
    pub fn new(public_url: &str) -> AuthConfig {
        AuthConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            access_token_lifetime: 3600,
            code_lifetime: 60,
            offline_lifetime: 30 * 24 * 3600,
            session_lifetime: 12 * 3600,
            pending_lifetime: 30 * 60,
            registration_token: None,
            admin_token: None,
            open_sandbox: false,
            loopback_sandbox: false,
            known_resource_type: None,
            key_encryption_key: None,
        }
    }

    /// Which way the open-sandbox powers are guarded (for the start-up banner and the pages).
    pub fn sandbox_mode(&self) -> SandboxMode {
        match (&self.admin_token, self.open_sandbox) {
            (Some(_), _) => SandboxMode::AdminToken,
            (None, true) => SandboxMode::Open,
            (None, false) => SandboxMode::Closed,
        }
    }

    /// The FHIR base URL: the `aud` every authorization must name.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.public_url)
    }

    pub fn issuer(&self) -> &str {
        &self.public_url
    }

    pub fn authorize_endpoint(&self) -> String {
        format!("{}/auth/authorize", self.public_url)
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/auth/token", self.public_url)
    }

    pub fn registration_endpoint(&self) -> String {
        format!("{}/auth/register", self.public_url)
    }

    /// The built-in callback page for apps launched by hand (`/dev/callback`), the one redirect
    /// URI on this server that a registration may name (with the sandbox powers).
    pub fn dev_callback_uri(&self) -> String {
        format!("{}{DEV_CALLBACK_PATH}", self.public_url)
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/auth/introspect", self.public_url)
    }

    pub fn revocation_endpoint(&self) -> String {
        format!("{}/auth/revoke", self.public_url)
    }

    /// Where a user sees and revokes the apps they authorized (`management_endpoint`).
    pub fn management_endpoint(&self) -> String {
        format!("{}/account", self.public_url)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.public_url)
    }

    /// Whether `aud` names our FHIR base, or a developer-launcher simulation's (a trailing
    /// slash is tolerated; checklist item 25).
    pub fn is_our_audience(&self, aud: &str) -> bool {
        let aud = aud.strip_suffix('/').unwrap_or(aud);
        aud == self.fhir_base() || self.simulation_of(aud).is_some()
    }

    /// The FHIR base of a developer-launcher standalone simulation: the same FHIR server,
    /// reached through a base that names the simulation, so an app needs only its `iss`.
    pub fn simulation_base(&self, id: &str) -> String {
        format!("{}/sim/{id}/fhir", self.public_url)
    }

    /// The simulation id when `aud` is a simulation's FHIR base.
    pub fn simulation_of<'a>(&self, aud: &'a str) -> Option<&'a str> {
        let aud = aud.strip_suffix('/').unwrap_or(aud);
        let id = aud.strip_prefix(self.public_url.as_str())?.strip_prefix("/sim/")?.strip_suffix("/fhir")?;
        is_simulation_id(id).then_some(id)
    }
}

/// How the open-sandbox powers are guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Anyone who reaches the server may use them (loopback, or `--open-sandbox`).
    Open,
    /// Only callers that present the admin token.
    AdminToken,
    /// Off: not loopback, no `--open-sandbox`, no `--admin-token`.
    Closed,
}

impl SandboxMode {
    /// One line for the start-up banner.
    pub fn describe(self) -> &'static str {
        match self {
            SandboxMode::Open => "open sandbox: the launch API, launcher, skip sign-in and skip consent need no token",
            SandboxMode::AdminToken => "the launch API, launcher, skip sign-in and skip consent need the admin token",
            SandboxMode::Closed => {
                "closed: the launch API and launcher are off (not on loopback; use --admin-token or --open-sandbox)"
            }
        }
    }
}

/// The path of the built-in callback page ([`AuthConfig::dev_callback_uri`]).
pub const DEV_CALLBACK_PATH: &str = "/dev/callback";

/// Whether a `Host` header names this machine's loopback (`localhost`, `*.localhost`,
/// `127.x.x.x`, `[::1]`), with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `id` can name a simulation: 1–64 characters of base64url (what the server issues).
pub fn is_simulation_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_never_shows_a_token() {
        let config = AuthConfig {
            registration_token: Some("registration-secret".into()),
            admin_token: Some("admin-secret".into()),
            ..AuthConfig::new("http://127.0.0.1")
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("registration-secret") && !shown.contains("admin-secret"), "{shown}");
        assert!(shown.contains("admin_token: Some(\"(set)\")"), "{shown}");
    }

    #[test]
    fn loopback_hosts_are_named_as_such() {
        for host in [
            "localhost",
            "localhost:8080",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:9",
            "[::1]:8080",
            "LOCALHOST:1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "rebind.attacker.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "10.0.0.1:8080",
            "[::2]:80",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
