//! Webhook sources on SQLite: one row each, the spec as JSON.

use async_trait::async_trait;
use keel_core::source::SourceSpec;
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{Source, SourceStore, source_not_found};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::from_json;
use crate::writer::Writer;

const COLUMNS: &str = "namespace, name, spec, created_at, updated_at";

#[async_trait]
impl SourceStore for SqliteStore {
    async fn source_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SourceSpec,
        now: Timestamp,
    ) -> Result<(Source, bool), Error> {
        let (namespace, name, spec) = (namespace.clone(), name.to_owned(), spec.clone());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let existing = source_row(conn, &namespace, &name)?;
            let text = crate::rows::to_json("source spec", &spec)?;
            match &existing {
                Some(old) if old.spec == spec => {}
                Some(_) => {
                    conn.prepare_cached(
                        "UPDATE sources SET spec = ?3, updated_at = ?4 \
                         WHERE namespace = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        name,
                        text,
                        now.as_millis()
                    ])?;
                }
                None => {
                    conn.prepare_cached(&format!(
                        "INSERT INTO sources ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?4)"
                    ))?
                    .execute(params![
                        namespace.as_str(),
                        name,
                        text,
                        now.as_millis()
                    ])?;
                }
            }
            let stored = source_row(conn, &namespace, &name)?;
            Ok(stored
                .map(|s| (s, existing.is_none()))
                .ok_or_else(|| source_not_found(&name)))
        })
        .await
    }

    async fn source_get(&self, namespace: &Namespace, name: &str) -> Result<Source, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| {
            Ok(source_row(conn, &namespace, &name)?.ok_or_else(|| source_not_found(&name)))
        })
        .await
    }

    async fn sources_list(&self, namespace: &Namespace) -> Result<Vec<Source>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let sources = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM sources WHERE namespace = ?1 ORDER BY name"
                ))?
                .query_map([namespace.as_str()], source_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(sources))
        })
        .await
    }

    async fn source_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached("DELETE FROM sources WHERE namespace = ?1 AND name = ?2")?
                .execute(params![namespace.as_str(), name])?;
            Ok(if gone == 0 {
                Err(source_not_found(&name))
            } else {
                Ok(())
            })
        })
        .await
    }
}

fn source_row(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
) -> rusqlite::Result<Option<Source>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sources WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(params![namespace.as_str(), name], source_from_row)
    .optional()
}

fn source_from_row(r: &Row<'_>) -> rusqlite::Result<Source> {
    let namespace: String = r.get(0)?;
    Ok(Source {
        namespace: Namespace::new(&namespace).map_err(|e| crate::rows::corrupt(e.message))?,
        name: r.get(1)?,
        spec: from_json(&r.get::<_, String>(2)?)?,
        created_at: Timestamp::from_millis(r.get(3)?),
        updated_at: Timestamp::from_millis(r.get(4)?),
    })
}
