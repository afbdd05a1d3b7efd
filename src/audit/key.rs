//! The ledger's Ed25519 signing key, kept beside its data.
//!
//! Two files in the data directory, next to sled's:
//!
//! - `signing-key`: the 32-byte secret seed as 64 lowercase hex digits and a
//!   newline, mode 0600. Only [`load_or_create`] (called by `Ledger::open`)
//!   reads it; it signs checkpoints and nothing else.
//! - `signing-key.pub`: the public key, 64 hex digits and a newline, mode
//!   0644, so that `fundledger key` and `fundledger verify` — and an auditor
//!   with a copy of the directory — can read it without the secret.
//!
//! The key is created with the ledger: `Ledger::open` creates it when the
//! data directory has none (a new ledger, or one made before keys existed).
//! This module must never overwrite a key, nor make a new one when the
//! public key shows that there was one: checkpoints signed so far would no
//! longer match the ledger's key.

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const SECRET_KEY_FILE: &str = "signing-key";
pub const PUBLIC_KEY_FILE: &str = "signing-key.pub";
/// Ed25519 keys, secret seeds included, are 32 bytes: 64 hex digits.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "{} holds the ledger's secret signing key but is open to other users (mode {mode:o}); \
         run `chmod 600 {}` and check who may have read it",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{} is not an Ed25519 key: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    #[error(
        "{} exists but {} is missing: the ledger's signing key was lost or moved. Restore it from a backup; \
         a new key would not match the checkpoints signed so far",
        public.display(),
        secret.display()
    )]
    SecretMissing { secret: PathBuf, public: PathBuf },
    #[error(
        "{} says the public key is {found}, but the secret key in {} belongs to {expected}; \
         restore the files as a matching pair",
        public.display(),
        secret.display()
    )]
    Mismatch { secret: PathBuf, public: PathBuf, found: String, expected: String },
}

/// Loads the ledger's signing key from `dir`, creating it when the directory
/// has none. The second value is true when the key was just created.
pub fn load_or_create(dir: &Path) -> Result<(SigningKey, bool), KeyError> {
    let secret = dir.join(SECRET_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    if !secret.exists() {
        if public.exists() {
            return Err(KeyError::SecretMissing { secret, public });
        }
        let key = create(dir)?;
        return Ok((key, true));
    }
    let key = read_secret(&secret)?;
    let expected = hex::encode(key.verifying_key().as_bytes());
    match read_public(dir)? {
        None => write_file(dir, PUBLIC_KEY_FILE, format!("{expected}\n").as_bytes(), 0o644)?,
        Some(found) if found == key.verifying_key() => {}
        Some(found) => {
            return Err(KeyError::Mismatch { secret, public, found: hex::encode(found.as_bytes()), expected });
        }
    }
    Ok((key, false))
}

/// The ledger's public key from `dir/signing-key.pub`; `None` when there is
/// none. Never reads the secret key.
pub fn read_public(dir: &Path) -> Result<Option<VerifyingKey>, KeyError> {
    let path = dir.join(PUBLIC_KEY_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { action: "read", path, source }),
    };
    parse_public_hex(text.trim()).map(Some).map_err(|problem| KeyError::Malformed { path, problem })
}

/// Parses a public key given as 64 hex digits.
pub fn parse_public_hex(text: &str) -> Result<VerifyingKey, String> {
    let bytes = parse_hex32(text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format!("{text} is not a point of the Ed25519 curve"))
}

/// 32 bytes from exactly 64 hex digits.
pub fn parse_hex32(text: &str) -> Result<[u8; KEY_BYTES], String> {
    let mut bytes = [0; KEY_BYTES];
    if text.len() != 2 * KEY_BYTES {
        return Err(format!("{} characters, expected {} hex digits", text.len(), 2 * KEY_BYTES));
    }
    hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("not hex: {e}"))?;
    Ok(bytes)
}

fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |action, source| KeyError::Io { action, path: path.to_owned(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).map_err(|e| io("inspect", e))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { path: path.to_owned(), mode });
        }
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| io("read", e))?);
    let mut seed = Zeroizing::new([0u8; KEY_BYTES]);
    let hex_text = text.trim();
    if hex_text.len() != 2 * KEY_BYTES {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            problem: format!("{} characters, expected {} hex digits", hex_text.len(), 2 * KEY_BYTES),
        });
    }
    hex::decode_to_slice(hex_text, &mut seed[..])
        .map_err(|e| KeyError::Malformed { path: path.to_owned(), problem: format!("not hex: {e}") })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new key from the operating system's random source, written secret
/// first (so that a crash in between leaves a key whose public half is
/// simply written again at the next open).
fn create(dir: &Path) -> Result<SigningKey, KeyError> {
    let mut seed = Zeroizing::new([0u8; KEY_BYTES]);
    getrandom::fill(&mut seed[..]).map_err(|e| KeyError::Io {
        action: "draw random bytes for",
        path: dir.join(SECRET_KEY_FILE),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let secret_text = Zeroizing::new(format!("{}\n", hex::encode(&seed[..])));
    write_file(dir, SECRET_KEY_FILE, secret_text.as_bytes(), 0o600)?;
    write_file(dir, PUBLIC_KEY_FILE, format!("{}\n", hex::encode(key.verifying_key().as_bytes())).as_bytes(), 0o644)?;
    Ok(key)
}

/// Writes `name` in `dir` atomically and durably: a fresh temporary file
/// created with `mode` (so the secret is never readable by others, not even
/// for a moment), fsynced, renamed into place, and the directory fsynced.
fn write_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.new"));
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { action, path, source }
    };
    // A leftover from a crash may have another mode; the mode below only
    // applies to a file that is created.
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &temporary)(error)),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temporary).map_err(io("create", &temporary))?;
    file.write_all(contents).map_err(io("write", &temporary))?;
    file.sync_all().map_err(io("sync", &temporary))?;
    fs::rename(&temporary, &path).map_err(io("rename into place", &path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync the directory", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (created, fresh) = load_or_create(dir.path()).unwrap();
        assert!(fresh);
        let (loaded, fresh) = load_or_create(dir.path()).unwrap();
        assert!(!fresh);
        assert_eq!(created.to_bytes(), loaded.to_bytes());
        assert_eq!(read_public(dir.path()).unwrap(), Some(created.verifying_key()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(SECRET_KEY_FILE)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_lost_secret_key_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(SECRET_KEY_FILE)).unwrap();
        let error = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::SecretMissing { .. }), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let secret = dir.path().join(SECRET_KEY_FILE);
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::TooOpen { mode: 0o644, .. }), "{error}");
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_public_key_that_does_not_match_the_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let other = SigningKey::from_bytes(&[7; KEY_BYTES]).verifying_key();
        fs::write(dir.path().join(PUBLIC_KEY_FILE), hex::encode(other.as_bytes())).unwrap();
        let error = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, KeyError::Mismatch { .. }), "{error}");
    }

    #[test]
    fn public_keys_must_be_64_hex_digits_on_the_curve() {
        assert!(parse_public_hex("abc").unwrap_err().contains("3 characters"));
        assert!(parse_public_hex(&"zz".repeat(32)).unwrap_err().contains("not hex"));
        let key = SigningKey::from_bytes(&[1; KEY_BYTES]).verifying_key();
        assert_eq!(parse_public_hex(&hex::encode(key.as_bytes())).unwrap(), key);
    }
}
