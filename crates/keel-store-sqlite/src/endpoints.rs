//! Endpoints on SQLite: one row each (spec, secrets and health as JSON) and
//! an append-only attempts table; recording a batch of attempts and the
//! health it moves is one write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::endpoint::{EndpointSpec, Health, Secrets, endpoint_queue};
use keel_core::{EndpointName, Error, Namespace, Timestamp};
use keel_store::{
    Attempt, AttemptQuery, Endpoint, EndpointStore, NewAttempt, SecretChoice, endpoint_not_found,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{blob_id, corrupt, from_json};
use crate::writer::Writer;

const COLUMNS: &str = "namespace, name, spec, secrets, health, created_at, updated_at";
const ATTEMPT_COLUMNS: &str = "id, namespace, endpoint, message_id, job_id, at, succeeded, \
     http_status, latency_ms, response_excerpt, error";

fn json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    crate::rows::to_json("endpoint", value)
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn endpoint_put(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        spec: &EndpointSpec,
        secret: SecretChoice,
        now: Timestamp,
    ) -> Result<(Endpoint, bool), Error> {
        let (namespace, name, spec) = (namespace.clone(), name.clone(), spec.clone());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let existing = endpoint_row(conn, &namespace, &name)?;
            let secrets = match (&existing, secret) {
                (Some(old), SecretChoice::KeepOr(_)) => old.secrets.clone(),
                (_, SecretChoice::KeepOr(s) | SecretChoice::Set(s)) => Secrets::new(s),
            };
            match &existing {
                Some(old) if old.spec == spec && old.secrets == secrets => {}
                Some(_) => {
                    conn.prepare_cached(
                        "UPDATE endpoints SET spec = ?3, secrets = ?4, updated_at = ?5 \
                         WHERE namespace = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        name.as_str(),
                        json(&spec)?,
                        json(&secrets)?,
                        now.as_millis()
                    ])?;
                }
                None => {
                    conn.prepare_cached(&format!(
                        "INSERT INTO endpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                    ))?
                    .execute(params![
                        namespace.as_str(),
                        name.as_str(),
                        json(&spec)?,
                        json(&secrets)?,
                        json(&Health::default())?,
                        now.as_millis()
                    ])?;
                }
            }
            let stored = endpoint_row(conn, &namespace, &name)?;
            Ok(stored
                .map(|e| (e, existing.is_none()))
                .ok_or_else(|| endpoint_not_found(name.as_str())))
        })
        .await
    }

    async fn endpoint_get(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Endpoint, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.read(move |conn| {
            Ok(endpoint_row(conn, &namespace, &name)?
                .ok_or_else(|| endpoint_not_found(name.as_str())))
        })
        .await
    }

    async fn endpoints_list(&self, namespace: Option<&Namespace>) -> Result<Vec<Endpoint>, Error> {
        let namespace = namespace.map(|n| n.as_str().to_owned());
        self.read(move |conn| {
            let endpoints = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM endpoints WHERE ?1 IS NULL OR namespace = ?1 \
                     ORDER BY namespace, name"
                ))?
                .query_map([namespace], endpoint_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(endpoints))
        })
        .await
    }

    async fn endpoint_delete(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let (ns, n) = (namespace.as_str(), name.as_str());
            let gone = w
                .conn
                .prepare_cached("DELETE FROM endpoints WHERE namespace = ?1 AND name = ?2")?
                .execute(params![ns, n])?;
            if gone == 0 {
                return Ok(Err(endpoint_not_found(n)));
            }
            w.conn
                .prepare_cached(
                    "DELETE FROM endpoint_attempts WHERE namespace = ?1 AND endpoint = ?2",
                )?
                .execute(params![ns, n])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn endpoint_rotate(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        next: String,
        now: Timestamp,
    ) -> Result<Endpoint, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let Some(mut endpoint) = endpoint_row(&w.conn, &namespace, &name)? else {
                return Ok(Err(endpoint_not_found(name.as_str())));
            };
            endpoint.secrets = endpoint.secrets.rotated(next, now);
            endpoint.updated_at = now;
            w.conn
                .prepare_cached(
                    "UPDATE endpoints SET secrets = ?3, updated_at = ?4 \
                     WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![
                    namespace.as_str(),
                    name.as_str(),
                    json(&endpoint.secrets)?,
                    now.as_millis()
                ])?;
            Ok(Ok(endpoint))
        })
        .await
    }

    async fn endpoint_disable(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        let queue = endpoint_queue(&namespace, &name)?;
        let disabled = reason.is_some();
        self.write(move |w: &mut Writer| {
            let Some(endpoint) = endpoint_row(&w.conn, &namespace, &name)? else {
                return Ok(Err(endpoint_not_found(name.as_str())));
            };
            let mut health = endpoint.health;
            if !health.set_disabled(reason, now) {
                return Ok(Ok(false));
            }
            set_health(&w.conn, &namespace, &name, &health)?;
            // Its queue is paused with it, in the same transaction: nothing
            // is leased for a disabled endpoint.
            if let Err(e) = w.pause(&queue, disabled, now)? {
                return Ok(Err(e));
            }
            Ok(Ok(true))
        })
        .await
    }

    async fn attempts_record(&self, attempts: Vec<NewAttempt>) -> Result<Vec<Endpoint>, Error> {
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let mut touched: BTreeMap<(Namespace, EndpointName), Option<Endpoint>> =
                BTreeMap::new();
            for a in &attempts {
                let key = (a.namespace.clone(), a.endpoint.clone());
                if !touched.contains_key(&key) {
                    let endpoint = endpoint_row(conn, &a.namespace, &a.endpoint)?;
                    touched.insert(key.clone(), endpoint);
                }
                let Some(Some(endpoint)) = touched.get_mut(&key) else {
                    continue;
                };
                endpoint.health.record(a.succeeded, a.at);
                conn.prepare_cached(&format!(
                    "INSERT INTO endpoint_attempts ({ATTEMPT_COLUMNS}) \
                     VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?
                .execute(params![
                    a.namespace.as_str(),
                    a.endpoint.as_str(),
                    a.message_id,
                    a.job_id.as_bytes(),
                    a.at.as_millis(),
                    a.succeeded,
                    a.http_status,
                    a.latency_ms as i64,
                    a.response_excerpt,
                    a.error
                ])?;
            }
            let mut answer = Vec::with_capacity(touched.len());
            for ((namespace, name), endpoint) in touched {
                if let Some(endpoint) = endpoint {
                    set_health(conn, &namespace, &name, &endpoint.health)?;
                    answer.push(endpoint);
                }
            }
            Ok(Ok(answer))
        })
        .await
    }

    async fn attempts_list(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        query: &AttemptQuery,
    ) -> Result<Vec<Attempt>, Error> {
        let (namespace, name, query) = (namespace.clone(), name.clone(), query.clone());
        self.read(move |conn| {
            let attempts = conn
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM endpoint_attempts \
                     WHERE namespace = ?1 AND endpoint = ?2 AND (?3 IS NULL OR id < ?3) \
                     AND (?4 IS NULL OR succeeded = ?4) ORDER BY id DESC LIMIT ?5"
                ))?
                .query_map(
                    params![
                        namespace.as_str(),
                        name.as_str(),
                        query.before,
                        query.succeeded,
                        query.limit
                    ],
                    attempt_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(attempts))
        })
        .await
    }

    async fn attempts_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached(
                    "DELETE FROM endpoint_attempts WHERE id IN \
                     (SELECT id FROM endpoint_attempts WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![before.as_millis(), limit])?;
            Ok(Ok(gone as u64))
        })
        .await
    }
}

fn set_health(
    conn: &Connection,
    namespace: &Namespace,
    name: &EndpointName,
    health: &Health,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE endpoints SET health = ?3 WHERE namespace = ?1 AND name = ?2")?
        .execute(params![namespace.as_str(), name.as_str(), json(health)?])?;
    Ok(())
}

fn endpoint_row(
    conn: &Connection,
    namespace: &Namespace,
    name: &EndpointName,
) -> rusqlite::Result<Option<Endpoint>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(
        params![namespace.as_str(), name.as_str()],
        endpoint_from_row,
    )
    .optional()
}

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let namespace: String = r.get(0)?;
    let name: String = r.get(1)?;
    Ok(Endpoint {
        namespace: Namespace::new(&namespace).map_err(|e| corrupt(e.message))?,
        name: EndpointName::new(&name).map_err(|e| corrupt(e.message))?,
        spec: from_json(&r.get::<_, String>(2)?)?,
        secrets: from_json(&r.get::<_, String>(3)?)?,
        health: from_json(&r.get::<_, String>(4)?)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        updated_at: Timestamp::from_millis(r.get(6)?),
    })
}

fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    let namespace: String = r.get(1)?;
    let endpoint: String = r.get(2)?;
    Ok(Attempt {
        id: r.get(0)?,
        attempt: NewAttempt {
            namespace: Namespace::new(&namespace).map_err(|e| corrupt(e.message))?,
            endpoint: EndpointName::new(&endpoint).map_err(|e| corrupt(e.message))?,
            message_id: r.get(3)?,
            job_id: blob_id(&r.get::<_, Vec<u8>>(4)?)?,
            at: Timestamp::from_millis(r.get(5)?),
            succeeded: r.get(6)?,
            http_status: r.get(7)?,
            latency_ms: r.get::<_, i64>(8)? as u64,
            response_excerpt: r.get(9)?,
            error: r.get(10)?,
        },
    })
}
