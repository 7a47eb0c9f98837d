//! The tokens domain: API tokens as stored. The secret itself is never
//! stored, only its SHA-256 (the engine makes and checks it); a token is
//! found by its id, which is part of the token a client sends.

use async_trait::async_trait;
use keel_core::auth::Grant;
use keel_core::{Error, ErrorCode, Timestamp};

/// A token as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// 32 lowercase hex digits.
    pub id: String,
    pub name: String,
    pub grant: Grant,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    pub created_at: Timestamp,
    /// `None`: never expires (an admin asked for it).
    pub expires_at: Option<Timestamp>,
    /// Written at most about once a minute per token (not on every request).
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// 404 for a token.
pub fn token_not_found(id: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("token {id:?} not found"))
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token (its id is fresh and random).
    async fn token_insert(&self, token: &Token) -> Result<(), Error>;

    /// The token with this id, revoked or expired ones included.
    async fn token_get(&self, id: &str) -> Result<Option<Token>, Error>;

    /// Every token, newest first.
    async fn tokens_list(&self) -> Result<Vec<Token>, Error>;

    /// Marks a token revoked at `now` (a second revoke keeps the first
    /// time) and returns it; 404 when absent.
    async fn token_revoke(&self, id: &str, now: Timestamp) -> Result<Token, Error>;

    /// Records a use at `now` (never moves `last_used_at` back).
    async fn token_touch(&self, id: &str, now: Timestamp) -> Result<(), Error>;
}
