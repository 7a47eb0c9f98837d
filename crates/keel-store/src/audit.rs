//! The audit domain: who changed what, appended before each change an
//! operator or admin makes through the API and settled with its outcome
//! after it. Nothing in the API edits or deletes an entry; retention
//! prunes the oldest.

use async_trait::async_trait;
use keel_core::auth::Role;
use keel_core::{Error, Timestamp};

/// Who made a change: a token, or nobody known when tokens are off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub token_id: Option<String>,
    pub name: String,
    pub role: Option<Role>,
}

/// An entry as the server appends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: Timestamp,
    pub actor: Actor,
    /// `None` for what spans every namespace (tokens).
    pub namespace: Option<String>,
    /// `queue.put`, `job.cancel`, `token.create`, ...
    pub action: String,
    /// The resource's name or id; empty when the change makes it.
    pub target: String,
    pub request_id: String,
    /// A JSON object: the method and path, the body's SHA-256.
    pub summary: String,
}

/// An entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing in append order.
    pub id: i64,
    pub entry: NewAuditEntry,
    /// The answer's status; `None` while the change is under way (and for
    /// good if the server died during it: the change may or may not have
    /// happened).
    pub outcome: Option<u16>,
}

/// Which entries `audit_list` returns, oldest first (newest first with
/// `before`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub namespace: Option<String>,
    pub action: Option<String>,
    /// A token id or a token's name.
    pub actor: Option<String>,
    /// Entries with a larger id.
    pub after: Option<i64>,
    /// Entries with a smaller id, newest first (`i64::MAX` from the newest).
    pub before: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry (durable before the change it records begins); its id.
    async fn audit_append(&self, entry: &NewAuditEntry) -> Result<i64, Error>;

    /// Records the outcome of the change an entry announced.
    async fn audit_settle(&self, id: i64, outcome: u16) -> Result<(), Error>;

    async fn audit_list(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error>;

    /// Deletes up to `limit` entries older than `before`; how many.
    async fn audit_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error>;
}
