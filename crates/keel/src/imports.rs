//! `keel import`: a CSV or NDJSON file (or standard input) into a queue's
//! jobs or a topic's events. The file goes as a run of segments (about
//! 8 MiB each, cut between records; a CSV segment starts with the header),
//! two in flight; each answered segment moves a checkpoint beside the file
//! (`FILE.keel-import`), so an import stopped half-way (a crash, ^C, a lost
//! connection) goes on from the last answered segment when run again, and
//! the key column makes the overlap count as duplicates rather than twice.
//! A progress bar with the rate and the time left shows on a terminal; a
//! summary (accepted, duplicates, rejected with their lines) at the end.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use keel_client::{ImportAnswer, ImportInto, ImportQuery, ImportRejection};
use serde::{Deserialize, Serialize};

use crate::admin::{Target, print_json};

/// Bytes a segment holds at least (it ends at the next record's start).
const SEGMENT_BYTES: usize = 8 << 20;
/// Segments sent at once.
const IN_FLIGHT: usize = 2;
/// Rejections the summary prints.
const REJECTS_SHOWN: usize = 20;

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The queue to import into (with --topic: the topic).
    into: String,
    /// CSV with a header line, or NDJSON; `-` reads standard input (which
    /// cannot resume).
    file: PathBuf,
    /// Import into a topic's events instead of a queue's jobs.
    #[arg(long)]
    topic: bool,
    /// `csv` or `ndjson` (default: by the file's extension).
    #[arg(long)]
    format: Option<String>,
    /// The column (CSV) or field (NDJSON) naming each record: a record
    /// whose key was imported before is a duplicate, not imported again.
    #[arg(long)]
    key: Option<String>,
    /// The JSON each record becomes, or @FILE holding it:
    /// `{"email":"{{email}}","age":"{{age:number}}"}` (docs/api.md,
    /// "Bulk import"); default: the record's fields.
    #[arg(long)]
    template: Option<String>,
    /// The events' type (with --topic).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Start from the beginning even if a checkpoint says otherwise.
    #[arg(long)]
    restart: bool,
    /// Bytes a segment holds at least (tests make it small).
    #[arg(long, hide = true, default_value_t = SEGMENT_BYTES)]
    segment_bytes: usize,
    #[command(flatten)]
    target: Target,
}

/// Where an import of one file stands, beside the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    server: String,
    namespace: String,
    into: String,
    topic: bool,
    size: u64,
    modified_ms: u128,
    /// Bytes of the file done (a record's start).
    offset: u64,
    /// Newlines before `offset`.
    lines: u64,
    totals: Totals,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Totals {
    records: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    rejects: Vec<ImportRejection>,
}

impl Totals {
    fn add(&mut self, a: ImportAnswer) {
        self.records += a.records;
        self.accepted += a.accepted;
        self.duplicates += a.duplicates;
        self.rejected += a.rejected;
        let room = 100usize.saturating_sub(self.rejects.len());
        self.rejects.extend(a.rejects.into_iter().take(room));
    }
}

/// One segment: its bytes (a CSV one after the header) and where it lies.
struct Segment {
    body: Vec<u8>,
    /// The file's offset after it, and the newlines before that.
    end: u64,
    lines_at_end: u64,
    /// The line of its first record.
    first_line: u64,
}

pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let format = match args.format.as_deref() {
        Some(f @ ("csv" | "ndjson")) => f.to_owned(),
        Some(other) => bail!("--format {other}: csv or ndjson"),
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some("csv") => "csv".into(),
            Some("ndjson" | "jsonl") => "ndjson".into(),
            _ => bail!(
                "give --format csv or --format ndjson for {}",
                args.file.display()
            ),
        },
    };
    let template = match args.template.as_deref() {
        Some(t) if t.starts_with('@') => {
            Some(std::fs::read_to_string(&t[1..]).with_context(|| format!("reading {}", &t[1..]))?)
        }
        other => other.map(str::to_owned),
    };
    let stdin = args.file.as_os_str() == "-";
    let checkpoint_path = (!stdin).then(|| checkpoint_path(&args.file));
    let mut point = Checkpoint {
        server: args.target.server().to_owned(),
        namespace: args.target.namespace.clone(),
        into: args.into.clone(),
        topic: args.topic,
        ..Checkpoint::default()
    };
    let input: Box<dyn Read + Send> = if stdin {
        Box::new(std::io::stdin())
    } else {
        let file =
            File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
        let meta = file.metadata()?;
        point.size = meta.len();
        point.modified_ms = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Box::new(file)
    };
    if let Some(path) = &checkpoint_path
        && !args.restart
        && let Some(saved) = read_checkpoint(path)
    {
        let same = Checkpoint {
            offset: 0,
            lines: 0,
            totals: Totals::default(),
            ..saved.clone()
        } == point;
        if same {
            let _ = writeln!(
                std::io::stderr(),
                "resuming {} from line {} ({} records done; --restart to start over)",
                args.file.display(),
                saved.lines + 1,
                saved.totals.records
            );
            point = saved;
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "{} changed since its checkpoint: starting over",
                args.file.display()
            );
        }
    }
    let csv = format == "csv";
    let (header, segments) = split(input, csv, args.segment_bytes, (point.offset, point.lines))?;
    let progress = progress(point.size, point.offset);
    let started = Instant::now();
    let query = ImportQuery {
        format: Some(format),
        key: args.key.clone(),
        template,
        line: None,
        kind: args.event_type.clone(),
    };
    let into = if args.topic {
        ImportInto::Topic(&args.into)
    } else {
        ImportInto::Queue(&args.into)
    };
    let (namespace, client, header) = (&args.target.namespace, &client, &header);
    let mut answers = segments
        .map(|segment| {
            let query = query.clone();
            async move {
                let segment = segment.context("reading the file")?;
                let query = ImportQuery {
                    line: Some(segment.first_line),
                    ..query
                };
                let mut body = header.clone();
                body.extend_from_slice(&segment.body);
                let answer = client
                    .import(namespace, into, &query, body)
                    .await
                    .context("the server refused the import")?;
                anyhow::Ok((segment.end, segment.lines_at_end, answer))
            }
        })
        .buffered(IN_FLIGHT);
    let done_before = point.totals.records;
    while let Some(answered) = answers.next().await {
        let (end, lines, answer) = answered?;
        point.totals.add(answer);
        point.offset = end;
        point.lines = lines;
        if let Some(path) = &checkpoint_path {
            write_checkpoint(path, &point)?;
        }
        progress.set_position(end);
        let rate = (point.totals.records - done_before) as f64 / started.elapsed().as_secs_f64();
        progress.set_message(format!("{} records, {rate:.0}/s", point.totals.records));
    }
    progress.finish_and_clear();
    if let Some(path) = &checkpoint_path {
        let _ = std::fs::remove_file(path);
    }
    summary(&args.target, &point.totals, started.elapsed())
}

fn summary(target: &Target, totals: &Totals, took: Duration) -> anyhow::Result<()> {
    if target.json {
        return print_json(totals);
    }
    let duplicates = match totals.duplicates {
        1 => "1 duplicate".to_owned(),
        n => format!("{n} duplicates"),
    };
    println!(
        "{} records in {:.1} s: {} accepted, {duplicates}, {} rejected",
        totals.records,
        took.as_secs_f64(),
        totals.accepted,
        totals.rejected
    );
    for r in totals.rejects.iter().take(REJECTS_SHOWN) {
        println!("  line {}: {}", r.line, r.error);
    }
    if totals.rejected as usize > REJECTS_SHOWN {
        println!("  … and {} more", totals.rejected as usize - REJECTS_SHOWN);
    }
    Ok(())
}

fn checkpoint_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".keel-import");
    PathBuf::from(name)
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Written whole to a temporary file, then renamed over the old one.
fn write_checkpoint(path: &Path, point: &Checkpoint) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_vec(point)?)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn progress(total: u64, at: u64) -> indicatif::ProgressBar {
    let bar = if total > 0 {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    let style = if total > 0 {
        "{bar:30} {bytes}/{total_bytes} {msg}, {eta} left"
    } else {
        "{spinner} {bytes} {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(style) {
        bar.set_style(style);
    }
    bar.set_position(at);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The CSV header (empty for NDJSON) and the segments after `offset`, read
/// on a thread of their own, at most two ahead of the sender.
fn split(
    input: Box<dyn Read + Send>,
    csv: bool,
    segment_bytes: usize,
    (offset, lines): (u64, u64),
) -> anyhow::Result<(
    Vec<u8>,
    impl futures_util::Stream<Item = std::io::Result<Segment>>,
)> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut cutter = Cutter { csv, quoted: false };
    let header = if csv {
        let mut header = Vec::new();
        cutter.take(&mut input, 1, &mut header)?;
        if header.is_empty() {
            bail!("the file is empty: a CSV file starts with its header");
        }
        header
    } else {
        Vec::new()
    };
    // Skip what a checkpoint says is done (a CSV header is in it too).
    let mut at = header.len() as u64;
    let mut skipped = Vec::new();
    while at < offset {
        skipped.clear();
        let want = usize::try_from(offset - at)
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        let n = input.by_ref().take(want as u64).read_to_end(&mut skipped)?;
        if n == 0 {
            bail!("the file is shorter than its checkpoint says");
        }
        at += n as u64;
    }
    let mut newlines = if offset > 0 { lines } else { u64::from(csv) };
    let (send, receive) = tokio::sync::mpsc::channel(IN_FLIGHT);
    std::thread::spawn(move || {
        loop {
            let mut body = Vec::with_capacity(segment_bytes + (64 << 10));
            let first_line = newlines + 1;
            let taken = match cutter.take(&mut input, segment_bytes, &mut body) {
                Ok(taken) => taken,
                Err(e) => {
                    let _ = send.blocking_send(Err(e));
                    return;
                }
            };
            if body.is_empty() {
                return;
            }
            at += body.len() as u64;
            newlines += taken;
            let segment = Segment {
                body,
                end: at,
                lines_at_end: newlines,
                first_line,
            };
            if send.blocking_send(Ok(segment)).is_err() {
                return;
            }
        }
    });
    Ok((header, tokio_stream(receive)))
}

fn tokio_stream<T: Send + 'static>(
    mut receive: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receive.poll_recv(cx))
}

/// Cuts input between records: at a newline outside a quoted CSV field
/// (RFC 4180: `""` inside quotes is a quote, so parity tells), or at any
/// newline for NDJSON (a newline inside a JSON string is escaped).
struct Cutter {
    csv: bool,
    quoted: bool,
}

impl Cutter {
    /// Moves whole records into `out` until it holds at least `at_least`
    /// bytes (or the input ends): the newlines moved.
    fn take(
        &mut self,
        input: &mut impl std::io::BufRead,
        at_least: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u64> {
        let mut newlines = 0;
        loop {
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                return Ok(newlines);
            }
            let mut used = 0;
            let mut cut = false;
            for (i, &b) in buf.iter().enumerate() {
                match b {
                    b'"' if self.csv => self.quoted = !self.quoted,
                    b'\n' => {
                        newlines += 1;
                        if !self.quoted && out.len() + i + 1 >= at_least {
                            used = i + 1;
                            cut = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if !cut {
                used = buf.len();
            }
            out.extend_from_slice(&buf[..used]);
            input.consume(used);
            if cut {
                return Ok(newlines);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_between_records() {
        let text = b"id,note\n1,\"two\nlines\"\n2,\"a \"\"quote\"\"\"\n3,x\n";
        let mut input = &text[..];
        let mut cutter = Cutter {
            csv: true,
            quoted: false,
        };
        let mut header = Vec::new();
        assert_eq!(cutter.take(&mut input, 1, &mut header).unwrap(), 1);
        assert_eq!(header, b"id,note\n");
        let mut first = Vec::new();
        // At least 3 bytes: the first record, whose field holds a newline.
        assert_eq!(cutter.take(&mut input, 3, &mut first).unwrap(), 2);
        assert_eq!(first, b"1,\"two\nlines\"\n");
        let mut rest = Vec::new();
        assert_eq!(cutter.take(&mut input, 1, &mut rest).unwrap(), 1);
        assert_eq!(rest, b"2,\"a \"\"quote\"\"\"\n");
        rest.clear();
        assert_eq!(cutter.take(&mut input, 100, &mut rest).unwrap(), 1);
        assert_eq!(rest, b"3,x\n");
    }
}
