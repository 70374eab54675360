//! Ed25519 keys as operators handle them: the public key subscribers pin (one
//! base64url string) and the signing key file the publisher keeps.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::KeyError;

pub use ed25519_dalek::SigningKey as Ed25519SigningKey;

/// First line of a signing key file.
pub const KEY_FILE_HEADER: &str = "revocast-ed25519-signing-key-v1";

/// The publisher's public key, written as 43 characters of unpadded base64url.
///
/// ```
/// use revocast_core::PublicKey;
/// let key: PublicKey = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik".parse().unwrap();
/// assert_eq!(key.to_string(), "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = decode_32(s.trim())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublicKey)
    }
}

fn decode_32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(KeyError::Encoding)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length(len))
}

/// A signing key from 32 random bytes (the caller supplies the randomness).
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The text of a signing key file: a header line and the secret seed in base64url.
pub fn signing_key_to_file(key: &SigningKey) -> String {
    format!(
        "{KEY_FILE_HEADER}\n{}\n",
        URL_SAFE_NO_PAD.encode(key.to_bytes())
    )
}

/// Parses the text of a signing key file (its signing key; see [`KeyFile`] for the
/// keys it retired).
pub fn signing_key_from_file(text: &str) -> Result<SigningKey, KeyError> {
    KeyFile::parse(text).map(|file| file.signing)
}

/// Starts a line of a key file naming a public key the publisher signed with before
/// a rotation.
pub const RETIRED_PREFIX: &str = "retired ";

/// A signing key file: the header line, the secret seed, then one `retired <public
/// key>` line for each key the publisher rotated away from, the newest first. The
/// publisher reads its namespace's older messages (a snapshot taken before a rotation)
/// with the retired keys; they are public, and the file never keeps an old secret.
#[derive(Clone)]
pub struct KeyFile {
    /// The key the publisher signs with.
    pub signing: SigningKey,
    /// The keys it signed with before, the newest first.
    pub retired: Vec<PublicKey>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("KeyFile")
            .field("public_key", &PublicKey(self.signing.verifying_key()))
            .field("retired", &self.retired)
            .finish()
    }
}

impl KeyFile {
    /// A file holding `signing` and no retired key.
    pub fn new(signing: SigningKey) -> KeyFile {
        KeyFile {
            signing,
            retired: Vec::new(),
        }
    }

    /// The public key of the signing key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<KeyFile, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(KeyError::BadFile(KEY_FILE_HEADER));
        }
        let secret = lines.next().ok_or(KeyError::Length(0))?;
        let signing = SigningKey::from_bytes(&decode_32(secret)?);
        let retired = lines
            .map(|line| {
                line.strip_prefix(RETIRED_PREFIX)
                    .ok_or_else(|| KeyError::BadLine(line.chars().take(40).collect()))?
                    .parse()
            })
            .collect::<Result<_, _>>()?;
        Ok(KeyFile { signing, retired })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = signing_key_to_file(&self.signing);
        for key in &self.retired {
            text.push_str(RETIRED_PREFIX);
            text.push_str(&key.to_string());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip() {
        let key = signing_key_from_seed([7; 32]);
        let text = signing_key_to_file(&key);
        let back = signing_key_from_file(&text).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
    }

    #[test]
    fn malformed_key_files_are_rejected() {
        let cases = [
            ("", KeyError::BadFile(KEY_FILE_HEADER)),
            ("hello\nabc\n", KeyError::BadFile(KEY_FILE_HEADER)),
            ("revocast-ed25519-signing-key-v1\n", KeyError::Length(0)),
            (
                "revocast-ed25519-signing-key-v1\nAAAA\n",
                KeyError::Length(3),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(signing_key_from_file(text).unwrap_err(), want, "{text:?}");
        }
        assert!(matches!(
            signing_key_from_file("revocast-ed25519-signing-key-v1\n!!!\n"),
            Err(KeyError::Encoding(_))
        ));
    }

    #[test]
    fn key_files_keep_the_retired_public_keys() {
        let mut file = KeyFile::new(signing_key_from_seed([7; 32]));
        file.retired = vec![
            PublicKey(signing_key_from_seed([6; 32]).verifying_key()),
            PublicKey(signing_key_from_seed([5; 32]).verifying_key()),
        ];
        let back = KeyFile::parse(&file.to_text()).unwrap();
        assert_eq!(back.signing.to_bytes(), file.signing.to_bytes());
        assert_eq!(back.retired, file.retired);
        // A file written before rotation existed reads as one with no retired key.
        let plain = signing_key_to_file(&file.signing);
        assert!(KeyFile::parse(&plain).unwrap().retired.is_empty());
        let bad = format!("{plain}old AAAA\n");
        assert_eq!(
            KeyFile::parse(&bad).unwrap_err(),
            KeyError::BadLine("old AAAA".into())
        );
        let bad = format!("{plain}retired AAAA\n");
        assert_eq!(KeyFile::parse(&bad).unwrap_err(), KeyError::Length(3));
    }

    #[test]
    fn malformed_public_keys_are_rejected() {
        assert!(matches!("".parse::<PublicKey>(), Err(KeyError::Length(0))));
        assert!(matches!(
            "a b".parse::<PublicKey>(),
            Err(KeyError::Encoding(_))
        ));
        assert!(matches!(
            "AAAA".parse::<PublicKey>(),
            Err(KeyError::Length(3))
        ));
        let key = PublicKey(signing_key_from_seed([1; 32]).verifying_key());
        assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    }
}
