//! The keys that seal connections' secrets at rest: AES-256-GCM (ring),
//! a fresh random nonce per value, and the value's place in the store
//! ([`SealedRef::context`]) as the additional data, so a ciphertext copied
//! to another row or field does not open. A sealed value reads
//! `k{id}:{base64(nonce ‖ ciphertext ‖ tag)}`: the key id says which key
//! opens it, so a rotation can re-seal everything while old values still
//! open.
//!
//! The keys live in a file (`--keys-file`; the embedded store's
//! `keys.json` beside its data), JSON `{"active": 2, "keys": {"1": "…",
//! "2": "…"}}` with base64 keys, written with mode 0600 and replaced
//! atomically. A node that meets a key id it does not hold reads the file
//! again: one node's rotation reaches the others that share the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keel_core::{Error, ErrorCode};
use keel_store::SealedRef;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

const KEY_LEN: usize = 32;

pub struct Keyring {
    path: Option<PathBuf>,
    keys: RwLock<Keys>,
    random: SystemRandom,
}

/// The keys as the file holds them.
#[derive(Clone, Serialize, Deserialize)]
struct KeyFile {
    active: u32,
    keys: BTreeMap<u32, String>,
}

struct Keys {
    active: u32,
    keys: BTreeMap<u32, LessSafeKey>,
    file: KeyFile,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("active", &keys.active)
            .field("ids", &keys.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Opens the keys file, or makes one with a new key when there is none
    /// (true when made).
    pub fn open(path: &Path) -> Result<(Keyring, bool), Error> {
        let random = SystemRandom::new();
        let (file, made) = match std::fs::read(path) {
            Ok(bytes) => (read_file(path, &bytes)?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = KeyFile {
                    active: 1,
                    keys: BTreeMap::from([(1, STANDARD.encode(new_key(&random)?))]),
                };
                write_file(path, &file)?;
                (file, true)
            }
            Err(e) => return Err(fault(format!("cannot read {}: {e}", path.display()))),
        };
        let keyring = Keyring {
            path: Some(path.to_owned()),
            keys: RwLock::new(Keys::from_file(file)?),
            random,
        };
        Ok((keyring, made))
    }

    /// A keyring of one random key kept in memory only (tests, and `keel
    /// test`'s engines).
    pub fn ephemeral() -> Result<Keyring, Error> {
        let random = SystemRandom::new();
        let file = KeyFile {
            active: 1,
            keys: BTreeMap::from([(1, STANDARD.encode(new_key(&random)?))]),
        };
        Ok(Keyring {
            path: None,
            keys: RwLock::new(Keys::from_file(file)?),
            random,
        })
    }

    /// The id of the key new values are sealed with.
    pub fn active(&self) -> u32 {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .active
    }

    pub fn seal(&self, at: &SealedRef, plain: &str) -> Result<String, Error> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .keys
            .get(&keys.active)
            .ok_or_else(|| fault(format!("the active key {} is not in the file", keys.active)))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| fault("no randomness for a nonce".into()))?;
        let mut sealed = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(at.context().as_bytes()),
            &mut sealed,
        )
        .map_err(|_| fault("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("k{}:{}", keys.active, STANDARD.encode(out)))
    }

    pub fn open_value(&self, at: &SealedRef, sealed: &str) -> Result<String, Error> {
        let (id, body) = sealed
            .strip_prefix('k')
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(id, body)| Some((id.parse::<u32>().ok()?, body)))
            .ok_or_else(|| fault(format!("a sealed value at {} is malformed", at.context())))?;
        let known = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .contains_key(&id);
        if !known {
            self.reload()?;
        }
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let key = keys.keys.get(&id).ok_or_else(|| {
            fault(format!(
                "a value at {} is sealed with key {id}, which this node's keys file lacks: \
                 every node of one database needs the same --keys-file",
                at.context()
            ))
        })?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| fault(format!("a sealed value at {} is malformed", at.context())))?;
        if bytes.len() < NONCE_LEN {
            return Err(fault(format!("a sealed value at {} is cut", at.context())));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| fault("a sealed value's nonce is malformed".into()))?;
        let mut rest = rest.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(at.context().as_bytes()), &mut rest)
            .map_err(|_| {
                fault(format!(
                    "the value at {} does not open with key {id}: it was changed, moved from \
                     another row, or sealed with another key of that id",
                    at.context()
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| fault(format!("the value at {} is not text", at.context())))
    }

    /// Adds a new key, makes it the active one and writes the file; its id.
    /// Values sealed before still open with their keys, which stay.
    pub fn rotate(&self) -> Result<u32, Error> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let id = keys.keys.keys().max().copied().unwrap_or(0) + 1;
        let mut file = keys.file.clone();
        file.keys
            .insert(id, STANDARD.encode(new_key(&self.random)?));
        file.active = id;
        if let Some(path) = &self.path {
            write_file(path, &file)?;
        }
        *keys = Keys::from_file(file)?;
        Ok(id)
    }

    /// Reads the file again (another node may have rotated).
    fn reload(&self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = std::fs::read(path)
            .map_err(|e| fault(format!("cannot read {}: {e}", path.display())))?;
        let fresh = Keys::from_file(read_file(path, &bytes)?)?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl Keys {
    fn from_file(file: KeyFile) -> Result<Keys, Error> {
        let mut keys = BTreeMap::new();
        for (id, text) in &file.keys {
            let bytes = STANDARD
                .decode(text)
                .map_err(|_| fault(format!("key {id} is not base64")))?;
            if bytes.len() != KEY_LEN {
                return Err(fault(format!("key {id} is not {KEY_LEN} bytes")));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| fault(format!("key {id} is not an AES-256 key")))?;
            keys.insert(*id, LessSafeKey::new(key));
        }
        if !keys.contains_key(&file.active) {
            return Err(fault(format!(
                "the active key {} is not in the file",
                file.active
            )));
        }
        Ok(Keys {
            active: file.active,
            keys,
            file,
        })
    }
}

fn new_key(random: &SystemRandom) -> Result<[u8; KEY_LEN], Error> {
    let mut key = [0u8; KEY_LEN];
    random
        .fill(&mut key)
        .map_err(|_| fault("no randomness for a key".into()))?;
    Ok(key)
}

fn read_file(path: &Path, bytes: &[u8]) -> Result<KeyFile, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        fault(format!(
            "the keys file {} does not read: {e}",
            path.display()
        ))
    })
}

/// Writes the file whole, readable by its owner only, and replaces the old
/// one atomically once it is on disk.
fn write_file(path: &Path, file: &KeyFile) -> Result<(), Error> {
    let io = |e: std::io::Error| fault(format!("cannot write {}: {e}", path.display()));
    let text = serde_json::to_vec_pretty(file).map_err(|e| fault(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp).map_err(io)?;
    out.write_all(&text).map_err(io)?;
    out.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

fn fault(message: String) -> Error {
    Error::new(ErrorCode::Internal, format!("keys: {message}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use keel_core::{ConnectionName, IntegrationName, Namespace};

    use super::*;

    fn access(connection: &str) -> SealedRef {
        SealedRef::AccessToken {
            namespace: Namespace::new("default").unwrap(),
            integration: IntegrationName::new("gh").unwrap(),
            connection: ConnectionName::new(connection).unwrap(),
        }
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let keys = Keyring::ephemeral().unwrap();
        let sealed = keys.seal(&access("u1"), "gho_secret").unwrap();
        assert!(sealed.starts_with("k1:"));
        assert!(!sealed.contains("gho_secret"));
        assert_eq!(
            keys.open_value(&access("u1"), &sealed).unwrap(),
            "gho_secret"
        );
        // Moved to another row: it does not open.
        let moved = keys.open_value(&access("u2"), &sealed).unwrap_err();
        assert!(moved.message.contains("does not open"), "{}", moved.message);
        // Two seals of one value differ (fresh nonces).
        assert_ne!(keys.seal(&access("u1"), "gho_secret").unwrap(), sealed);
        // A flipped byte does not open.
        let mut bytes = STANDARD.decode(&sealed[3..]).unwrap();
        bytes[NONCE_LEN] ^= 1;
        let tampered = format!("k1:{}", STANDARD.encode(bytes));
        assert!(keys.open_value(&access("u1"), &tampered).is_err());
    }

    #[test]
    fn a_rotation_keeps_old_values_open_and_reaches_a_node_sharing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (first, made) = Keyring::open(&path).unwrap();
        assert!(made);
        let (second, made) = Keyring::open(&path).unwrap();
        assert!(!made);
        let old = first.seal(&access("u"), "t1").unwrap();
        assert_eq!(first.rotate().unwrap(), 2);
        let new = first.seal(&access("u"), "t2").unwrap();
        assert!(new.starts_with("k2:"));
        assert_eq!(first.open_value(&access("u"), &old).unwrap(), "t1");
        // The other node reads the file again when it meets key 2.
        assert_eq!(second.open_value(&access("u"), &new).unwrap(), "t2");
        assert_eq!(second.active(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another node's key of the same id does not open it.
        let stranger = Keyring::ephemeral().unwrap();
        assert!(stranger.open_value(&access("u"), &old).is_err());
    }
}
