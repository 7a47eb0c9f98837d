//! Handlers and per-entity state on SQLite. A handler's commit runs in the
//! writer like an ack: the lease is checked and the state's versions and
//! bounds decided before anything is written, then the state, the job's
//! completion and the effects' jobs go into the same group commit.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::handler::state::{StateEntry, StateOp, StateQuery};
use keel_core::handler::{HandlerKind, HandlerVersion, NewVersion, ObjectRef};
use keel_core::{Error, HandlerName, Namespace, Timestamp};
use keel_store::{
    Ack, AckOutcome, Acked, HandlerCommit, HandlerStore, HandlerSummary, handler_not_found,
    plan_writes,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::value::RawValue;

use crate::SqliteStore;
use crate::rows::{corrupt, from_json, to_json};
use crate::writer::{Applied, Writer};

const VERSION_COLUMNS: &str =
    "namespace, name, version, kind, hash, source, artifact, settings, created_at";

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<HandlerVersion> {
    let text = |i: usize| r.get::<_, String>(i);
    Ok(HandlerVersion {
        namespace: Namespace::new(&text(0)?).map_err(|e| corrupt(e.message))?,
        name: HandlerName::new(&text(1)?).map_err(|e| corrupt(e.message))?,
        version: r.get(2)?,
        kind: HandlerKind::parse(&text(3)?).map_err(|e| corrupt(e.message))?,
        hash: text(4)?,
        source: r.get(5)?,
        artifact: r.get(6)?,
        settings: from_json(&text(7)?)?,
        created_at: Timestamp::from_millis(r.get(8)?),
    })
}

fn version_row(
    conn: &Connection,
    ns: &str,
    name: &str,
    version: Option<u32>,
) -> rusqlite::Result<Option<HandlerVersion>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM handler_versions WHERE namespace = ?1 AND name = ?2 \
         AND version = coalesce(?3, (SELECT version FROM handlers WHERE namespace = ?1 AND name = ?2))"
    );
    conn.prepare_cached(&sql)?
        .query_row(params![ns, name, version], version_from_row)
        .optional()
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<StateEntry> {
    let value: String = r.get(1)?;
    Ok(StateEntry {
        key: r.get(0)?,
        value: RawValue::from_string(value).map_err(|e| corrupt(e.to_string()))?,
        version: r.get::<_, i64>(2)? as u64,
    })
}

fn entries(
    conn: &Connection,
    ns: &str,
    object: &ObjectRef,
    keys: &[String],
) -> rusqlite::Result<Vec<StateEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, value, version FROM object_state \
         WHERE namespace = ?1 AND type = ?2 AND object = ?3 AND key = ?4",
    )?;
    let mut out = Vec::new();
    for key in keys {
        if let Some(e) = stmt
            .query_row(params![ns, object.kind, object.key, key], entry_from_row)
            .optional()?
        {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    Ok(out)
}

/// What a batch of writes will do, decided before anything is written.
struct Planned {
    bytes: u64,
    seq: u64,
    versions: Vec<u64>,
}

fn plan(conn: &Connection, ns: &str, object: &ObjectRef, ops: &[StateOp]) -> Applied<Planned> {
    let (bytes, seq) = conn
        .prepare_cached(
            "SELECT bytes, seq FROM objects WHERE namespace = ?1 AND type = ?2 AND key = ?3",
        )?
        .query_row(params![ns, object.kind, object.key], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()?
        .unwrap_or((0, 0));
    let keys: Vec<String> = ops.iter().map(|o| o.key.clone()).collect();
    let current: BTreeMap<String, StateEntry> = entries(conn, ns, object, &keys)?
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    Ok(
        plan_writes(object, bytes, &current, ops, seq + 1).map(|(bytes, versions)| Planned {
            bytes,
            seq: seq + ops.len() as u64,
            versions,
        }),
    )
}

fn apply(
    conn: &Connection,
    ns: &str,
    object: &ObjectRef,
    ops: &[StateOp],
    planned: &Planned,
    now: Timestamp,
) -> rusqlite::Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut put = conn.prepare_cached(
        "INSERT INTO object_state (namespace, type, object, key, value, version, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO UPDATE \
         SET value = excluded.value, version = excluded.version, updated_at = excluded.updated_at",
    )?;
    let mut delete = conn.prepare_cached(
        "DELETE FROM object_state WHERE namespace = ?1 AND type = ?2 AND object = ?3 AND key = ?4",
    )?;
    for (op, version) in ops.iter().zip(&planned.versions) {
        match &op.value {
            Some(v) => put.execute(params![
                ns,
                object.kind,
                object.key,
                op.key,
                v.get(),
                *version as i64,
                now.as_millis()
            ])?,
            None => delete.execute(params![ns, object.kind, object.key, op.key])?,
        };
    }
    conn.prepare_cached(
        "INSERT INTO objects (namespace, type, key, bytes, seq) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT DO UPDATE SET bytes = excluded.bytes, seq = excluded.seq",
    )?
    .execute(params![
        ns,
        object.kind,
        object.key,
        planned.bytes as i64,
        planned.seq as i64
    ])?;
    Ok(())
}

fn commit(
    w: &mut Writer,
    namespace: &Namespace,
    c: HandlerCommit,
    now: Timestamp,
) -> Applied<Acked> {
    let ns = namespace.as_str();
    // Refusals first: the writer commits whatever a closure wrote.
    let live = w
        .live(namespace, c.token.job)
        .map(|job| job.life.clone().complete(c.token.lease_seq, now));
    match live {
        Some(Ok(())) => {}
        Some(Err(e)) => return Ok(Err(e)),
        None => {
            return Ok(Err(w.why_not_live(
                namespace,
                c.token.job,
                Error::lease_lost,
            )?));
        }
    }
    let planned = match &c.object {
        Some(object) if !c.writes.is_empty() => match plan(&w.conn, ns, object, &c.writes)? {
            Ok(p) => Some((object, p)),
            Err(e) => return Ok(Err(e)),
        },
        _ => None,
    };
    let ack = Ack {
        token: c.token,
        outcome: AckOutcome::Complete { result: c.result },
    };
    let writes = c.writes;
    w.write_owned(c.effects, now, |conn| {
        if let Some((object, planned)) = &planned {
            apply(conn, ns, object, &writes, planned, now)?;
        }
        Ok(Ok(((), true)))
    })?
    .map_or_else(|e| Ok(Err(e)), |()| w.ack_one(namespace, ack, now))
}

#[async_trait]
impl HandlerStore for SqliteStore {
    async fn handler_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        new: NewVersion,
        now: Timestamp,
    ) -> Result<(HandlerVersion, bool), Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let (ns, n) = (namespace.as_str(), name.as_str());
            if let Some(current) = version_row(conn, ns, n, None)?
                && current.hash == new.hash
            {
                return Ok(Ok((current, false)));
            }
            let last: Option<u32> = conn
                .prepare_cached("SELECT max(version) FROM handler_versions WHERE namespace = ?1 AND name = ?2")?
                .query_row(params![ns, n], |r| r.get(0))?;
            let version = last.unwrap_or(0) + 1;
            conn.prepare_cached(&format!(
                "INSERT INTO handler_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                ns,
                n,
                version,
                new.kind.as_str(),
                new.hash,
                new.source,
                new.artifact,
                to_json("handler settings", &new.settings)?,
                now.as_millis()
            ])?;
            conn.prepare_cached(
                "INSERT INTO handlers (namespace, name, version, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT DO UPDATE \
                 SET version = excluded.version, updated_at = excluded.updated_at",
            )?
            .execute(params![ns, n, version, now.as_millis()])?;
            Ok(Ok((new.stored(&namespace, &name, version, now), true)))
        })
        .await
    }

    async fn handler_get(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        version: Option<u32>,
    ) -> Result<HandlerVersion, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.read(move |conn| {
            Ok(
                version_row(conn, namespace.as_str(), name.as_str(), version)?
                    .ok_or_else(|| handler_not_found(&name)),
            )
        })
        .await
    }

    async fn handlers_list(&self, namespace: &Namespace) -> Result<Vec<HandlerSummary>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT h.name, h.version, v.kind, v.hash, h.created_at, h.updated_at \
                     FROM handlers h JOIN handler_versions v \
                     ON v.namespace = h.namespace AND v.name = h.name AND v.version = h.version \
                     WHERE h.namespace = ?1 ORDER BY h.name",
                )?
                .query_map([namespace.as_str()], |r| {
                    Ok(HandlerSummary {
                        name: HandlerName::new(&r.get::<_, String>(0)?)
                            .map_err(|e| corrupt(e.message))?,
                        version: r.get(1)?,
                        kind: HandlerKind::parse(&r.get::<_, String>(2)?)
                            .map_err(|e| corrupt(e.message))?,
                        hash: r.get(3)?,
                        created_at: Timestamp::from_millis(r.get(4)?),
                        updated_at: Timestamp::from_millis(r.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn handler_delete(&self, namespace: &Namespace, name: &HandlerName) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let (ns, n) = (namespace.as_str(), name.as_str());
            let gone = w
                .conn
                .prepare_cached("DELETE FROM handlers WHERE namespace = ?1 AND name = ?2")?
                .execute(params![ns, n])?;
            if gone == 0 {
                return Ok(Err(handler_not_found(&name)));
            }
            w.conn
                .prepare_cached("DELETE FROM handler_versions WHERE namespace = ?1 AND name = ?2")?
                .execute(params![ns, n])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn handler_secrets_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        secrets: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let (namespace, name, secrets) = (namespace.clone(), name.clone(), secrets.clone());
        self.write(move |w: &mut Writer| {
            let set = w
                .conn
                .prepare_cached(
                    "UPDATE handlers SET secrets = ?3, updated_at = ?4 WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![
                    namespace.as_str(),
                    name.as_str(),
                    to_json("handler secrets", &secrets)?,
                    now.as_millis()
                ])?;
            Ok(if set == 0 { Err(handler_not_found(&name)) } else { Ok(()) })
        })
        .await
    }

    async fn handler_secrets(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
    ) -> Result<BTreeMap<String, String>, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.read(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT secrets FROM handlers WHERE namespace = ?1 AND name = ?2")?
                .query_row(params![namespace.as_str(), name.as_str()], |r| r.get(0))
                .optional()?;
            match text {
                Some(t) => Ok(Ok(from_json(&t)?)),
                None => Ok(Err(handler_not_found(&name))),
            }
        })
        .await
    }

    async fn state_get(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        keys: &[String],
    ) -> Result<Vec<StateEntry>, Error> {
        let (namespace, object, keys) = (namespace.clone(), object.clone(), keys.to_vec());
        self.read(move |conn| Ok(Ok(entries(conn, namespace.as_str(), &object, &keys)?)))
            .await
    }

    async fn state_list(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        query: &StateQuery,
    ) -> Result<Vec<StateEntry>, Error> {
        let (namespace, object, query) = (namespace.clone(), object.clone(), query.clone());
        self.read(move |conn| {
            let (from, end) = query.bounds();
            let (from, inclusive) = from.map_or((String::new(), true), |(k, i)| (k.to_owned(), i));
            let sql = format!(
                "SELECT key, value, version FROM object_state \
                 WHERE namespace = ?1 AND type = ?2 AND object = ?3 AND key {} ?4 \
                 AND (?5 IS NULL OR key < ?5) ORDER BY key LIMIT ?6",
                if inclusive { ">=" } else { ">" }
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(
                    params![
                        namespace.as_str(),
                        object.kind,
                        object.key,
                        from,
                        end,
                        i64::from(query.limit)
                    ],
                    entry_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows
                .into_iter()
                .filter(|e| query.contains(&e.key))
                .collect()))
        })
        .await
    }

    async fn state_write(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        ops: Vec<StateOp>,
        now: Timestamp,
    ) -> Result<Vec<u64>, Error> {
        let (namespace, object) = (namespace.clone(), object.clone());
        self.write(move |w: &mut Writer| {
            let ns = namespace.as_str();
            let planned = match plan(&w.conn, ns, &object, &ops)? {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            apply(&w.conn, ns, &object, &ops, &planned, now)?;
            Ok(Ok(planned.versions))
        })
        .await
    }

    async fn handler_commits(
        &self,
        namespace: &Namespace,
        commits: Vec<HandlerCommit>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        let namespace = namespace.clone();
        self.write(move |w: &mut Writer| {
            let mut answers = Vec::with_capacity(commits.len());
            for c in commits {
                answers.push(commit(w, &namespace, c, now)?);
            }
            Ok(Ok(answers))
        })
        .await
    }
}
