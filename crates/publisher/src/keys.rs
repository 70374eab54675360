//! The signing key on disk, and randomness for keys and Bloom seeds.

use std::io::Write as _;
use std::path::Path;

use revocast_core::{
    SigningKey, signing_key_from_file, signing_key_from_seed, signing_key_to_file,
};

use crate::config::KeySource;
use crate::error::Error;

/// 32 bytes from the operating system's random source.
pub(crate) fn random_bytes() -> Result<[u8; 32], Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes)
}

/// A Bloom layer seed: 32 random bytes whose halves differ (core rejects equal
/// halves). Equal halves from a real random source are a 2^-128 event; drawing again
/// costs nothing.
pub(crate) fn bloom_seed() -> Result<[u8; 32], Error> {
    loop {
        let seed = random_bytes()?;
        if seed[..16] != seed[16..] {
            return Ok(seed);
        }
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

/// [`bloom_seed`] for unit tests.
#[cfg(test)]
pub(crate) fn bloom_seed_or_panic() -> [u8; 32] {
    bloom_seed().unwrap()
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
    fn seeds_have_differing_halves() {
        for _ in 0..100 {
            let seed = bloom_seed().unwrap();
            assert_ne!(seed[..16], seed[16..]);
        }
    }
}
