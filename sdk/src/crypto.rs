//! Keys, signatures and the signing domains.
//!
//! One acceptance rule everywhere: ed25519 `verify_strict`, over a domain tag, the
//! length-prefixed network id and the exact bytes that were signed.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Domain tag for command signatures.
pub const COMMAND_DOMAIN: &[u8] = b"blyan-ledger/command/v1";
/// Domain tag for checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"blyan-ledger/checkpoint/v1";

/// An ed25519 public key: the identity of every actor.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn from_slice(bytes: &[u8]) -> Option<PublicKey> {
        Some(PublicKey(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// 64 lower-case hex characters; the one spelling of a key.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        let bytes = crate::model::decode_hex(text).ok()?;
        PublicKey::from_slice(&bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// In JSON, a key is 64 lower-case hex characters.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PublicKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("An ed25519 public key: 64 lower-case hex characters"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PublicKey {}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// A secret key with its public half.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

impl Keypair {
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// A fresh key from the operating system's random source.
    #[cfg(feature = "client")]
    pub fn generate() -> Keypair {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source failed");
        Keypair::from_secret(secret)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Reads a key file written by [`Keypair::write_file`].
    pub fn read_file(path: &Path) -> Result<Keypair, KeyFileError> {
        let text = std::fs::read_to_string(path)?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|_| KeyFileError::Format)?;
        let secret: [u8; 32] = hex::decode(&file.secret_key)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(KeyFileError::Format)?;
        let keypair = Keypair::from_secret(secret);
        if keypair.public() != file.public_key {
            return Err(KeyFileError::Mismatch);
        }
        Ok(keypair)
    }

    /// Writes the key as JSON `{public_key, secret_key}` (hex), readable by the owner
    /// only on Unix.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let file = KeyFile {
            public_key: self.public(),
            secret_key: hex::encode(self.secret()),
        };
        let text = serde_json::to_string_pretty(&file).expect("a key file always serialises");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Owner-only before the secret is written: a new file is created so, and an
        // existing one is narrowed first.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        std::io::Write::write_all(&mut out, (text + "\n").as_bytes())?;
        out.sync_all()?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    public_key: PublicKey,
    secret_key: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("cannot access the key file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the key file is not JSON {{public_key, secret_key}} with hex keys")]
    Format,
    #[error("the key file's public key does not match its secret key")]
    Mismatch,
}

/// The exact bytes a signature covers: `domain || u32_be(len(network_id)) || network_id
/// || payload`.
pub fn signing_message(domain: &[u8], network_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(domain.len() + 4 + network_id.len() + payload.len());
    message.extend_from_slice(domain);
    let network_id_len = u32::try_from(network_id.len()).expect("network id length fits u32");
    message.extend_from_slice(&network_id_len.to_be_bytes());
    message.extend_from_slice(network_id.as_bytes());
    message.extend_from_slice(payload);
    message
}

/// Verifies with `verify_strict`: rejects non-canonical encodings and small-order keys.
pub fn verify(
    domain: &[u8],
    network_id: &str,
    payload: &[u8],
    signer: &PublicKey,
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&signer.0).map_err(|_| SignatureError::BadKey)?;
    let signature = Signature::from_bytes(signature);
    key.verify_strict(&signing_message(domain, network_id, payload), &signature)
        .map_err(|_| SignatureError::Invalid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signer is not a valid ed25519 public key")]
    BadKey,
    #[error("the signature does not verify for this signer, network and body")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_bound_to_domain_network_and_payload() {
        let key = Keypair::from_secret([7; 32]);
        let signature = key.sign(&signing_message(COMMAND_DOMAIN, "net-a", b"body"));
        let public = key.public();
        assert_eq!(
            verify(COMMAND_DOMAIN, "net-a", b"body", &public, &signature),
            Ok(())
        );
        let wrong = [
            verify(COMMAND_DOMAIN, "net-b", b"body", &public, &signature),
            verify(CHECKPOINT_DOMAIN, "net-a", b"body", &public, &signature),
            verify(COMMAND_DOMAIN, "net-a", b"bodY", &public, &signature),
        ];
        assert!(
            wrong
                .iter()
                .all(|result| *result == Err(SignatureError::Invalid))
        );
    }

    #[test]
    fn network_id_is_length_prefixed() {
        // Without the prefix, ("ab", "c...") and ("a", "bc...") would sign the same bytes.
        assert_ne!(
            signing_message(b"d", "ab", b"c"),
            signing_message(b"d", "a", b"bc")
        );
    }

    #[test]
    fn small_order_key_is_refused() {
        // The identity point: every "signature" would verify under plain `verify`.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let signature = [0u8; 64];
        assert!(verify(COMMAND_DOMAIN, "n", b"x", &PublicKey(identity), &signature).is_err());
    }
}
