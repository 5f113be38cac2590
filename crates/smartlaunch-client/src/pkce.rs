//! PKCE with S256 (RFC 7636; SMART 2.2 requires S256 and forbids `plain`) and the random values
//! of a launch: `state`, `nonce`, the code verifier and client-assertion `jti`s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Error;

/// `bytes` random bytes from the operating system, base64url without padding.
///
/// 32 bytes give 256 bits: `state` and `nonce` are well past the 128 bits an attacker would
/// have to guess (fhirclient.js's state carries about 96).
pub fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Config(format!("the operating system gave no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A PKCE verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// The secret the app keeps until the token request (43 characters, 256 bits).
    pub verifier: String,
    /// `BASE64URL(SHA256(verifier))`, sent as `code_challenge` with `code_challenge_method=S256`.
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Result<Pkce, Error> {
        let verifier = random_token(32)?;
        Ok(Pkce { challenge: challenge_of(&verifier), verifier })
    }
}

/// The S256 challenge of a verifier (RFC 7636 §4.2).
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_43_characters_of_the_unreserved_set_and_differ() {
        let a = Pkce::generate().unwrap();
        let b = Pkce::generate().unwrap();
        assert_eq!(a.verifier.len(), 43);
        assert!(a.verifier.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.challenge, challenge_of(&a.verifier));
    }
}
