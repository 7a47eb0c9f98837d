//! API tokens: issued, checked on every request, listed and revoked.
//!
//! A token is `keel_<id>_<secret>`: 16 random bytes of id in hex (how the
//! store finds it) and 32 random bytes of secret in base64url. Only the
//! secret's SHA-256 is stored: the secret is long and random, so a fast hash
//! is enough, and it is compared in constant time. A node keeps a token it
//! read for at most [`CACHE_MS`], so a revocation on any node is refused on
//! every node within that time, on either store and without notifications.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use keel_core::auth::Grant;
use keel_core::{Clock, Error, ErrorCode, Timestamp};
use keel_store::{Token, TokenStore};
use subtle::ConstantTimeEq as _;

/// How long a node trusts its copy of a token.
pub const CACHE_MS: i64 = 500;
/// A token without an explicit expiry lives 90 days.
pub const DEFAULT_EXPIRY_MS: u64 = 90 * 24 * 3_600_000;
/// No token lives longer than ten years unless it never expires.
pub const MAX_EXPIRY_MS: u64 = 10 * 365 * 24 * 3_600_000;
/// `last_used_at` is written at most this often per token and node.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Past this many cached tokens the cache starts over (a bound on memory).
const CACHE_MAX: usize = 10_000;

const PREFIX: &str = "keel_";
const ID_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;

/// Who made a request: the token as this node last read it.
#[derive(Clone, Debug)]
pub struct Caller(Arc<Token>);

impl Caller {
    pub fn token_id(&self) -> &str {
        &self.0.id
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn grant(&self) -> &Grant {
        &self.0.grant
    }
}

/// When a new token expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// [`DEFAULT_EXPIRY_MS`] from now.
    Default,
    /// This long from now (1 s to [`MAX_EXPIRY_MS`]).
    In(u64),
    /// Never.
    Never,
}

/// A token just issued: what is stored and the whole token, shown once.
pub struct Issued {
    pub token: Token,
    pub secret: String,
}

/// Makes a token and stores it. Used by the API and by `keel token create`
/// straight on a store (bootstrap, before any token exists).
pub async fn issue(
    store: &dyn TokenStore,
    now: Timestamp,
    name: &str,
    grant: Grant,
    expiry: Expiry,
) -> Result<Issued, Error> {
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name must be 1 to 100 characters, none of them control characters",
        ));
    }
    grant.validate()?;
    let expires_at = match expiry {
        Expiry::Default => Some(now.plus_ms(DEFAULT_EXPIRY_MS)),
        Expiry::In(ms) if (1_000..=MAX_EXPIRY_MS).contains(&ms) => Some(now.plus_ms(ms)),
        Expiry::In(_) => {
            return Err(Error::invalid(format!(
                "expires_in_ms must be 1000 to {MAX_EXPIRY_MS}, or null for a token that never expires"
            )));
        }
        Expiry::Never => None,
    };
    let id = hex(&random::<ID_BYTES>()?);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<SECRET_BYTES>()?);
    let token = Token {
        secret_hash: sha256(&secret),
        id,
        name: name.to_owned(),
        grant,
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    store.token_insert(&token).await?;
    let secret = format!("{PREFIX}{}_{secret}", token.id);
    Ok(Issued { token, secret })
}

struct Cached {
    token: Arc<Token>,
    read_at: Timestamp,
    touched_at: Timestamp,
}

pub struct TokenService {
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Ids no token has, and when that was read: a caller sending made-up
    /// tokens costs a store read per id and [`CACHE_MS`], not per request.
    unknown: Mutex<HashMap<String, Timestamp>>,
}

impl TokenService {
    pub(crate) fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>) -> Self {
        TokenService {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    pub async fn create(&self, name: &str, grant: Grant, expiry: Expiry) -> Result<Issued, Error> {
        issue(&*self.store, self.clock.now(), name, grant, expiry).await
    }

    pub async fn list(&self) -> Result<Vec<Token>, Error> {
        self.store.tokens_list().await
    }

    /// Revokes the token: refused at once on this node, within
    /// [`CACHE_MS`] on the others.
    pub async fn revoke(&self, id: &str) -> Result<Token, Error> {
        let token = self.store.token_revoke(id, self.clock.now()).await?;
        self.cache().remove(id);
        Ok(token)
    }

    /// The caller a bearer token stands for: 401 `unauthenticated` when it
    /// is malformed, unknown, wrong, expired or revoked. The message never
    /// repeats the token.
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, Error> {
        let invalid = || unauthenticated("the token is not valid");
        let (id, secret) = split(presented).ok_or_else(invalid)?;
        let now = self.clock.now();
        let (token, touch) = match self.cached(id, now) {
            Some(found) => found,
            None => {
                if self.known_unknown(id, now) {
                    return Err(invalid());
                }
                let Some(token) = self.store.token_get(id).await? else {
                    self.remember_unknown(id, now);
                    return Err(invalid());
                };
                self.remember(Arc::new(token), now)
            }
        };
        if !bool::from(sha256(secret).ct_eq(&token.secret_hash)) {
            return Err(invalid());
        }
        if token.revoked_at.is_some() {
            return Err(unauthenticated("the token was revoked"));
        }
        if token.expires_at.is_some_and(|at| at <= now) {
            return Err(unauthenticated("the token has expired"));
        }
        if touch {
            let store = self.store.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let id = &token.id;
                if let Err(e) = store.token_touch(id, now).await {
                    tracing::warn!(error = %e.message, "recording a token's last use failed");
                }
            });
        }
        Ok(Caller(token))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached token when it is fresh, and whether its use is due to be
    /// recorded (then it is marked recorded).
    fn cached(&self, id: &str, now: Timestamp) -> Option<(Arc<Token>, bool)> {
        let mut cache = self.cache();
        let entry = cache.get_mut(id)?;
        if now.as_millis() - entry.read_at.as_millis() >= CACHE_MS {
            return None;
        }
        Some((entry.token.clone(), due(entry, now)))
    }

    fn unknown(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        self.unknown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn known_unknown(&self, id: &str, now: Timestamp) -> bool {
        self.unknown()
            .get(id)
            .is_some_and(|at| now.as_millis() - at.as_millis() < CACHE_MS)
    }

    fn remember_unknown(&self, id: &str, now: Timestamp) {
        let mut unknown = self.unknown();
        if unknown.len() >= CACHE_MAX {
            unknown.clear();
        }
        unknown.insert(id.to_owned(), now);
    }

    fn remember(&self, token: Arc<Token>, now: Timestamp) -> (Arc<Token>, bool) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        let last = cache
            .get(&token.id)
            .map(|c| c.touched_at)
            .or(token.last_used_at)
            .unwrap_or(Timestamp::from_millis(i64::MIN / 2));
        let entry = cache.entry(token.id.clone()).or_insert(Cached {
            token: token.clone(),
            read_at: now,
            touched_at: last,
        });
        entry.token = token.clone();
        entry.read_at = now;
        (token, due(entry, now))
    }
}

fn due(entry: &mut Cached, now: Timestamp) -> bool {
    if now.as_millis() - entry.touched_at.as_millis() < TOUCH_EVERY_MS {
        return false;
    }
    entry.touched_at = now;
    true
}

fn unauthenticated(message: &str) -> Error {
    Error::new(ErrorCode::Unauthenticated, message)
}

/// `keel_<32 hex>_<43 base64url>` into its id and secret, or `None`.
fn split(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_BYTES * 2)?, rest.get(ID_BYTES * 2 + 1..)?);
    let well_formed = rest.as_bytes()[ID_BYTES * 2] == b'_'
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some((id, secret))
}

fn sha256(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("no randomness for a token"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use keel_core::Limits;
    use keel_core::auth::Role;
    use keel_store::Store;
    use keel_store_sqlite::SqliteStore;

    use super::*;
    use crate::manual_clock::ManualClock;

    fn reader() -> Grant {
        Grant {
            role: Role::Reader,
            namespaces: vec!["acme".to_owned()],
            resources: None,
        }
    }

    #[tokio::test]
    async fn a_revocation_elsewhere_holds_here_within_the_cache_time() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let clock = ManualClock::at(Timestamp::from_millis(1_800_000_000_000));
        let service = TokenService::new(store.clone(), clock.clone());
        let issued = service
            .create("r", reader(), Expiry::Default)
            .await
            .unwrap();
        service.authenticate(&issued.secret).await.unwrap();
        // Another node revokes it: the store changes, this node's copy not.
        store
            .token_revoke(&issued.token.id, clock.now())
            .await
            .unwrap();
        clock.advance(CACHE_MS - 1);
        assert!(service.authenticate(&issued.secret).await.is_ok());
        clock.advance(1);
        let e = service.authenticate(&issued.secret).await.unwrap_err();
        assert_eq!(e.message, "the token was revoked");
        // Revoked here: refused at once.
        let other = service
            .create("o", reader(), Expiry::Default)
            .await
            .unwrap();
        service.authenticate(&other.secret).await.unwrap();
        service.revoke(&other.token.id).await.unwrap();
        assert!(service.authenticate(&other.secret).await.is_err());
    }

    #[tokio::test]
    async fn expiry_is_checked_on_every_request_and_unknown_ids_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let clock = ManualClock::at(Timestamp::from_millis(1_800_000_000_000));
        let service = TokenService::new(store.clone(), clock.clone());
        let short = service
            .create("s", reader(), Expiry::In(1_000))
            .await
            .unwrap();
        service.authenticate(&short.secret).await.unwrap();
        clock.advance(1_000);
        let e = service.authenticate(&short.secret).await.unwrap_err();
        assert_eq!(e.message, "the token has expired");
        assert!(
            service
                .create("x", reader(), Expiry::In(999))
                .await
                .is_err()
        );
        // An id no token has is not read again within the cache time: a
        // token stored under it meanwhile is found only after.
        let mut token = short.token.clone();
        token.id = "0123456789abcdef0123456789abcdef".to_owned();
        token.expires_at = None;
        let secret = format!(
            "keel_{}_{}",
            token.id,
            &short.secret[short.secret.len() - 43..]
        );
        assert!(service.authenticate(&secret).await.is_err());
        store.token_insert(&token).await.unwrap();
        assert!(service.authenticate(&secret).await.is_err());
        clock.advance(CACHE_MS);
        assert!(service.authenticate(&secret).await.is_ok());
    }

    #[test]
    fn only_the_token_shape_splits() {
        let id = "0123456789abcdef0123456789abcdef";
        let secret = "A".repeat(43);
        let good = format!("keel_{id}_{secret}");
        assert_eq!(split(&good), Some((id, secret.as_str())));
        for bad in [
            String::new(),
            "keel_".to_owned(),
            format!("kel_{id}_{secret}"),
            format!("keel_{}_{secret}", id.to_uppercase()),
            format!("keel_{id}-{secret}"),
            format!("keel_{id}_{secret}A"),
            format!("keel_{id}_{}", "A".repeat(42)),
            format!("keel_{id}_{}", "+".repeat(43)),
            format!("keel_é{}_{secret}", &id[1..]),
        ] {
            assert_eq!(split(&bad), None, "{bad}");
        }
    }
}
