//! Objects' state from outside (the API): one key read, written or
//! deleted with `If-Match`, atomic batches, pages in key order.

use keel_core::handler::state::{self, MAX_LIST, ObjectRef, StateEntry, StateOp, StateQuery};
use keel_core::{Error, ErrorCode, Namespace};
use serde_json::value::RawValue;

use super::HandlerService;

/// A page of entries and the cursor of the next (none at the end).
pub struct StatePage {
    pub entries: Vec<StateEntry>,
    pub next_cursor: Option<String>,
}

fn not_found(object: &ObjectRef, key: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!(
            "object {}/{} has no state key {key:?}",
            object.kind, object.key
        ),
    )
}

impl HandlerService {
    pub async fn state_get(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        key: &str,
    ) -> Result<StateEntry, Error> {
        object.check()?;
        state::check_key(key)?;
        self.store
            .state_get(namespace, object, &[key.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| not_found(object, key))
    }

    /// Puts one key (only at `if_match`, when given; 0: only if absent):
    /// its new version.
    pub async fn state_put(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        key: &str,
        value: Box<RawValue>,
        if_match: Option<u64>,
    ) -> Result<u64, Error> {
        let versions = self
            .state_batch(
                namespace,
                object,
                vec![StateOp {
                    key: key.to_owned(),
                    value: Some(value),
                    if_version: if_match,
                }],
            )
            .await?;
        Ok(versions.first().copied().unwrap_or_default())
    }

    /// Deletes one key (404 when absent; 412 when not at `if_match`).
    pub async fn state_delete(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        key: &str,
        if_match: Option<u64>,
    ) -> Result<(), Error> {
        let current = self.state_get(namespace, object, key).await?;
        let op = StateOp {
            key: key.to_owned(),
            value: None,
            if_version: Some(if_match.unwrap_or(current.version)),
        };
        self.state_batch(namespace, object, vec![op])
            .await
            .map(|_| ())
    }

    /// Up to 100 puts and deletes, all or none: each key's new version
    /// (0 for a delete).
    pub async fn state_batch(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        ops: Vec<StateOp>,
    ) -> Result<Vec<u64>, Error> {
        object.check()?;
        if ops.is_empty() {
            return Err(Error::invalid("a batch needs at least one operation"));
        }
        state::check_batch(&ops)?;
        self.store
            .state_write(namespace, object, ops, self.clock.now())
            .await
    }

    pub async fn state_list(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        query: StateQuery,
    ) -> Result<StatePage, Error> {
        object.check()?;
        if query.limit == 0 || query.limit > MAX_LIST {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_LIST}"
            )));
        }
        if query.prefix.is_some() && (query.start.is_some() || query.end.is_some()) {
            return Err(Error::invalid("give prefix or start/end, not both"));
        }
        let limit = query.limit;
        let entries = self.store.state_list(namespace, object, &query).await?;
        let next_cursor = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.key.clone()))
            .flatten();
        Ok(StatePage {
            entries,
            next_cursor,
        })
    }
}
