//! The signing key ([`KeySource`], the key file), and randomness for keys and bucket
//! seeds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use revocast_core::{
    SigningKey, signing_key_from_file, signing_key_from_seed, signing_key_to_file,
};

use crate::error::Error;

/// Where the publisher's Ed25519 signing key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A key file (see [`revocast_core::signing_key_to_file`]); created with a fresh
    /// key, mode 0600, when it does not exist yet.
    File(PathBuf),
    /// A key held in memory (tests, embedding).
    Key(SigningKey),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            // Never print the secret.
            KeySource::Key(_) => f.write_str("Key(..)"),
        }
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random_bytes() -> Result<[u8; 32], Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes)
}

/// Seeds for the hashes of the buckets one batch opens: drawn once from the
/// operating system per batch, then stepped with splitmix64 (so staging, which cannot
/// fail, never waits on the random source).
#[derive(Debug)]
pub(crate) struct BucketSeeds(u64);

impl BucketSeeds {
    /// Draws a fresh starting point.
    pub(crate) fn draw() -> Result<BucketSeeds, Error> {
        let bytes = random_bytes()?;
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        Ok(BucketSeeds(u64::from_le_bytes(first)))
    }

    /// The next seed.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes a new signing key to `path` (mode 0600, never overwriting) and returns it.
pub fn generate_key_file(path: &Path) -> Result<SigningKey, Error> {
    let key = signing_key_from_seed(random_bytes()?);
    let file_error = |source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(file_error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(file_error)?;
    file.write_all(signing_key_to_file(&key).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(file_error)?;
    Ok(key)
}

/// Reads a signing key file.
pub fn read_key_file(path: &Path) -> Result<SigningKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "signing key file is readable by group or others; chmod 600 it"
            );
        }
    }
    signing_key_from_file(&text).map_err(|source| Error::KeyParse {
        path: path.to_path_buf(),
        source,
    })
}

/// Resolves a [`KeySource`]: loads the file, or creates it with a fresh key when it
/// does not exist. Returns the key and whether it was just created.
pub(crate) fn load_or_create(source: &KeySource) -> Result<(SigningKey, bool), Error> {
    match source {
        KeySource::Key(key) => Ok((key.clone(), false)),
        KeySource::File(path) => match read_key_file(path) {
            Ok(key) => Ok((key, false)),
            Err(Error::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok((generate_key_file(path)?, true))
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/signing.key");
        let source = KeySource::File(path.clone());
        let (key, created) = load_or_create(&source).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&source).unwrap();
        assert!(!created);
        assert_eq!(key.to_bytes(), again.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            generate_key_file(&path),
            Err(Error::KeyFile { .. })
        ));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create(&source),
            Err(Error::KeyParse { .. })
        ));
    }

    #[test]
    fn bucket_seeds_differ_between_draws_and_steps() {
        let (mut a, mut b) = (BucketSeeds::draw().unwrap(), BucketSeeds::draw().unwrap());
        let seeds: std::collections::HashSet<u64> =
            (0..100).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(seeds.len(), 200);
    }
}
