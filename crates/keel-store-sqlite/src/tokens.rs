//! API tokens on SQLite: one row each, found by id.

use async_trait::async_trait;
use keel_core::auth::{Grant, Role};
use keel_core::{Error, Timestamp};
use keel_store::{Token, TokenStore, token_not_found};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json, to_json};
use crate::writer::Writer;

const COLUMNS: &str = "id, name, role, namespaces, resources, secret_hash, created_at, \
                       expires_at, last_used_at, revoked_at";

#[async_trait]
impl TokenStore for SqliteStore {
    async fn token_insert(&self, token: &Token) -> Result<(), Error> {
        let token = token.clone();
        self.write(move |w: &mut Writer| {
            let resources = token
                .grant
                .resources
                .as_ref()
                .map(|r| to_json("token resources", r))
                .transpose()?;
            w.conn
                .prepare_cached(&format!(
                    "INSERT INTO tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)"
                ))?
                .execute(params![
                    token.id,
                    token.name,
                    token.grant.role.as_str(),
                    to_json("token namespaces", &token.grant.namespaces)?,
                    resources,
                    token.secret_hash,
                    token.created_at.as_millis(),
                    token.expires_at.map(Timestamp::as_millis),
                ])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn token_get(&self, id: &str) -> Result<Option<Token>, Error> {
        let id = id.to_owned();
        self.read(move |conn| Ok(Ok(token_row(conn, &id)?))).await
    }

    async fn tokens_list(&self) -> Result<Vec<Token>, Error> {
        self.read(move |conn| {
            let tokens = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM tokens ORDER BY created_at DESC, id"
                ))?
                .query_map([], token_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(tokens))
        })
        .await
    }

    async fn token_revoke(&self, id: &str, now: Timestamp) -> Result<Token, Error> {
        let id = id.to_owned();
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached(
                    "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                )?
                .execute(params![id, now.as_millis()])?;
            Ok(token_row(&w.conn, &id)?.ok_or_else(|| token_not_found(&id)))
        })
        .await
    }

    async fn token_touch(&self, id: &str, now: Timestamp) -> Result<(), Error> {
        let id = id.to_owned();
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached(
                    "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, ?2), ?2) \
                     WHERE id = ?1",
                )?
                .execute(params![id, now.as_millis()])?;
            Ok(Ok(()))
        })
        .await
    }
}

fn token_row(conn: &Connection, id: &str) -> rusqlite::Result<Option<Token>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"))?
        .query_row([id], token_from_row)
        .optional()
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<Token> {
    let role: String = r.get(2)?;
    let resources: Option<String> = r.get(4)?;
    let millis = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    };
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        grant: Grant {
            role: Role::parse(&role).map_err(|e| corrupt(e.message))?,
            namespaces: from_json(&r.get::<_, String>(3)?)?,
            resources: resources.as_deref().map(from_json).transpose()?,
        },
        secret_hash: r.get(5)?,
        created_at: Timestamp::from_millis(r.get(6)?),
        expires_at: millis(7)?,
        last_used_at: millis(8)?,
        revoked_at: millis(9)?,
    })
}
