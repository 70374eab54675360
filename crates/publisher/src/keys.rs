//! The signing key ([`KeySource`], the key file), and randomness for keys and bucket
//! seeds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use revocast_core::{KeyFile, SigningKey, signing_key_from_seed};

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

/// A fresh signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, Error> {
    Ok(signing_key_from_seed(random_bytes()?))
}

/// Writes a new signing key to `path` (mode 0600, never overwriting) and returns it.
pub fn generate_key_file(path: &Path) -> Result<SigningKey, Error> {
    let key = generate_key()?;
    write_key_file(path, &KeyFile::new(key.clone()), true)?;
    Ok(key)
}

/// Writes `file` to `path`, mode 0600, synced to disk; with `create_new`, never over
/// an existing file.
fn write_key_file(path: &Path, file: &KeyFile, create_new: bool) -> Result<(), Error> {
    let file_error = |source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(file_error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    if create_new {
        options.write(true).create_new(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(path).map_err(file_error)?;
    out.write_all(file.to_text().as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(file_error)
}

/// Where a rotation writes the key file it switches to, beside `path`, before it
/// commits the rollover: a publisher that stops between the commit and the rename
/// finds it there at start and finishes the rotation.
pub fn next_key_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// Writes the key file a rotation switches to (see [`next_key_path`]).
pub(crate) fn write_next_key_file(path: &Path, file: &KeyFile) -> Result<PathBuf, Error> {
    let next = next_key_path(path);
    write_key_file(&next, file, false)?;
    Ok(next)
}

/// Puts the file a rotation wrote in place of the key file (an atomic rename, then the
/// directory synced so that the rename survives a crash).
pub(crate) fn install_next_key_file(path: &Path) -> Result<(), Error> {
    let next = next_key_path(path);
    let file_error = |source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    std::fs::rename(&next, path).map_err(file_error)?;
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(file_error)?;
    }
    Ok(())
}

/// Reads a signing key file: the key, and the keys it retired.
pub fn read_key_file(path: &Path) -> Result<KeyFile, Error> {
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
    KeyFile::parse(&text).map_err(|source| Error::KeyParse {
        path: path.to_path_buf(),
        source,
    })
}

/// Resolves a [`KeySource`]: loads the file, or creates it with a fresh key when it
/// does not exist. Returns the key file and whether it was just created.
pub(crate) fn load_or_create(source: &KeySource) -> Result<(KeyFile, bool), Error> {
    match source {
        KeySource::Key(key) => Ok((KeyFile::new(key.clone()), false)),
        KeySource::File(path) => match read_key_file(path) {
            Ok(file) => Ok((file, false)),
            Err(Error::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok((KeyFile::new(generate_key_file(path)?), true))
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
        assert_eq!(key.signing.to_bytes(), again.signing.to_bytes());
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
    fn a_rotation_writes_the_next_file_beside_the_key_and_renames_it_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let old = generate_key_file(&path).unwrap();
        let mut next = KeyFile::new(generate_key().unwrap());
        next.retired
            .push(revocast_core::PublicKey(old.verifying_key()));
        let written = write_next_key_file(&path, &next).unwrap();
        assert_eq!(written, dir.path().join("signing.key.next"));
        assert_eq!(
            read_key_file(&path).unwrap().signing.to_bytes(),
            old.to_bytes()
        );
        install_next_key_file(&path).unwrap();
        let now = read_key_file(&path).unwrap();
        assert_eq!(now.signing.to_bytes(), next.signing.to_bytes());
        assert_eq!(now.retired, next.retired);
        assert!(!written.exists());
        assert!(matches!(
            install_next_key_file(&path),
            Err(Error::KeyFile { .. })
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
