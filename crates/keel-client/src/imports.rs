//! Bulk import: one body of records (CSV with its header line, or NDJSON)
//! into a queue's jobs or a topic's events, answered with the import's
//! summary. `keel import` sends a file as a run of such bodies, so that an
//! import stopped half-way goes on from the last one answered.

use keel_api::imports::{ImportAnswer, ImportQuery};

use crate::ClientError;
use crate::client::{Client, seg};

/// Where an import's records go.
#[derive(Clone, Copy, Debug)]
pub enum ImportInto<'a> {
    Queue(&'a str),
    Topic(&'a str),
}

impl Client {
    /// Imports the records of `body` (the format in `query`, or CSV when
    /// it names none).
    pub async fn import(
        &self,
        namespace: &str,
        into: ImportInto<'_>,
        query: &ImportQuery,
        body: impl Into<reqwest::Body>,
    ) -> Result<ImportAnswer, ClientError> {
        let (kind, name) = match into {
            ImportInto::Queue(q) => ("queues", q),
            ImportInto::Topic(t) => ("topics", t),
        };
        let url = self.url(&format!(
            "/namespaces/{}/{kind}/{}/imports",
            seg(namespace),
            seg(name)
        ));
        let content_type = match query.format.as_deref() {
            Some("ndjson") => "application/x-ndjson",
            _ => "text/csv",
        };
        let req = self
            .http
            .post(url)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(req).await
    }
}
