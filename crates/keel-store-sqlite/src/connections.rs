//! Integrations, connect sessions and connections on SQLite: a row each,
//! sealed secrets as the engine gave them. A swap is a compare-and-set on
//! the connection's version in the writer's transaction.

use async_trait::async_trait;
use keel_core::connection::ConnectionStatus;
use keel_core::{ConnectionName, Error, ErrorCode, IntegrationName, Namespace, Timestamp};
use keel_store::{
    ConnectSession, Connection, ConnectionStore, ConnectionWrite, Integration, Reseal, SealedRef,
    connection_not_found, integration_not_found,
};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json, to_json};
use crate::writer::Writer;

const INTEGRATION: &str = "namespace, name, spec, client_secret, created_at, updated_at";
const SESSION: &str =
    "state, namespace, integration, connection, verifier, redirect_url, return_to, expires_at";
const CONNECTION: &str = "namespace, name, integration, version, status, access_token, \
     refresh_token, token_type, scope, expires_at, refresh_at, refreshed_at, error, \
     created_at, updated_at";

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn integration_put(
        &self,
        integration: &Integration,
        now: Timestamp,
    ) -> Result<(Integration, bool), Error> {
        let i = integration.clone();
        self.write(move |w: &mut Writer| {
            let spec = to_json("integration spec", &i.spec)?;
            let changed = w
                .conn
                .prepare_cached(
                    "UPDATE integrations SET spec = ?3, client_secret = ?4, updated_at = ?5 \
                     WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![
                    i.namespace.as_str(),
                    i.name.as_str(),
                    spec,
                    i.client_secret,
                    now.as_millis()
                ])?;
            if changed == 0 {
                w.conn
                    .prepare_cached(&format!(
                        "INSERT INTO integrations ({INTEGRATION}) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
                    ))?
                    .execute(params![
                        i.namespace.as_str(),
                        i.name.as_str(),
                        spec,
                        i.client_secret,
                        now.as_millis()
                    ])?;
            }
            let stored = integration_row(&w.conn, &i.namespace, &i.name)?;
            Ok(stored
                .map(|s| (s, changed == 0))
                .ok_or_else(|| integration_not_found(&i.name)))
        })
        .await
    }

    async fn integration_get(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<Integration, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.read(move |conn| {
            Ok(integration_row(conn, &namespace, &name)?
                .ok_or_else(|| integration_not_found(&name)))
        })
        .await
    }

    async fn integrations_list(&self, namespace: &Namespace) -> Result<Vec<Integration>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {INTEGRATION} FROM integrations WHERE namespace = ?1 ORDER BY name"
                ))?
                .query_map([namespace.as_str()], integration_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn integration_delete(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let used: i64 = w
                .conn
                .prepare_cached(
                    "SELECT count(*) FROM connections WHERE namespace = ?1 AND integration = ?2",
                )?
                .query_row(params![namespace.as_str(), name.as_str()], |r| r.get(0))?;
            if used > 0 {
                return Ok(Err(in_use(&name, used)));
            }
            let gone = w
                .conn
                .prepare_cached("DELETE FROM integrations WHERE namespace = ?1 AND name = ?2")?
                .execute(params![namespace.as_str(), name.as_str()])?;
            Ok(if gone == 0 {
                Err(integration_not_found(&name))
            } else {
                Ok(())
            })
        })
        .await
    }

    async fn session_put(&self, session: &ConnectSession, now: Timestamp) -> Result<(), Error> {
        let s = session.clone();
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached("DELETE FROM connect_sessions WHERE expires_at <= ?1")?
                .execute([now.as_millis()])?;
            w.conn
                .prepare_cached(&format!(
                    "INSERT INTO connect_sessions ({SESSION}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))?
                .execute(params![
                    s.state,
                    s.namespace.as_str(),
                    s.integration.as_str(),
                    s.connection.as_str(),
                    s.verifier,
                    s.redirect_url,
                    s.return_to,
                    s.expires_at.as_millis()
                ])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn session_take(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<Option<ConnectSession>, Error> {
        let state = state.to_owned();
        self.write(move |w: &mut Writer| {
            let found = w
                .conn
                .prepare_cached(&format!(
                    "DELETE FROM connect_sessions WHERE state = ?1 RETURNING {SESSION}"
                ))?
                .query_row([&state], session_from_row)
                .optional()?;
            Ok(Ok(found.filter(|s| s.expires_at > now)))
        })
        .await
    }

    async fn connection_put(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        integration: &IntegrationName,
        write: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Connection, Error> {
        let (namespace, name, integration, t) = (
            namespace.clone(),
            name.clone(),
            integration.clone(),
            write.clone(),
        );
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached(&format!(
                    "INSERT INTO connections ({CONNECTION}) \
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) \
                     ON CONFLICT (namespace, name) DO UPDATE SET integration = ?3, \
                     version = version + 1, status = ?4, access_token = ?5, refresh_token = ?6, \
                     token_type = ?7, scope = ?8, expires_at = ?9, refresh_at = ?10, \
                     refreshed_at = ?11, error = ?12, updated_at = ?13"
                ))?
                .execute(params_from_iter(written(
                    [
                        namespace.to_string().into(),
                        name.to_string().into(),
                        integration.to_string().into(),
                    ],
                    &t,
                    now,
                )))?;
            Ok(connection_row(&w.conn, &namespace, &name)?
                .ok_or_else(|| connection_not_found(&name)))
        })
        .await
    }

    async fn connection_swap(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        version: u64,
        write: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Option<Connection>, Error> {
        let (namespace, name, t) = (namespace.clone(), name.clone(), write.clone());
        self.write(move |w: &mut Writer| {
            let changed = w
                .conn
                .prepare_cached(
                    "UPDATE connections SET version = version + 1, status = ?4, \
                     access_token = ?5, refresh_token = ?6, token_type = ?7, scope = ?8, \
                     expires_at = ?9, refresh_at = ?10, refreshed_at = ?11, error = ?12, \
                     updated_at = ?13 WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                )?
                .execute(params_from_iter(written(
                    [
                        namespace.to_string().into(),
                        name.to_string().into(),
                        (version as i64).into(),
                    ],
                    &t,
                    now,
                )))?;
            if changed == 0 {
                return Ok(Ok(None));
            }
            Ok(Ok(connection_row(&w.conn, &namespace, &name)?))
        })
        .await
    }

    async fn connection_get(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.read(move |conn| {
            Ok(connection_row(conn, &namespace, &name)?.ok_or_else(|| connection_not_found(&name)))
        })
        .await
    }

    async fn connections_list(&self, namespace: &Namespace) -> Result<Vec<Connection>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {CONNECTION} FROM connections WHERE namespace = ?1 ORDER BY name"
                ))?
                .query_map([namespace.as_str()], connection_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn connection_delete(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error> {
        let (namespace, name) = (namespace.clone(), name.clone());
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached(&format!(
                    "DELETE FROM connections WHERE namespace = ?1 AND name = ?2 \
                     RETURNING {CONNECTION}"
                ))?
                .query_row(
                    params![namespace.as_str(), name.as_str()],
                    connection_from_row,
                )
                .optional()?;
            Ok(gone.ok_or_else(|| connection_not_found(&name)))
        })
        .await
    }

    async fn connections_due(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, Error> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {CONNECTION} FROM connections \
                     WHERE status = 'active' AND refresh_at <= ?1 ORDER BY refresh_at LIMIT ?2"
                ))?
                .query_map(params![before.as_millis(), limit], connection_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn sealed_rewrite(&self, reseal: Reseal) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            // Every value is re-sealed before anything is written: a value
            // that does not open leaves the store as it was.
            let mut secrets = Vec::new();
            for i in conn
                .prepare(&format!("SELECT {INTEGRATION} FROM integrations"))?
                .query_map([], integration_from_row)?
            {
                let i = i?;
                let at = SealedRef::ClientSecret {
                    namespace: i.namespace.clone(),
                    integration: i.name.clone(),
                };
                match reseal(&at, &i.client_secret) {
                    Ok(sealed) => secrets.push((i.namespace, i.name, sealed)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            let mut verifiers = Vec::new();
            for s in conn
                .prepare(&format!(
                    "SELECT {SESSION} FROM connect_sessions WHERE verifier <> ''"
                ))?
                .query_map([], session_from_row)?
            {
                let s = s?;
                let at = SealedRef::Verifier {
                    state: s.state.clone(),
                };
                match reseal(&at, &s.verifier) {
                    Ok(sealed) => verifiers.push((s.state, sealed)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            let mut tokens = Vec::new();
            for c in conn
                .prepare(&format!("SELECT {CONNECTION} FROM connections"))?
                .query_map([], connection_from_row)?
            {
                let c = c?;
                match c.resealed(&reseal) {
                    Ok((access, refresh)) => tokens.push((c.namespace, c.name, access, refresh)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            let count = secrets.len()
                + verifiers.len()
                + tokens
                    .iter()
                    .map(|t| 1 + usize::from(t.3.is_some()))
                    .sum::<usize>();
            for (namespace, name, sealed) in secrets {
                conn.prepare_cached(
                    "UPDATE integrations SET client_secret = ?3 WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![namespace.as_str(), name.as_str(), sealed])?;
            }
            for (state, sealed) in verifiers {
                conn.prepare_cached("UPDATE connect_sessions SET verifier = ?2 WHERE state = ?1")?
                    .execute(params![state, sealed])?;
            }
            for (namespace, name, access, refresh) in tokens {
                conn.prepare_cached(
                    "UPDATE connections SET access_token = ?3, refresh_token = ?4 \
                     WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![
                    namespace.as_str(),
                    name.as_str(),
                    access,
                    refresh
                ])?;
            }
            Ok(Ok(count as u64))
        })
        .await
    }
}

/// A connection's write as parameters ?4 to ?13, after the three that
/// say which row.
fn written(key: [Value; 3], t: &ConnectionWrite, now: Timestamp) -> Vec<Value> {
    let mut values = key.to_vec();
    values.extend([
        t.status.as_str().to_owned().into(),
        t.access_token.clone().into(),
        t.refresh_token.clone().into(),
        t.token_type.clone().into(),
        t.scope.clone().into(),
        t.expires_at.map(Timestamp::as_millis).into(),
        t.refresh_at.as_millis().into(),
        t.refreshed_at.as_millis().into(),
        t.error.clone().into(),
        now.as_millis().into(),
    ]);
    values
}

fn in_use(name: &IntegrationName, connections: i64) -> Error {
    Error::new(
        ErrorCode::Conflict,
        format!("integration {name:?} has {connections} connections: delete them first"),
    )
}

fn integration_row(
    conn: &rusqlite::Connection,
    namespace: &Namespace,
    name: &IntegrationName,
) -> rusqlite::Result<Option<Integration>> {
    conn.prepare_cached(&format!(
        "SELECT {INTEGRATION} FROM integrations WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(
        params![namespace.as_str(), name.as_str()],
        integration_from_row,
    )
    .optional()
}

fn connection_row(
    conn: &rusqlite::Connection,
    namespace: &Namespace,
    name: &ConnectionName,
) -> rusqlite::Result<Option<Connection>> {
    conn.prepare_cached(&format!(
        "SELECT {CONNECTION} FROM connections WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(
        params![namespace.as_str(), name.as_str()],
        connection_from_row,
    )
    .optional()
}

fn namespace(text: &str) -> rusqlite::Result<Namespace> {
    Namespace::new(text).map_err(|e| corrupt(e.message))
}

fn integration_from_row(r: &Row<'_>) -> rusqlite::Result<Integration> {
    Ok(Integration {
        namespace: namespace(&r.get::<_, String>(0)?)?,
        name: IntegrationName::new(&r.get::<_, String>(1)?).map_err(|e| corrupt(e.message))?,
        spec: from_json(&r.get::<_, String>(2)?)?,
        client_secret: r.get(3)?,
        created_at: Timestamp::from_millis(r.get(4)?),
        updated_at: Timestamp::from_millis(r.get(5)?),
    })
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<ConnectSession> {
    Ok(ConnectSession {
        state: r.get(0)?,
        namespace: namespace(&r.get::<_, String>(1)?)?,
        integration: IntegrationName::new(&r.get::<_, String>(2)?)
            .map_err(|e| corrupt(e.message))?,
        connection: ConnectionName::new(&r.get::<_, String>(3)?).map_err(|e| corrupt(e.message))?,
        verifier: r.get(4)?,
        redirect_url: r.get(5)?,
        return_to: r.get(6)?,
        expires_at: Timestamp::from_millis(r.get(7)?),
    })
}

fn connection_from_row(r: &Row<'_>) -> rusqlite::Result<Connection> {
    Ok(Connection {
        namespace: namespace(&r.get::<_, String>(0)?)?,
        name: ConnectionName::new(&r.get::<_, String>(1)?).map_err(|e| corrupt(e.message))?,
        integration: IntegrationName::new(&r.get::<_, String>(2)?)
            .map_err(|e| corrupt(e.message))?,
        version: r.get::<_, i64>(3)? as u64,
        tokens: ConnectionWrite {
            status: ConnectionStatus::parse(&r.get::<_, String>(4)?)
                .map_err(|e| corrupt(e.message))?,
            access_token: r.get(5)?,
            refresh_token: r.get(6)?,
            token_type: r.get(7)?,
            scope: r.get(8)?,
            expires_at: r.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
            refresh_at: Timestamp::from_millis(r.get(10)?),
            refreshed_at: Timestamp::from_millis(r.get(11)?),
            error: r.get(12)?,
        },
        created_at: Timestamp::from_millis(r.get(13)?),
        updated_at: Timestamp::from_millis(r.get(14)?),
    })
}
