//! The audit log on SQLite: one row per entry, ids in append order.

use async_trait::async_trait;
use keel_core::auth::Role;
use keel_core::{Error, Timestamp};
use keel_store::{Actor, AuditEntry, AuditQuery, AuditStore, NewAuditEntry};
use rusqlite::{Row, params};

use crate::SqliteStore;
use crate::rows::corrupt;
use crate::writer::Writer;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_append(&self, entry: &NewAuditEntry) -> Result<i64, Error> {
        let e = entry.clone();
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached(
                    "INSERT INTO audit (at, token_id, actor_name, role, namespace, action, \
                     target, request_id, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    e.at.as_millis(),
                    e.actor.token_id,
                    e.actor.name,
                    e.actor.role.map(Role::as_str),
                    e.namespace,
                    e.action,
                    e.target,
                    e.request_id,
                    e.summary,
                ])?;
            Ok(Ok(w.conn.last_insert_rowid()))
        })
        .await
    }

    async fn audit_settle(&self, id: i64, outcome: u16) -> Result<(), Error> {
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached("UPDATE audit SET outcome = ?2 WHERE id = ?1 AND outcome IS NULL")?
                .execute(params![id, outcome])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn audit_list(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, Error> {
        let q = query.clone();
        // Two statements, so that each walks the primary key in its order.
        let (bound, filter, order) = match q.before {
            Some(before) => (before, "id < ?1", "id DESC"),
            None => (q.after.unwrap_or(0), "id > ?1", "id"),
        };
        let sql = format!(
            "SELECT id, at, token_id, actor_name, role, namespace, action, target, \
             request_id, summary, outcome FROM audit \
             WHERE {filter} AND (?2 IS NULL OR namespace = ?2) \
               AND (?3 IS NULL OR action = ?3) \
               AND (?4 IS NULL OR token_id = ?4 OR actor_name = ?4) \
             ORDER BY {order} LIMIT ?5"
        );
        self.read(move |conn| {
            let entries = conn
                .prepare_cached(&sql)?
                .query_map(
                    params![bound, q.namespace, q.action, q.actor, q.limit],
                    entry_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(entries))
        })
        .await
    }

    async fn audit_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached(
                    "DELETE FROM audit WHERE id IN \
                     (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )?
                .execute(params![before.as_millis(), limit])?;
            Ok(Ok(gone as u64))
        })
        .await
    }
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let role: Option<String> = r.get(4)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        entry: NewAuditEntry {
            at: Timestamp::from_millis(r.get(1)?),
            actor: Actor {
                token_id: r.get(2)?,
                name: r.get(3)?,
                role: role
                    .map(|r| Role::parse(&r).map_err(|e| corrupt(e.message)))
                    .transpose()?,
            },
            namespace: r.get(5)?,
            action: r.get(6)?,
            target: r.get(7)?,
            request_id: r.get(8)?,
            summary: r.get(9)?,
        },
        outcome: r.get(10)?,
    })
}
