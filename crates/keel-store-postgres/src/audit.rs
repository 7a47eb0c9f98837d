//! The audit log on PostgreSQL: one row per entry, ids from a sequence.

use async_trait::async_trait;
use keel_core::auth::Role;
use keel_core::{Error, Timestamp};
use keel_store::{Actor, AuditEntry, AuditQuery, AuditStore, NewAuditEntry};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit_append(&self, e: &NewAuditEntry) -> Result<i64, Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/audit/audit_append.sql"),
                &[
                    &e.at.as_millis(),
                    &e.actor.token_id,
                    &e.actor.name,
                    &e.actor.role.map(Role::as_str),
                    &e.namespace,
                    &e.action,
                    &e.target,
                    &e.request_id,
                    &e.summary,
                ],
            )
            .await
            .map_err(db)?;
        Ok(row.get(0))
    }

    async fn audit_settle(&self, id: i64, outcome: u16) -> Result<(), Error> {
        self.client()
            .await?
            .execute(
                include_str!("../queries/audit/audit_settle.sql"),
                &[&id, &i32::from(outcome)],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        let (sql, bound) = match q.before {
            Some(before) => (
                include_str!("../queries/audit/audit_list_newest.sql"),
                before,
            ),
            None => (
                include_str!("../queries/audit/audit_list.sql"),
                q.after.unwrap_or(0),
            ),
        };
        self.client()
            .await?
            .query(
                sql,
                &[
                    &bound,
                    &q.namespace,
                    &q.action,
                    &q.actor,
                    &i64::from(q.limit),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    async fn audit_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error> {
        self.client()
            .await?
            .execute(
                include_str!("../queries/audit/audit_prune.sql"),
                &[&before.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)
    }
}

fn entry_from_row(r: &Row) -> Result<AuditEntry, Error> {
    let role: Option<&str> = r.get(4);
    let outcome: Option<i32> = r.get(10);
    Ok(AuditEntry {
        id: r.get(0),
        entry: NewAuditEntry {
            at: Timestamp::from_millis(r.get(1)),
            actor: Actor {
                token_id: r.get(2),
                name: r.get(3),
                role: role
                    .map(Role::parse)
                    .transpose()
                    .map_err(|e| Error::internal(format!("corrupt audit role: {}", e.message)))?,
            },
            namespace: r.get(5),
            action: r.get(6),
            target: r.get(7),
            request_id: r.get(8),
            summary: r.get(9),
        },
        outcome: outcome.and_then(|o| u16::try_from(o).ok()),
    })
}
