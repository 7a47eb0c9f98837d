//! Integrations, connect sessions and connections on PostgreSQL: a row
//! each, sealed secrets as the engine gave them. A swap is one conditional
//! update on the connection's version, so nodes racing to write one
//! connection cannot both win; a session is taken by `DELETE … RETURNING`,
//! so it is found once across every node.

use async_trait::async_trait;
use keel_core::connection::ConnectionStatus;
use keel_core::{ConnectionName, Error, ErrorCode, IntegrationName, Namespace, Timestamp};
use keel_store::{
    ConnectSession, Connection, ConnectionStore, ConnectionWrite, Integration, Reseal, SealedRef,
    connection_not_found, integration_not_found,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{PostgresStore, db};

const INTEGRATION: &str = "namespace, name, spec, client_secret, created_at, updated_at";
const SESSION: &str =
    "state, namespace, integration, connection, verifier, redirect_url, return_to, expires_at";
const CONNECTION: &str = "namespace, name, integration, version, status, access_token, \
     refresh_token, token_type, scope, expires_at, refresh_at, refreshed_at, error, \
     created_at, updated_at";

#[async_trait]
impl ConnectionStore for PostgresStore {
    async fn integration_put(
        &self,
        i: &Integration,
        now: Timestamp,
    ) -> Result<(Integration, bool), Error> {
        let spec = serde_json::to_string(&i.spec).map_err(|e| Error::internal(e.to_string()))?;
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "INSERT INTO keel_integrations ({INTEGRATION}) VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (namespace, name) DO UPDATE SET spec = $3, client_secret = $4, \
                     updated_at = $5 RETURNING {INTEGRATION}, (xmax = 0)"
                ),
                &[
                    &i.namespace.as_str(),
                    &i.name.as_str(),
                    &spec,
                    &i.client_secret,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok((integration_from_row(&row)?, row.get(6)))
    }

    async fn integration_get(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<Integration, Error> {
        self.client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {INTEGRATION} FROM keel_integrations WHERE namespace = $1 AND name = $2"
                ),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map_or_else(|| Err(integration_not_found(name)), integration_from_row)
    }

    async fn integrations_list(&self, namespace: &Namespace) -> Result<Vec<Integration>, Error> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {INTEGRATION} FROM keel_integrations WHERE namespace = $1 ORDER BY name"
                ),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?
            .iter()
            .map(integration_from_row)
            .collect()
    }

    async fn integration_delete(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<(), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let ns = namespace.as_str();
        let gone = tx
            .execute(
                "DELETE FROM keel_integrations WHERE namespace = $1 AND name = $2",
                &[&ns, &name.as_str()],
            )
            .await
            .map_err(db)?;
        if gone == 0 {
            return Err(integration_not_found(name));
        }
        let used: i64 = tx
            .query_one(
                "SELECT count(*) FROM keel_connections WHERE namespace = $1 AND integration = $2",
                &[&ns, &name.as_str()],
            )
            .await
            .map_err(db)?
            .get(0);
        if used > 0 {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("integration {name:?} has {used} connections: delete them first"),
            ));
        }
        tx.commit().await.map_err(db)
    }

    async fn session_put(&self, s: &ConnectSession, now: Timestamp) -> Result<(), Error> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM keel_connect_sessions WHERE expires_at <= $1",
                &[&now.as_millis()],
            )
            .await
            .map_err(db)?;
        client
            .execute(
                &format!(
                    "INSERT INTO keel_connect_sessions ({SESSION}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &s.state,
                    &s.namespace.as_str(),
                    &s.integration.as_str(),
                    &s.connection.as_str(),
                    &s.verifier,
                    &s.redirect_url,
                    &s.return_to,
                    &s.expires_at.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn session_take(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<Option<ConnectSession>, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("DELETE FROM keel_connect_sessions WHERE state = $1 RETURNING {SESSION}"),
                &[&state],
            )
            .await
            .map_err(db)?;
        Ok(row
            .as_ref()
            .map(session_from_row)
            .transpose()?
            .filter(|s| s.expires_at > now))
    }

    async fn connection_put(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        integration: &IntegrationName,
        t: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Connection, Error> {
        let written = Written::of(t, now);
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "INSERT INTO keel_connections ({CONNECTION}) \
                     VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
                     ON CONFLICT (namespace, name) DO UPDATE SET integration = $3, \
                     version = keel_connections.version + 1, status = $4, access_token = $5, \
                     refresh_token = $6, token_type = $7, scope = $8, expires_at = $9, \
                     refresh_at = $10, refreshed_at = $11, error = $12, updated_at = $13 \
                     RETURNING {CONNECTION}"
                ),
                &written.params([&namespace.as_str(), &name.as_str(), &integration.as_str()]),
            )
            .await
            .map_err(db)?;
        connection_from_row(&row)
    }

    async fn connection_swap(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        version: u64,
        t: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Option<Connection>, Error> {
        let written = Written::of(t, now);
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE keel_connections SET version = version + 1, status = $4, \
                     access_token = $5, refresh_token = $6, token_type = $7, scope = $8, \
                     expires_at = $9, refresh_at = $10, refreshed_at = $11, error = $12, \
                     updated_at = $13 WHERE namespace = $1 AND name = $2 AND version = $3 \
                     RETURNING {CONNECTION}"
                ),
                &written.params([&namespace.as_str(), &name.as_str(), &(version as i64)]),
            )
            .await
            .map_err(db)?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn connection_get(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error> {
        self.client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {CONNECTION} FROM keel_connections WHERE namespace = $1 AND name = $2"
                ),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map_or_else(|| Err(connection_not_found(name)), connection_from_row)
    }

    async fn connections_list(&self, namespace: &Namespace) -> Result<Vec<Connection>, Error> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {CONNECTION} FROM keel_connections WHERE namespace = $1 ORDER BY name"
                ),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    async fn connection_delete(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error> {
        self.client()
            .await?
            .query_opt(
                &format!(
                    "DELETE FROM keel_connections WHERE namespace = $1 AND name = $2 \
                     RETURNING {CONNECTION}"
                ),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map_or_else(|| Err(connection_not_found(name)), connection_from_row)
    }

    async fn connections_due(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, Error> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {CONNECTION} FROM keel_connections \
                     WHERE status = 'active' AND refresh_at <= $1 ORDER BY refresh_at LIMIT $2"
                ),
                &[&before.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(connection_from_row)
            .collect()
    }

    async fn sealed_rewrite(&self, reseal: Reseal) -> Result<u64, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut count = 0u64;
        let rows = tx
            .query(
                &format!("SELECT {INTEGRATION} FROM keel_integrations FOR UPDATE"),
                &[],
            )
            .await
            .map_err(db)?;
        for row in &rows {
            let i = integration_from_row(row)?;
            let at = SealedRef::ClientSecret {
                namespace: i.namespace.clone(),
                integration: i.name.clone(),
            };
            let sealed = reseal(&at, &i.client_secret)?;
            update(
                &tx,
                "UPDATE keel_integrations SET client_secret = $3 WHERE namespace = $1 AND name = $2",
                &[&i.namespace.as_str(), &i.name.as_str(), &sealed],
            )
            .await?;
            count += 1;
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT {SESSION} FROM keel_connect_sessions WHERE verifier <> '' FOR UPDATE"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        for row in &rows {
            let s = session_from_row(row)?;
            let sealed = reseal(
                &SealedRef::Verifier {
                    state: s.state.clone(),
                },
                &s.verifier,
            )?;
            update(
                &tx,
                "UPDATE keel_connect_sessions SET verifier = $2 WHERE state = $1",
                &[&s.state, &sealed],
            )
            .await?;
            count += 1;
        }
        let rows = tx
            .query(
                &format!("SELECT {CONNECTION} FROM keel_connections FOR UPDATE"),
                &[],
            )
            .await
            .map_err(db)?;
        for row in &rows {
            let c = connection_from_row(row)?;
            let (access, refresh) = c.resealed(&reseal)?;
            count += 1 + u64::from(refresh.is_some());
            update(
                &tx,
                "UPDATE keel_connections SET access_token = $3, refresh_token = $4 \
                 WHERE namespace = $1 AND name = $2",
                &[&c.namespace.as_str(), &c.name.as_str(), &access, &refresh],
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(count)
    }
}

async fn update(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), Error> {
    tx.execute(sql, params).await.map_err(db)?;
    Ok(())
}

/// A connection's write as parameters $4 to $13, after the three that say
/// which row.
struct Written<'a> {
    t: &'a ConnectionWrite,
    status: &'static str,
    expires: Option<i64>,
    refresh: i64,
    refreshed: i64,
    at: i64,
}

impl<'a> Written<'a> {
    fn of(t: &'a ConnectionWrite, now: Timestamp) -> Self {
        Written {
            t,
            status: t.status.as_str(),
            expires: t.expires_at.map(Timestamp::as_millis),
            refresh: t.refresh_at.as_millis(),
            refreshed: t.refreshed_at.as_millis(),
            at: now.as_millis(),
        }
    }

    fn params<'b>(&'b self, key: [&'b (dyn ToSql + Sync); 3]) -> [&'b (dyn ToSql + Sync); 13] {
        let [a, b, c] = key;
        [
            a,
            b,
            c,
            &self.status,
            &self.t.access_token,
            &self.t.refresh_token,
            &self.t.token_type,
            &self.t.scope,
            &self.expires,
            &self.refresh,
            &self.refreshed,
            &self.t.error,
            &self.at,
        ]
    }
}

fn corrupt(e: Error) -> Error {
    Error::internal(format!("corrupt connection row: {}", e.message))
}

fn integration_from_row(r: &Row) -> Result<Integration, Error> {
    let spec: &str = r.get(2);
    Ok(Integration {
        namespace: Namespace::new(r.get(0)).map_err(corrupt)?,
        name: IntegrationName::new(r.get(1)).map_err(corrupt)?,
        spec: serde_json::from_str(spec).map_err(|e| corrupt(Error::internal(e.to_string())))?,
        client_secret: r.get(3),
        created_at: Timestamp::from_millis(r.get(4)),
        updated_at: Timestamp::from_millis(r.get(5)),
    })
}

fn session_from_row(r: &Row) -> Result<ConnectSession, Error> {
    Ok(ConnectSession {
        state: r.get(0),
        namespace: Namespace::new(r.get(1)).map_err(corrupt)?,
        integration: IntegrationName::new(r.get(2)).map_err(corrupt)?,
        connection: ConnectionName::new(r.get(3)).map_err(corrupt)?,
        verifier: r.get(4),
        redirect_url: r.get(5),
        return_to: r.get(6),
        expires_at: Timestamp::from_millis(r.get(7)),
    })
}

fn connection_from_row(r: &Row) -> Result<Connection, Error> {
    Ok(Connection {
        namespace: Namespace::new(r.get(0)).map_err(corrupt)?,
        name: ConnectionName::new(r.get(1)).map_err(corrupt)?,
        integration: IntegrationName::new(r.get(2)).map_err(corrupt)?,
        version: r.get::<_, i64>(3) as u64,
        tokens: ConnectionWrite {
            status: ConnectionStatus::parse(r.get(4)).map_err(corrupt)?,
            access_token: r.get(5),
            refresh_token: r.get(6),
            token_type: r.get(7),
            scope: r.get(8),
            expires_at: r.get::<_, Option<i64>>(9).map(Timestamp::from_millis),
            refresh_at: Timestamp::from_millis(r.get(10)),
            refreshed_at: Timestamp::from_millis(r.get(11)),
            error: r.get(12),
        },
        created_at: Timestamp::from_millis(r.get(13)),
        updated_at: Timestamp::from_millis(r.get(14)),
    })
}
