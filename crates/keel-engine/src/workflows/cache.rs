//! What the driver keeps in memory: parsed definitions (they never change),
//! and, on a store with no other writer, the latest version of each workflow
//! and the journals of running runs, so that advancing a run reads nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError};

use keel_core::workflow::{Definition, RunId};
use keel_core::{Error, Namespace};
use keel_store::StoredRun;
use serde_json::Value;

use super::Driver;

/// Definitions kept parsed; they never change, so the cache is only bounded.
const CACHED_DEFINITIONS: usize = 1024;
/// Journals of running runs kept in memory (see [`Driver::recall`]).
const CACHED_JOURNALS: usize = 50_000;

impl Driver {
    /// A version of a workflow, parsed (latest when `version` is `None`).
    pub async fn definition(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<(u32, Arc<Definition>), Error> {
        let version = version.or_else(|| self.latest_known(namespace, name));
        if let Some(v) = version
            && let Some(def) = self.cached(namespace, name, v)
        {
            return Ok((v, def));
        }
        let stored = self
            .definitions_store
            .workflow_get(namespace, name, version)
            .await?;
        self.saw_version(namespace, name, stored.version);
        if let Some(def) = self.cached(namespace, name, stored.version) {
            return Ok((stored.version, def));
        }
        let value: Value = serde_json::from_str(&stored.definition)
            .map_err(|e| Error::internal(format!("stored definition is not JSON: {e}")))?;
        let def = Arc::new(Definition::from_value(&value).map_err(|problems| {
            Error::internal(format!(
                "stored definition of {name:?} v{} no longer validates: {}",
                stored.version,
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))
        })?);
        let mut cache = self
            .definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_DEFINITIONS {
            cache.clear();
        }
        cache.insert(
            (namespace.clone(), name.to_owned(), stored.version),
            def.clone(),
        );
        Ok((stored.version, def))
    }

    /// Stores a definition (canonical JSON); `true` when it is a new version.
    pub async fn put_definition(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
    ) -> Result<(u32, bool), Error> {
        let (version, created) = self
            .definitions_store
            .workflow_put(namespace, name, definition, self.clock.now())
            .await?;
        self.saw_version(namespace, name, version);
        Ok((version, created))
    }

    /// The latest version of a workflow, when this node knows it for sure:
    /// on a store with no other writer, every version goes through here.
    pub(super) fn latest_known(&self, namespace: &Namespace, name: &str) -> Option<u32> {
        if !self.sole_writer {
            return None;
        }
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.clone(), name.to_owned()))
            .copied()
    }

    pub(super) fn saw_version(&self, namespace: &Namespace, name: &str, version: u32) {
        if !self.sole_writer {
            return;
        }
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.len() >= CACHED_DEFINITIONS {
            latest.clear();
        }
        let known = latest
            .entry((namespace.clone(), name.to_owned()))
            .or_default();
        *known = (*known).max(version);
    }

    pub(super) fn cached(
        &self,
        namespace: &Namespace,
        name: &str,
        version: u32,
    ) -> Option<Arc<Definition>> {
        self.definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.clone(), name.to_owned(), version))
            .cloned()
    }

    /// The last journal this node stored for `run`, when the store has no
    /// other writer (so it is still what is stored).
    pub(super) fn recall(&self, run: RunId) -> Option<Arc<StoredRun>> {
        if !self.sole_writer {
            return None;
        }
        self.journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .runs
            .get(&run)
            .map(|(run, _)| run.clone())
    }

    pub(super) fn remember(&self, run: &Arc<StoredRun>) {
        if !self.sole_writer {
            return;
        }
        let mut journals = self.journals.lock().unwrap_or_else(PoisonError::into_inner);
        if run.state.status.is_final() {
            journals.runs.remove(&run.id);
        } else {
            journals.keep(run.clone());
        }
    }

    pub(super) fn forget(&self, run: RunId) {
        self.journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .runs
            .remove(&run);
    }
}

/// The journals kept in memory, the least recently stored dropped first.
#[derive(Default)]
pub(super) struct Journals {
    /// Each with the number of the write that stored it.
    runs: HashMap<RunId, (Arc<StoredRun>, u64)>,
    /// Writes in order; an entry whose number is no longer its run's is stale.
    order: VecDeque<(RunId, u64)>,
    writes: u64,
}

impl Journals {
    fn keep(&mut self, run: Arc<StoredRun>) {
        self.writes += 1;
        self.order.push_back((run.id, self.writes));
        self.runs.insert(run.id, (run, self.writes));
        while self.runs.len() > CACHED_JOURNALS || self.order.len() > 2 * CACHED_JOURNALS {
            let Some((id, write)) = self.order.pop_front() else {
                break;
            };
            if self.runs.get(&id).is_some_and(|(_, w)| *w == write) {
                self.runs.remove(&id);
            }
        }
    }
}
