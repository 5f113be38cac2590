//! Random tokens and their hashes: codes, refresh tokens, session ids, client secrets.

use aws_lc_rs::{constant_time, digest, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A URL-safe random token of `bytes` random bytes (base64url, no padding).  32 bytes give
/// 256 bits: codes and refresh tokens need ≥ 128 (ARCHITECTURE.md "Security design").
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random lower-case hex string of `bytes` random bytes (a valid FHIR id for 1–32 bytes).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf).expect("the system random number generator failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a high-entropy token, base64url: what the database keeps instead of the token.
/// (Passwords, which have little entropy, use argon2id instead: see [`crate::users`].)
pub fn hash_token(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Compares two secrets without leaking where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_unique() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, random_token(32));
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(hash_token("abc"), hash_token("abd"));
        assert!(secrets_equal("x", "x") && !secrets_equal("x", "y"));
    }
}
