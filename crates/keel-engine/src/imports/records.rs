//! Reading an import's records, on a blocking thread: CSV (a header, then
//! records whose quoted fields may span lines) or NDJSON (one JSON value a
//! line, blank lines skipped). Each record becomes its JSON (through the
//! template, or as it is) and its key; a record that cannot is rejected
//! with its line, and the reading goes on. Records go to the writing task
//! in batches, over a bounded channel: memory stays bounded whatever the
//! input's size.

use std::io::{BufRead, BufReader, Read};

use keel_core::Error;
use serde_json::Value;
use tokio::sync::mpsc;

use super::template::{Field, Template, push_json_string};
use super::{Format, Rejected};

/// One record ready to write.
pub(super) struct Record {
    pub(super) line: u64,
    pub(super) json: String,
    pub(super) key: Option<String>,
}

/// Records read and rejected since the last batch.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) records: Vec<Record>,
    pub(super) rejected: Vec<Rejected>,
}

/// How to read: everything but the input.
pub(super) struct Reading {
    pub(super) format: Format,
    pub(super) template: Option<Template>,
    pub(super) key: Option<String>,
    /// The line, in the whole file, of the input's first record.
    pub(super) first_line: u64,
    pub(super) batch: usize,
    pub(super) max_json_bytes: usize,
    pub(super) max_key_bytes: usize,
}

type Out = mpsc::Sender<Result<Batch, Error>>;

/// Reads `input` to its end (or until the writer stops listening).
pub(super) fn read(reading: Reading, input: impl Read, out: Out) {
    let mut batches = Batches {
        out,
        reading: &reading,
        batch: Batch::default(),
    };
    let ended = match reading.format {
        Format::Csv => csv_records(&reading, input, &mut batches),
        Format::Ndjson => ndjson_records(&reading, input, &mut batches),
    };
    match ended {
        Ok(()) => {
            batches.flush();
        }
        Err(e) => {
            batches.flush();
            let _ = batches.out.blocking_send(Err(e));
        }
    }
}

struct Batches<'a> {
    out: Out,
    reading: &'a Reading,
    batch: Batch,
}

impl Batches<'_> {
    /// Adds a record (or its rejection); false once the writer has stopped.
    fn push(&mut self, line: u64, made: Result<(String, Option<String>), String>) -> bool {
        let checked = made.and_then(|(json, key)| {
            if json.len() > self.reading.max_json_bytes {
                return Err(format!(
                    "{} bytes of JSON; at most {}",
                    json.len(),
                    self.reading.max_json_bytes
                ));
            }
            match key {
                Some(k) if k.is_empty() => Err(format!(
                    "no key (column {})",
                    self.reading.key.as_deref().unwrap_or_default()
                )),
                Some(k) if k.len() > self.reading.max_key_bytes => Err(format!(
                    "the key is {} bytes; at most {}",
                    k.len(),
                    self.reading.max_key_bytes
                )),
                key => Ok((json, key)),
            }
        });
        match checked {
            Ok((json, key)) => self.batch.records.push(Record { line, json, key }),
            Err(error) => self.batch.rejected.push(Rejected { line, error }),
        }
        if self.batch.records.len() + self.batch.rejected.len() < self.reading.batch {
            return true;
        }
        self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.batch.records.is_empty() && self.batch.rejected.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.out.blocking_send(Ok(batch)).is_ok()
    }
}

fn csv_records(
    reading: &Reading,
    input: impl Read,
    batches: &mut Batches<'_>,
) -> Result<(), Error> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 << 10)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| Error::invalid(format!("the CSV header: {e}")))?
        .clone();
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            let columns: Vec<&str> = header.iter().collect();
            Error::invalid(format!(
                "no column {name:?}; the header has {}",
                columns.join(", ")
            ))
        })
    };
    let key = reading.key.as_deref().map(column).transpose()?;
    let holes = match &reading.template {
        Some(t) => t
            .names
            .iter()
            .map(|n| column(n))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let read = reader.read_record(&mut record);
        let line = reading.first_line + record.position().map_or(0, |p| p.line().saturating_sub(2));
        let made = match read {
            Ok(false) => return Ok(()),
            Ok(true) if record.len() != header.len() => Err(format!(
                "{} fields; the header has {}",
                record.len(),
                header.len()
            )),
            Ok(true) => render_csv(reading.template.as_ref(), &header, &record, &holes)
                .map(|json| (json, key.map(|k| record[k].to_owned()))),
            Err(e) => {
                if let csv::ErrorKind::Io(broken) = e.kind() {
                    return Err(input_error(broken));
                }
                Err(format!("not CSV: {e}"))
            }
        };
        if !batches.push(line, made) {
            return Ok(());
        }
    }
}

/// The input broke off: its sender went quiet (408) or sent what is not
/// text.
fn input_error(e: &std::io::Error) -> Error {
    let code = match e.kind() {
        std::io::ErrorKind::TimedOut => keel_core::ErrorCode::RequestTimeout,
        _ => keel_core::ErrorCode::InvalidRequest,
    };
    Error::new(code, format!("reading the records: {e}"))
}

fn render_csv(
    template: Option<&Template>,
    header: &csv::StringRecord,
    record: &csv::StringRecord,
    holes: &[usize],
) -> Result<String, String> {
    let mut json = String::with_capacity(record.as_slice().len() * 2);
    match template {
        Some(t) => t.render(|i| Field::Text(&record[holes[i]]), &mut json)?,
        None => {
            json.push('{');
            for (i, (name, value)) in header.iter().zip(record.iter()).enumerate() {
                if i > 0 {
                    json.push(',');
                }
                push_json_string(&mut json, name);
                json.push(':');
                push_json_string(&mut json, value);
            }
            json.push('}');
        }
    }
    Ok(json)
}

fn ndjson_records(
    reading: &Reading,
    input: impl Read,
    batches: &mut Batches<'_>,
) -> Result<(), Error> {
    let mut lines = BufReader::with_capacity(256 << 10, input);
    let mut text = String::new();
    let mut at = 0u64;
    loop {
        text.clear();
        let n = lines.read_line(&mut text).map_err(|e| input_error(&e))?;
        if n == 0 {
            return Ok(());
        }
        let line = reading.first_line + at;
        at += 1;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        if !batches.push(line, render_ndjson(reading, trimmed)) {
            return Ok(());
        }
    }
}

fn render_ndjson(reading: &Reading, text: &str) -> Result<(String, Option<String>), String> {
    if reading.template.is_none() && reading.key.is_none() {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        return Ok((raw.get().to_owned(), None));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let key = reading.key.as_deref().map(|k| match value.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    });
    let json = match &reading.template {
        Some(t) => {
            let mut json = String::with_capacity(text.len());
            t.render(
                |i| value.get(&t.names[i]).map_or(Field::Missing, Field::Json),
                &mut json,
            )?;
            json
        }
        None => text.to_owned(),
    };
    Ok((json, key))
}
