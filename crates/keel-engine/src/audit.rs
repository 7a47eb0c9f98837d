//! The audit log: every change an operator makes is recorded before it is
//! made (an entry that cannot be written refuses the change), settled with
//! its outcome after, and read newest first (retention prunes it).

use std::sync::Arc;

use keel_core::Error;
use keel_store::{AuditEntry, AuditQuery, AuditStore, NewAuditEntry};

/// An entry written before its change, to be settled with the outcome.
#[derive(Clone, Copy, Debug)]
pub struct Pending(i64);

pub struct AuditService {
    store: Arc<dyn AuditStore>,
}

impl AuditService {
    pub(crate) fn new(store: Arc<dyn AuditStore>) -> Self {
        AuditService { store }
    }

    /// Records a change about to be made.
    pub async fn begin(&self, entry: &NewAuditEntry) -> Result<Pending, Error> {
        self.store.audit_append(entry).await.map(Pending)
    }

    /// Records the status the change answered with.
    pub async fn settle(&self, entry: Pending, status: u16) -> Result<(), Error> {
        self.store.audit_settle(entry.0, status).await
    }

    pub async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        self.store.audit_list(query).await
    }
}
