//! The signing keys encrypted at rest (issue 10, "signing keys shared (in the database,
//! encrypted with a key from the environment or a file)"): each private field of a
//! [`KeyMaterial`] is sealed with AES-256-GCM under the key encryption key, with a fresh random
//! nonce and the key id and field name as associated data (a sealed field cannot be moved to
//! another key or field).  A sealed field is `SLK1 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`; a
//! stored field without the prefix is a plaintext key of a sandbox that runs without a key
//! encryption key (SQLite, where the data directory is the trust boundary).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::keys::KeyMaterial;

/// The prefix of a sealed field ("smartlaunch key, format 1").  A PKCS#8 DER starts with
/// 0x30, so a plaintext RSA key never has it.
const MAGIC: &[u8; 4] = b"SLK1";
/// The length of the key encryption key.
pub const KEY_LEN: usize = 32;
/// How to make a key encryption key, for the errors that ask for one.
pub const HOW_TO_MAKE_ONE: &str = "make one with `openssl rand -base64 32` and give every node the same one, \
     in SMARTLAUNCH_KEY_ENCRYPTION_KEY or in a file named by --key-encryption-key-file";

/// The key that encrypts the signing keys in the database.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; KEY_LEN]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(…)")
    }
}

/// Why the stored keys could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecryptError {
    #[error("the signing keys in the database are encrypted, and no key encryption key was given: {HOW_TO_MAKE_ONE}")]
    NoKey,
    #[error(
        "the signing keys in the database cannot be decrypted with the key encryption key given \
         (SMARTLAUNCH_KEY_ENCRYPTION_KEY or --key-encryption-key-file): it is not the one they were \
         encrypted with — give this node the same key as the others"
    )]
    WrongKey,
    /// A plaintext key in a database whose keys must all be sealed (PostgreSQL: a database
    /// server, its backups and replicas are outside the nodes' trust boundary).  An earlier
    /// `smartlaunch migrate` copied keys as SQLite kept them.
    #[error(
        "the signing key {kid} is stored unencrypted in the PostgreSQL database (copied by an earlier \
         `smartlaunch migrate`?), and a node on PostgreSQL uses encrypted keys only: replace it — \
         `smartlaunch keys rotate` (adds an encrypted key), then `smartlaunch keys retire --kid {kid}` \
         (the tokens it signed stop working) — or copy the SQLite sandbox again with this \
         `smartlaunch migrate`, which encrypts the keys"
    )]
    Unsealed { kid: String },
}

impl KeyEncryptionKey {
    /// Reads a key encryption key from base64 (standard alphabet, surrounding whitespace
    /// ignored: a file written by `openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Result<KeyEncryptionKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the key encryption key is not base64 ({e}): {HOW_TO_MAKE_ONE}"))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("the key encryption key has {} bytes, not {KEY_LEN}: {HOW_TO_MAKE_ONE}", b.len())
        })?;
        Ok(KeyEncryptionKey(key))
    }

    fn aead(&self) -> Result<LessSafeKey, String> {
        let key = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| "AES-256-GCM key".to_owned())?;
        Ok(LessSafeKey::new(key))
    }

    fn seal(&self, kid: &str, field: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness for a nonce".to_owned())?;
        let mut sealed = plain.to_vec();
        self.aead()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(kid, field), &mut sealed)
            .map_err(|_| "sealing a signing key failed".to_owned())?;
        Ok([MAGIC.as_slice(), &nonce, &sealed].concat())
    }

    fn open(&self, kid: &str, field: &str, stored: &[u8]) -> Result<Vec<u8>, KeyDecryptError> {
        let rest = &stored[MAGIC.len()..];
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(KeyDecryptError::WrongKey)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyDecryptError::WrongKey)?;
        let mut in_out = sealed.to_vec();
        let aead = self.aead().map_err(|_| KeyDecryptError::WrongKey)?;
        let plain = aead
            .open_in_place(Nonce::assume_unique_for_key(nonce), aad(kid, field), &mut in_out)
            .map_err(|_| KeyDecryptError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

fn aad(kid: &str, field: &str) -> Aad<Vec<u8>> {
    Aad::from(format!("smartlaunch signing key {kid} {field}").into_bytes())
}

fn is_sealed(field: &[u8]) -> bool {
    field.starts_with(MAGIC)
}

/// Whether every private field of stored material is sealed (by some key encryption key).
pub fn is_sealed_material(m: &KeyMaterial) -> bool {
    is_sealed(&m.rsa_pkcs8) && is_sealed(&m.hmac_secret)
}

/// Refuses stored material with a plaintext field, where every key must be sealed (PostgreSQL).
pub fn require_sealed(m: &KeyMaterial) -> Result<(), KeyDecryptError> {
    match is_sealed_material(m) {
        true => Ok(()),
        false => Err(KeyDecryptError::Unsealed { kid: m.kid.clone() }),
    }
}

/// The material as the store keeps it: sealed under `kek`, or as it is without one.
pub fn seal_material(kek: Option<&KeyEncryptionKey>, m: &KeyMaterial) -> Result<KeyMaterial, String> {
    let Some(kek) = kek else { return Ok(m.clone()) };
    Ok(KeyMaterial {
        kid: m.kid.clone(),
        rsa_pkcs8: kek.seal(&m.kid, "rsa", &m.rsa_pkcs8)?,
        hmac_secret: kek.seal(&m.kid, "hmac", &m.hmac_secret)?,
    })
}

/// The material as stored, opened: sealed fields need `kek`, the one they were sealed with.
pub fn open_material(kek: Option<&KeyEncryptionKey>, m: &KeyMaterial) -> Result<KeyMaterial, KeyDecryptError> {
    let open = |field: &str, stored: &[u8]| -> Result<Vec<u8>, KeyDecryptError> {
        if !is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        kek.ok_or(KeyDecryptError::NoKey)?.open(&m.kid, field, stored)
    };
    Ok(KeyMaterial {
        kid: m.kid.clone(),
        rsa_pkcs8: open("rsa", &m.rsa_pkcs8)?,
        hmac_secret: open("hmac", &m.hmac_secret)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&STANDARD.encode([byte; KEY_LEN])).unwrap()
    }

    #[test]
    fn sealed_material_opens_with_its_key_only() {
        let m = KeyMaterial::generate();
        let sealed = seal_material(Some(&kek(1)), &m).unwrap();
        assert_ne!(sealed.rsa_pkcs8, m.rsa_pkcs8);
        assert!(!sealed.hmac_secret.windows(m.hmac_secret.len()).any(|w| w == m.hmac_secret), "no plaintext");
        assert_eq!(open_material(Some(&kek(1)), &sealed).unwrap(), m);
        assert_eq!(open_material(Some(&kek(2)), &sealed), Err(KeyDecryptError::WrongKey));
        assert_eq!(open_material(None, &sealed), Err(KeyDecryptError::NoKey));
        let moved = KeyMaterial { kid: "other".into(), ..sealed.clone() };
        assert_eq!(open_material(Some(&kek(1)), &moved), Err(KeyDecryptError::WrongKey), "bound to its kid");
        let swapped = KeyMaterial { hmac_secret: sealed.rsa_pkcs8.clone(), ..sealed };
        assert_eq!(open_material(Some(&kek(1)), &swapped), Err(KeyDecryptError::WrongKey), "bound to its field");
        assert_eq!(open_material(Some(&kek(1)), &m).unwrap(), m, "a plaintext key (a sandbox without one) reads");
    }

    #[test]
    fn where_keys_must_be_sealed_a_plaintext_field_is_refused() {
        let m = KeyMaterial::generate();
        let sealed = seal_material(Some(&kek(1)), &m).unwrap();
        assert!(is_sealed_material(&sealed) && require_sealed(&sealed).is_ok());
        let refused = require_sealed(&m).unwrap_err();
        assert_eq!(refused, KeyDecryptError::Unsealed { kid: m.kid.clone() });
        assert!(refused.to_string().contains(&format!("keys retire --kid {}", m.kid)), "{refused}");
        let half = KeyMaterial { hmac_secret: m.hmac_secret.clone(), ..sealed };
        assert!(!is_sealed_material(&half) && require_sealed(&half).is_err(), "one plaintext field is enough");
    }

    #[test]
    fn a_key_encryption_key_is_32_bytes_of_base64() {
        assert!(KeyEncryptionKey::from_base64(&format!("{}\n", STANDARD.encode([7u8; 32]))).is_ok());
        assert!(KeyEncryptionKey::from_base64(&STANDARD.encode([7u8; 16])).unwrap_err().contains("16 bytes"));
        assert!(KeyEncryptionKey::from_base64("not base64!").unwrap_err().contains("openssl rand -base64 32"));
        assert_eq!(format!("{:?}", kek(1)), "KeyEncryptionKey(…)", "never printed");
    }
}
