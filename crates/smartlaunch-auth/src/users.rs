//! Users who sign in, and their argon2id password hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A person who can sign in: a clinician (a Practitioner) or a patient (a Patient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    /// The FHIR resource that is this user, relative to the FHIR base: `Practitioner/…` or
    /// `Patient/…` (the `fhirUser` claim, spec digest §1.9).
    pub fhir_user: String,
    pub display_name: String,
}

impl User {
    /// The Patient id when this user is a patient.
    pub fn patient_id(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
}

/// Hashes a password with argon2id.  Slow on purpose: call it off the async runtime.
pub fn hash_password(password: &str) -> String {
    let mut salt_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt_bytes).expect("the system random number generator failed");
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters cannot fail")
        .to_string()
}

/// Verifies a password.  For an unknown user pass `None`: a dummy hash is checked so that the
/// time taken does not reveal whether the username exists.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a real password"));
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let ok = PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false);
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("clinician");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(&h), "clinician"));
        assert!(!verify_password(Some(&h), "Clinician"));
        assert!(!verify_password(None, "clinician"));
        assert!(!verify_password(Some("not a hash"), "x"));
    }
}
