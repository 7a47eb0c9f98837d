//! Handlers and per-entity state: handlers' immutable versions and their
//! secrets; objects' key-value state, read and written from outside
//! (atomic batches, versions for `If-Match`) and by handlers, whose writes
//! commit in the same transaction as the job's completion
//! ([`HandlerStore::handler_commits`]): an attempt that fails, times out or
//! lost its lease leaves nothing behind.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::handler::state::{StateEntry, StateOp, StateQuery};
use keel_core::handler::{HandlerVersion, NewVersion, ObjectRef};
use keel_core::{Error, ErrorCode, HandlerName, LeaseToken, Namespace, Timestamp};
use serde_json::value::RawValue;

use crate::{Acked, OwnedJob};

/// A handler as listed: its current version's facts, no code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerSummary {
    pub name: HandlerName,
    pub version: u32,
    pub kind: keel_core::handler::HandlerKind,
    pub hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A successful attempt of a handler's job, committed as one: the job
/// completes with `result`, the object's state takes `writes`, and the
/// jobs in `effects` (the attempt's publishes and enqueues, carried out
/// after the commit) are created. All of it, or none when the lease is
/// no longer the token's.
#[derive(Clone, Debug)]
pub struct HandlerCommit {
    pub token: LeaseToken,
    pub result: Option<Box<RawValue>>,
    pub object: Option<ObjectRef>,
    pub writes: Vec<StateOp>,
    pub effects: Vec<OwnedJob>,
}

#[async_trait]
pub trait HandlerStore: Send + Sync {
    /// Stores `version` as the handler's next version, unless its hash is
    /// the current version's: then the current one, and false.
    async fn handler_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        version: NewVersion,
        now: Timestamp,
    ) -> Result<(HandlerVersion, bool), Error>;

    /// The current version, or the one named (404 when unknown).
    async fn handler_get(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        version: Option<u32>,
    ) -> Result<HandlerVersion, Error>;

    async fn handlers_list(&self, namespace: &Namespace) -> Result<Vec<HandlerSummary>, Error>;

    /// Deletes the handler, its versions and its secrets.
    async fn handler_delete(&self, namespace: &Namespace, name: &HandlerName) -> Result<(), Error>;

    /// Replaces the handler's secrets (404 for an unknown handler).
    async fn handler_secrets_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        secrets: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<(), Error>;

    async fn handler_secrets(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
    ) -> Result<BTreeMap<String, String>, Error>;

    /// The entries of `keys` that exist, in key order.
    async fn state_get(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        keys: &[String],
    ) -> Result<Vec<StateEntry>, Error>;

    /// Entries in key order within the query's range, at most its limit.
    async fn state_list(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        query: &StateQuery,
    ) -> Result<Vec<StateEntry>, Error>;

    /// Applies the operations atomically (checked: [`keel_core::handler::state::check_batch`]):
    /// 412 when an `if_version` is not the key's, 507 when the object
    /// would pass its bound; answers each key's new version (0: deleted).
    async fn state_write(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        ops: Vec<StateOp>,
        now: Timestamp,
    ) -> Result<Vec<u64>, Error>;

    /// Successful attempts, in one transaction, each all or nothing: its
    /// answer is its job as acked, or why nothing of it was written (409
    /// `lease_lost` for a stale token; 412 and 507 as
    /// [`Self::state_write`]) while the others were. One commit for many
    /// attempts: on PostgreSQL each commit waits for a WAL flush. An
    /// `Err` of the whole call wrote nothing.
    async fn handler_commits(
        &self,
        namespace: &Namespace,
        commits: Vec<HandlerCommit>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error>;
}

pub fn handler_not_found(name: &HandlerName) -> Error {
    Error::new(ErrorCode::NotFound, format!("handler {name} not found"))
}

/// The writes of a batch folded over the object's current entries: the
/// size it would hold, checked against the bound, and each key's outcome.
/// Both backends decide with this, then write what it answers.
pub fn plan_writes(
    object: &ObjectRef,
    held_bytes: u64,
    current: &BTreeMap<String, StateEntry>,
    ops: &[StateOp],
    next_version: u64,
) -> Result<(u64, Vec<u64>), Error> {
    use keel_core::handler::state::{MAX_OBJECT_BYTES, entry_bytes, object_full, version_mismatch};
    let mut sizes: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    let mut versions: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    let mut held = held_bytes;
    let mut answers = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let key = op.key.as_str();
        let before_version = *versions
            .entry(key)
            .or_insert_with(|| current.get(key).map(|e| e.version));
        if let Some(wanted) = op.if_version
            && before_version.unwrap_or(0) != wanted
        {
            return Err(version_mismatch(key, wanted, before_version));
        }
        let before_size = *sizes
            .entry(key)
            .or_insert_with(|| current.get(key).map(|e| entry_bytes(key, &e.value)));
        held -= before_size.unwrap_or(0).min(held);
        let after_size = op.value.as_ref().map(|v| entry_bytes(key, v));
        held += after_size.unwrap_or(0);
        let version = op.value.as_ref().map(|_| next_version + i as u64);
        sizes.insert(key, after_size);
        versions.insert(key, version);
        answers.push(version.unwrap_or(0));
    }
    if held > MAX_OBJECT_BYTES && held > held_bytes {
        return Err(object_full(object, held));
    }
    Ok((held, answers))
}
