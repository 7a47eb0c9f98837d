//! Bulk import: a stream of records (CSV or NDJSON), of any length, into a
//! queue's jobs or a topic's events. Records are read on a blocking thread
//! ([`records`]), mapped by a [`Template`], and written in batches through
//! the same admission as any enqueue or publish (quotas, limits, metrics).
//! A key column dedupes: a job's idempotency key is
//! `keel.import/{queue}/{key}` (24 hours), an event's id is the key (the
//! topic's dedup window), so an import run again after a crash stores
//! nothing twice. A record that cannot be mapped is rejected with its line;
//! the rest go on.

mod records;
mod template;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use keel_core::event::NewEvent;
use keel_core::job::JobRequest;
use keel_core::{Clock, Error, ErrorCode, Limits, Namespace, QueueRef, TopicName};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use self::records::{Batch, Reading, Record};
pub use self::template::Template;
use crate::jobs::JobService;
use crate::topics::TopicService;

/// Rejections an import answers with their lines (the count has them all).
pub const REJECTS_LISTED: usize = 100;
/// Batches read ahead of the one being written.
const READ_AHEAD: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

/// Where the records go.
pub enum ImportTarget {
    Queue(QueueRef),
    Topic(Namespace, TopicName),
}

pub struct ImportSpec {
    pub format: Format,
    /// The column (CSV) or top-level field (NDJSON) that names a record.
    pub key: Option<String>,
    /// The JSON a record becomes ([`Template`]); without one, a CSV record
    /// is an object of its fields by column, an NDJSON record itself.
    pub template: Option<String>,
    /// The line, in the whole file, of the input's first record (a resumed
    /// import sends the rest of a file): default 2 for CSV (after the
    /// header), 1 for NDJSON.
    pub first_line: Option<u64>,
    /// The events' `type` (topics only).
    pub event_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Records read (accepted, duplicates and rejected).
    pub records: u64,
    pub accepted: u64,
    /// Records whose key an earlier import (or job, or event) held.
    pub duplicates: u64,
    pub rejected: u64,
    /// The first [`REJECTS_LISTED`] rejections.
    pub rejects: Vec<Rejected>,
    /// The line of the last record read: where a resumed import goes on.
    pub last_line: u64,
}

pub struct ImportService {
    jobs: Arc<JobService>,
    topics: Arc<TopicService>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl ImportService {
    pub fn new(
        jobs: Arc<JobService>,
        topics: Arc<TopicService>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> ImportService {
        ImportService {
            jobs,
            topics,
            clock,
            limits,
        }
    }

    /// Reads `input` to its end, writing its records as they come. An error
    /// of the input itself (no such column, a broken stream) or of a write
    /// (a full namespace) stops it; what was written before stays, and an
    /// import run again with the same key finds those as duplicates.
    pub async fn import(
        &self,
        target: ImportTarget,
        spec: ImportSpec,
        input: impl Read + Send + 'static,
    ) -> Result<ImportSummary, Error> {
        let template = spec.template.as_deref().map(Template::parse).transpose()?;
        if let Some(key) = &spec.key
            && key.trim().is_empty()
        {
            return Err(Error::invalid("the key column is empty"));
        }
        if spec.event_type.is_some() && matches!(target, ImportTarget::Queue(_)) {
            return Err(Error::invalid("event_type is for a topic's import"));
        }
        let reading = Reading {
            format: spec.format,
            template,
            key: spec.key,
            first_line: spec.first_line.unwrap_or(match spec.format {
                Format::Csv => 2,
                Format::Ndjson => 1,
            }),
            batch: self.limits.max_batch,
            max_json_bytes: self.limits.max_payload_bytes,
            max_key_bytes: self.limits.max_key_len,
        };
        let (out, mut batches) = mpsc::channel(READ_AHEAD);
        let reader = tokio::task::spawn_blocking(move || records::read(reading, input, out));
        let mut summary = ImportSummary::default();
        let written = async {
            while let Some(batch) = batches.recv().await {
                let Batch { records, rejected } = batch?;
                summary.records += (records.len() + rejected.len()) as u64;
                summary.rejected += rejected.len() as u64;
                let last = records.iter().map(|r| r.line);
                summary.last_line = last
                    .chain(rejected.iter().map(|r| r.line))
                    .fold(summary.last_line, u64::max);
                let room = REJECTS_LISTED.saturating_sub(summary.rejects.len());
                summary.rejects.extend(rejected.into_iter().take(room));
                if !records.is_empty() {
                    let (accepted, duplicates) = self
                        .write(&target, spec.event_type.as_deref(), records)
                        .await?;
                    summary.accepted += accepted;
                    summary.duplicates += duplicates;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        match written {
            // The channel is closed: the reader has ended.
            Ok(()) => {
                reader
                    .await
                    .map_err(|e| Error::internal(format!("the import's reader: {e}")))?;
                if summary.records == 0 {
                    return Err(Error::invalid(
                        "the body holds no records (CSV: a header line, then records; NDJSON: a JSON value a line)",
                    ));
                }
                Ok(summary)
            }
            // Not waited for: it may be blocked on a body that is still
            // arriving, and stops at its next batch (the channel is gone).
            Err(mut e) => {
                e.message = format!(
                    "{} (records before this one: {} accepted, {} duplicates, up to line {})",
                    e.message, summary.accepted, summary.duplicates, summary.last_line
                );
                Err(e)
            }
        }
    }

    /// Writes one batch, waiting out the namespace's rate quota (in parts,
    /// when the quota is smaller than the batch): how many were stored and
    /// how many were duplicates.
    async fn write(
        &self,
        target: &ImportTarget,
        event_type: Option<&str>,
        records: Vec<Record>,
    ) -> Result<(u64, u64), Error> {
        loop {
            let tried = match target {
                ImportTarget::Queue(queue) => self.enqueue(queue, &records).await,
                ImportTarget::Topic(namespace, topic) => {
                    self.publish(namespace, topic, event_type, &records).await
                }
            };
            match tried {
                Err(e) if e.code == ErrorCode::RateLimited => match e.retry_after_ms {
                    Some(wait) => {
                        tokio::time::sleep(Duration::from_millis(wait.clamp(10, 5_000))).await;
                    }
                    // More at once than the quota allows in a second: in
                    // halves, down to one record (which the quota cannot
                    // refuse for its size).
                    None if records.len() > 1 => {
                        let mut first = records;
                        let second = first.split_off(first.len() / 2);
                        let (a, b) = Box::pin(self.write(target, event_type, first)).await?;
                        let (c, d) = Box::pin(self.write(target, event_type, second)).await?;
                        return Ok((a + c, b + d));
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    async fn enqueue(&self, queue: &QueueRef, records: &[Record]) -> Result<(u64, u64), Error> {
        let requests = records
            .iter()
            .map(|r| {
                let mut request = JobRequest::new(raw(&r.json)?);
                request.idempotency_key = r
                    .key
                    .as_ref()
                    .map(|k| format!("keel.import/{}/{k}", queue.queue));
                Ok(request)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let enqueued = self.jobs.enqueue_batch(queue, requests).await?;
        let duplicates = enqueued.iter().filter(|e| e.deduplicated).count() as u64;
        Ok((enqueued.len() as u64 - duplicates, duplicates))
    }

    async fn publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        event_type: Option<&str>,
        records: &[Record],
    ) -> Result<(u64, u64), Error> {
        let now = self.clock.now();
        let events = records
            .iter()
            .map(|r| NewEvent {
                generated_id: r.key.is_none(),
                id: r.key.clone().unwrap_or_else(|| self.topics.new_id()),
                kind: event_type.unwrap_or_default().to_owned(),
                source: "keel:import".into(),
                key: None,
                time: now,
                data: r.json.clone(),
                headers: Default::default(),
            })
            .collect();
        let published = self.topics.publish(namespace, topic, events).await?;
        let duplicates = published.iter().filter(|p| p.duplicate).count() as u64;
        Ok((published.len() as u64 - duplicates, duplicates))
    }
}

fn raw(json: &str) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(json.to_owned())
        .map_err(|e| Error::internal(format!("an import's record: {e}")))
}
