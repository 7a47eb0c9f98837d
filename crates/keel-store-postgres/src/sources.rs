//! Webhook sources on PostgreSQL: one row each, the spec as JSON text; a
//! put is one upsert.

use async_trait::async_trait;
use keel_core::source::SourceSpec;
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{Source, SourceStore, source_not_found};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

#[async_trait]
impl SourceStore for PostgresStore {
    async fn source_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SourceSpec,
        now: Timestamp,
    ) -> Result<(Source, bool), Error> {
        let text = serde_json::to_string(spec).map_err(|e| Error::internal(e.to_string()))?;
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/sources/source_put.sql"),
                &[&namespace.as_str(), &name, &text, &now.as_millis()],
            )
            .await
            .map_err(db)?;
        Ok((source_from_row(&row)?, row.get(5)))
    }

    async fn source_get(&self, namespace: &Namespace, name: &str) -> Result<Source, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                include_str!("../queries/sources/source_get.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?;
        row.as_ref()
            .map(source_from_row)
            .unwrap_or_else(|| Err(source_not_found(name)))
    }

    async fn sources_list(&self, namespace: &Namespace) -> Result<Vec<Source>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/sources/sources_list.sql"),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?
            .iter()
            .map(source_from_row)
            .collect()
    }

    async fn source_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let gone = self
            .client()
            .await?
            .execute(
                include_str!("../queries/sources/source_delete.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?;
        if gone == 0 {
            return Err(source_not_found(name));
        }
        Ok(())
    }
}

fn source_from_row(r: &Row) -> Result<Source, Error> {
    let corrupt = |what: &str, e: String| Error::internal(format!("corrupt source {what}: {e}"));
    let namespace: &str = r.get(0);
    let spec: &str = r.get(2);
    Ok(Source {
        namespace: Namespace::new(namespace).map_err(|e| corrupt("namespace", e.message))?,
        name: r.get(1),
        spec: serde_json::from_str(spec).map_err(|e| corrupt("spec", e.to_string()))?,
        created_at: Timestamp::from_millis(r.get(3)),
        updated_at: Timestamp::from_millis(r.get(4)),
    })
}
