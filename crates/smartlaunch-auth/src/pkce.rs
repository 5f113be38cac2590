//! PKCE (RFC 7636) as SMART requires it: `S256` only, `plain` refused (checklist items 27–29).

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::secrets::secrets_equal;

/// Checks the `code_challenge` / `code_challenge_method` pair of an authorization request.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), &'static str> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or("code_challenge is required: SMART App Launch requires PKCE with code_challenge_method=S256")?;
    match method {
        Some("S256") => {}
        Some("plain") => return Err("code_challenge_method=plain is not supported; use S256"),
        None | Some("") => return Err("code_challenge_method is required and must be S256"),
        Some(_) => return Err("code_challenge_method must be S256"),
    }
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return Err("code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)");
    }
    Ok(())
}

/// Verifies a `code_verifier` against the stored S256 challenge.  Missing, empty, malformed
/// or wrong verifiers, and a verifier that is the challenge itself, are all refused.
pub fn verify(challenge: &str, verifier: Option<&str>) -> Result<(), &'static str> {
    if challenge.is_empty() {
        return Err("the code was issued without a code_challenge, so no code_verifier can be accepted for it");
    }
    let verifier = verifier.filter(|v| !v.is_empty()).ok_or("code_verifier is required (PKCE)")?;
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
        return Err("code_verifier must be 43 to 128 characters of [A-Z a-z 0-9 - . _ ~] (RFC 7636 §4.1)");
    }
    if verifier == challenge {
        return Err("code_verifier must be the secret behind the code_challenge, not the challenge itself");
    }
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    if secrets_equal(&computed, challenge) {
        Ok(())
    } else {
        Err("code_verifier does not match the code_challenge")
    }
}

/// The S256 challenge of a verifier (used by tests and the load tool's counterpart).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        assert!(verify(CHALLENGE, Some(VERIFIER)).is_ok());
    }

    #[test]
    fn challenge_rules() {
        assert!(check_challenge(Some(CHALLENGE), Some("S256")).is_ok());
        assert!(check_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(check_challenge(Some(CHALLENGE), None).is_err());
        assert!(check_challenge(None, Some("S256")).is_err());
        assert!(check_challenge(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn verifier_without_challenge_is_refused() {
        // A PKCE downgrade: a code without a challenge never accepts a verifier (spec item 29).
        assert!(verify("", Some(VERIFIER)).is_err());
        assert!(verify("", None).is_err());
    }

    #[test]
    fn verifier_rules() {
        assert!(verify(CHALLENGE, None).is_err());
        assert!(verify(CHALLENGE, Some("")).is_err());
        assert!(verify(CHALLENGE, Some(CHALLENGE)).is_err());
        assert!(verify(CHALLENGE, Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")).is_err());
        assert!(verify(CHALLENGE, Some("short")).is_err());
    }
}
