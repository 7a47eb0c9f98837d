//! API tokens on PostgreSQL: one row each, found by id.

use async_trait::async_trait;
use keel_core::auth::{Grant, Role};
use keel_core::{Error, Timestamp};
use keel_store::{Token, TokenStore, token_not_found};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

#[async_trait]
impl TokenStore for PostgresStore {
    async fn token_insert(&self, token: &Token) -> Result<(), Error> {
        let json = |v: &Vec<String>| keel_store::codec::encode("token grant", v);
        let resources = token.grant.resources.as_ref().map(json).transpose()?;
        self.client()
            .await?
            .execute(
                include_str!("../queries/tokens/token_insert.sql"),
                &[
                    &token.id,
                    &token.name,
                    &token.grant.role.as_str(),
                    &json(&token.grant.namespaces)?,
                    &resources,
                    &token.secret_hash,
                    &token.created_at.as_millis(),
                    &token.expires_at.map(Timestamp::as_millis),
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token_get(&self, id: &str) -> Result<Option<Token>, Error> {
        self.client()
            .await?
            .query_opt(include_str!("../queries/tokens/token_get.sql"), &[&id])
            .await
            .map_err(db)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn tokens_list(&self) -> Result<Vec<Token>, Error> {
        self.client()
            .await?
            .query(include_str!("../queries/tokens/tokens_list.sql"), &[])
            .await
            .map_err(db)?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn token_revoke(&self, id: &str, now: Timestamp) -> Result<Token, Error> {
        self.client()
            .await?
            .query_opt(
                include_str!("../queries/tokens/token_revoke.sql"),
                &[&id, &now.as_millis()],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map_or_else(|| Err(token_not_found(id)), token_from_row)
    }

    async fn token_touch(&self, id: &str, now: Timestamp) -> Result<(), Error> {
        self.client()
            .await?
            .execute(
                include_str!("../queries/tokens/token_touch.sql"),
                &[&id, &now.as_millis()],
            )
            .await
            .map_err(db)?;
        Ok(())
    }
}

fn token_from_row(r: &Row) -> Result<Token, Error> {
    let corrupt = |what: &str, e: String| Error::internal(format!("corrupt token {what}: {e}"));
    let namespaces: &str = r.get(3);
    let resources: Option<&str> = r.get(4);
    let millis = |i: usize| r.get::<_, Option<i64>>(i).map(Timestamp::from_millis);
    Ok(Token {
        id: r.get(0),
        name: r.get(1),
        grant: Grant {
            role: Role::parse(r.get(2)).map_err(|e| corrupt("role", e.message))?,
            namespaces: serde_json::from_str(namespaces)
                .map_err(|e| corrupt("namespaces", e.to_string()))?,
            resources: resources
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("resources", e.to_string()))?,
        },
        secret_hash: r.get(5),
        created_at: Timestamp::from_millis(r.get(6)),
        expires_at: millis(7),
        last_used_at: millis(8),
        revoked_at: millis(9),
    })
}
