//! The settings a notification is resolved against (channels, the
//! recipient, the template, preferences), read through a per-node copy:
//! accepting one reads five of them, and they change rarely. A change made
//! on this node drops its copy at once; with other writers (nodes on
//! PostgreSQL) a copy is trusted for at most `TRUST` (as tokens are), so a
//! change made elsewhere reaches every node within half a second. "Not
//! there" is kept too: most recipients have no preferences of their own.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_core::{Error, Namespace};
use keel_store::{Setting, StoredSetting};

use super::NotificationService;

/// How long a copy is trusted when another node may change the setting.
const TRUST: Duration = Duration::from_millis(500);
/// Copies kept before all are dropped (a bound, not a working set).
const MAX_COPIES: usize = 10_000;

type Key = (Namespace, Setting, String);

/// This node's copies, with when each was read; and how many changes this
/// node made, so that a read that raced a change here is not kept (it may
/// have read what the change replaced).
#[derive(Default)]
pub(super) struct Copies(Mutex<Kept>);

#[derive(Default)]
pub(super) struct Kept {
    copies: HashMap<Key, (Option<StoredSetting>, Instant)>,
    changes: u64,
}

impl NotificationService {
    /// A setting, from this node's copy when it may be trusted.
    pub(super) async fn setting(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Option<StoredSetting>, Error> {
        let key = (namespace.clone(), kind, name.to_owned());
        let changes = {
            let kept = self.copies.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((copy, read)) = kept.copies.get(&key)
                && (self.sole_writer || read.elapsed() < TRUST)
            {
                return Ok(copy.clone());
            }
            kept.changes
        };
        let read = Instant::now();
        let stored = self.store.setting_get(namespace, kind, name).await?;
        let mut kept = self.copies.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.changes == changes {
            if kept.copies.len() >= MAX_COPIES {
                kept.copies.clear();
            }
            kept.copies.insert(key, (stored.clone(), read));
        }
        Ok(stored)
    }

    /// Drops this node's copies of `name` of these kinds (it changed here).
    pub(super) fn forget(&self, namespace: &Namespace, kinds: &[Setting], name: &str) {
        let mut kept = self.copies.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.changes += 1;
        for kind in kinds {
            kept.copies
                .remove(&(namespace.clone(), *kind, name.to_owned()));
        }
    }
}
