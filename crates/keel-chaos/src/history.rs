//! The history: every operation a client made and what came of it, with the
//! client's clock; and the checker, which reads a verdict from it in the
//! spirit of Jepsen's queue checkers.
//!
//! Each job carries a `uid` the client made, so anything the server hands
//! out can be traced to the request that wrote it. An operation whose answer
//! never came (the server died with it) is `Unknown`: it may or may not have
//! happened, and the checker resolves it from what was seen later.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// What a write's answer said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx: the server says it is durable.
    Acked,
    /// A definite refusal (a 4xx or 5xx, or no connection at all): it did
    /// not happen.
    Failed,
    /// The request went out and no answer came: it may have happened.
    Unknown,
}

/// Which stream a uid belongs to: jobs enqueued by a client, or events
/// published to a topic whose subscription feeds a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Job,
    Event,
}

#[derive(Debug)]
pub(crate) enum Op {
    /// A write of `uid` under ordering key `key` (the producer writes a key's
    /// uids one after another, so their order is the issue order).
    Write {
        kind: Kind,
        uid: String,
        key: String,
        outcome: Outcome,
        /// The job's id, when the answer named one.
        id: Option<String>,
    },
    /// A worker was handed job `id` carrying `uid`.
    Lease {
        kind: Kind,
        uid: String,
        id: String,
        at: Instant,
    },
    /// The job carrying `uid` read back from the server after the drain:
    /// `succeeded` when a completion whose answer was lost did land; any
    /// other state means it is stored and not done yet.
    ReadBack { uid: String, state: String },
    /// A worker asked to complete job `id`; `sent` is when the request went.
    Complete {
        uid: String,
        token: String,
        sent: Instant,
        outcome: Outcome,
    },
}

/// The operations, appended by every client at once.
#[derive(Default)]
pub(crate) struct History {
    ops: Mutex<Vec<Op>>,
    /// Writes acknowledged less completions acknowledged: roughly what
    /// waits in the queues, for the producers' flow control.
    backlog: AtomicIsize,
}

impl History {
    pub(crate) fn record(&self, op: Op) {
        match &op {
            Op::Write {
                outcome: Outcome::Acked,
                ..
            } => {
                self.backlog.fetch_add(1, Ordering::Relaxed);
            }
            Op::Complete {
                outcome: Outcome::Acked,
                ..
            } => {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    pub(crate) fn backlog(&self) -> isize {
        self.backlog.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The uids written and acknowledged that are not known to be done (no
    /// completion acknowledged, none read back), with the job ids they
    /// were handed out as: what the drain waits for.
    pub(crate) fn outstanding(&self) -> Vec<(String, Vec<String>)> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let mut acked = BTreeSet::new();
        let mut done = BTreeSet::new();
        let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
        for op in ops.iter() {
            match op {
                Op::Write {
                    uid,
                    outcome: Outcome::Acked,
                    id,
                    ..
                } => {
                    acked.insert(uid.as_str());
                    ids.entry(uid).or_default().extend(id.clone());
                }
                Op::Lease { uid, id, .. } => ids.entry(uid).or_default().push(id.clone()),
                Op::Complete {
                    uid,
                    outcome: Outcome::Acked,
                    ..
                } => {
                    done.insert(uid.as_str());
                }
                Op::ReadBack { uid, state } if state == "succeeded" => {
                    done.insert(uid.as_str());
                }
                _ => {}
            }
        }
        acked
            .difference(&done)
            .map(|uid| {
                let mut ids = ids.remove(uid).unwrap_or_default();
                ids.dedup();
                ((*uid).to_owned(), ids)
            })
            .collect()
    }

    pub(crate) fn check(&self) -> Verdict {
        check(&self.ops.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The checker's findings for one kind.
#[derive(Default, Debug)]
pub(crate) struct Findings {
    /// Writes acknowledged.
    pub(crate) acked: usize,
    /// Writes that got no answer, and of those, the ones seen later.
    pub(crate) unknown: usize,
    pub(crate) unknown_landed: usize,
    /// Completions whose answer was lost, found done on the server.
    pub(crate) completion_unknown_landed: usize,
    /// Acknowledged, never completed by any worker, and not stored.
    pub(crate) lost: usize,
    /// Acknowledged and stored, not done when the drain ended: not lost,
    /// but the drain did not finish (or something is stuck).
    pub(crate) pending: usize,
    /// One uid completed (acknowledged) under two leases, or handed out as
    /// two different jobs.
    pub(crate) duplicated: usize,
    /// A job of a key handed out before the key's earlier job was done.
    pub(crate) reordered: usize,
    /// Seen, never written.
    pub(crate) unexpected: usize,
    /// A few examples of each violation, for the report.
    pub(crate) examples: Vec<String>,
}

impl Findings {
    pub(crate) fn violations(&self) -> usize {
        self.lost + self.duplicated + self.reordered + self.unexpected
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

#[derive(Default, Debug)]
pub(crate) struct Verdict {
    pub(crate) kinds: BTreeMap<Kind, Findings>,
}

impl Verdict {
    pub(crate) fn violations(&self) -> usize {
        self.kinds.values().map(Findings::violations).sum()
    }

    pub(crate) fn pending(&self) -> usize {
        self.kinds.values().map(|k| k.pending).sum()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, k) in &self.kinds {
            writeln!(
                f,
                "{kind:?}: acked {}, unknown {} ({} landed), completions unanswered but done {}, lost {}, still pending {}, duplicated {}, reordered {}, unexpected {}",
                k.acked,
                k.unknown,
                k.unknown_landed,
                k.completion_unknown_landed,
                k.lost,
                k.pending,
                k.duplicated,
                k.reordered,
                k.unexpected
            )?;
            for example in &k.examples {
                writeln!(f, "  {example}")?;
            }
        }
        Ok(())
    }
}

/// What happened to one uid.
#[derive(Default)]
struct Life {
    kind: Option<Kind>,
    outcome: Option<Outcome>,
    /// Its place in its key's issue order.
    key: Option<(String, usize)>,
    /// Job ids it was handed out as, with the first time each was.
    leases: Vec<(String, Instant)>,
    /// Completions acknowledged: the lease tokens.
    completed: Vec<String>,
    /// Read back from the server: done, or stored and not done yet.
    finished: bool,
    pending: bool,
    /// When its last completion that may have landed was sent.
    last_done: Option<Instant>,
}

fn check(ops: &[Op]) -> Verdict {
    let mut lives: HashMap<&str, Life> = HashMap::new();
    let mut keys: HashMap<(Kind, &str), Vec<&str>> = HashMap::new();
    for op in ops {
        match op {
            Op::Write {
                kind,
                uid,
                key,
                outcome,
                ..
            } => {
                let order = keys.entry((*kind, key.as_str())).or_default();
                let life = lives.entry(uid.as_str()).or_default();
                life.kind = Some(*kind);
                life.outcome = Some(*outcome);
                life.key = Some((key.clone(), order.len()));
                order.push(uid.as_str());
            }
            Op::Lease { kind, uid, id, at } => {
                let life = lives.entry(uid.as_str()).or_default();
                life.kind.get_or_insert(*kind);
                if !life.leases.iter().any(|(seen, _)| seen == id) {
                    life.leases.push((id.clone(), *at));
                }
            }
            Op::ReadBack { uid, state } => {
                let life = lives.entry(uid.as_str()).or_default();
                if state == "succeeded" {
                    life.finished = true;
                } else {
                    life.pending = true;
                }
            }
            Op::Complete {
                uid,
                token,
                sent,
                outcome,
                ..
            } => {
                let life = lives.entry(uid.as_str()).or_default();
                if *outcome == Outcome::Acked {
                    life.completed.push(token.clone());
                }
                if *outcome != Outcome::Failed {
                    life.last_done = Some(life.last_done.map_or(*sent, |t| t.max(*sent)));
                }
            }
        }
    }

    let mut verdict = Verdict::default();
    for (uid, life) in &lives {
        let kind = life.kind.unwrap_or(Kind::Job);
        let findings = verdict.kinds.entry(kind).or_default();
        let seen = !life.leases.is_empty();
        match life.outcome {
            None => {
                findings.unexpected += 1;
                findings.example(format!("unexpected: {uid} was handed out, never written"));
            }
            Some(Outcome::Acked) => {
                findings.acked += 1;
                findings.completion_unknown_landed +=
                    usize::from(life.finished && life.completed.is_empty());
                if life.completed.is_empty() && !life.finished && life.pending {
                    findings.pending += 1;
                } else if life.completed.is_empty() && !life.finished {
                    findings.lost += 1;
                    findings.example(format!(
                        "lost: {uid} was acknowledged and never completed (handed out {} times)",
                        life.leases.len()
                    ));
                }
            }
            Some(Outcome::Unknown) => {
                findings.unknown += 1;
                findings.unknown_landed += usize::from(seen);
            }
            Some(Outcome::Failed) if seen => {
                findings.unexpected += 1;
                findings.example(format!("unexpected: {uid} was refused, then handed out"));
            }
            Some(Outcome::Failed) => {}
        }
        let distinct: BTreeSet<&str> = life.completed.iter().map(String::as_str).collect();
        if distinct.len() > 1 || life.leases.len() > 1 {
            findings.duplicated += 1;
            findings.example(format!(
                "duplicated: {uid} completed under {} leases, handed out as {} jobs",
                distinct.len(),
                life.leases.len()
            ));
        }
    }

    // Per key, in issue order: a uid may be handed out only once every
    // earlier uid of its key is done (its last completion was sent).
    for ((kind, key), uids) in &keys {
        let mut done_by: Option<Instant> = None;
        for uid in uids {
            let Some(life) = lives.get(uid) else { continue };
            let first_lease = life.leases.iter().map(|(_, at)| *at).min();
            if let (Some(first), Some(before)) = (first_lease, done_by)
                && first < before
            {
                let findings = verdict.kinds.entry(*kind).or_default();
                findings.reordered += 1;
                findings.example(format!(
                    "reordered: {uid} of key {key} was handed out before the key's earlier job was done"
                ));
            }
            if let Some(done) = life.last_done {
                done_by = Some(done_by.map_or(done, |t| t.max(done)));
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write(h: &History, uid: &str, key: &str, outcome: Outcome) {
        h.record(Op::Write {
            kind: Kind::Job,
            uid: uid.into(),
            key: key.into(),
            outcome,
            id: None,
        });
    }

    fn lease(h: &History, uid: &str, id: &str, at: Instant) {
        h.record(Op::Lease {
            kind: Kind::Job,
            uid: uid.into(),
            id: id.into(),
            at,
        });
    }

    fn complete(h: &History, uid: &str, token: &str, sent: Instant, outcome: Outcome) {
        h.record(Op::Complete {
            uid: uid.into(),
            token: token.into(),
            sent,
            outcome,
        });
    }

    #[test]
    fn a_clean_history_has_no_violation() {
        let h = History::default();
        let t = Instant::now();
        write(&h, "a", "k", Outcome::Acked);
        write(&h, "b", "k", Outcome::Unknown);
        write(&h, "c", "k", Outcome::Failed);
        lease(&h, "a", "1", t);
        complete(&h, "a", "1.1", t + Duration::from_millis(1), Outcome::Acked);
        lease(&h, "b", "2", t + Duration::from_millis(2));
        complete(&h, "b", "2.1", t + Duration::from_millis(3), Outcome::Acked);
        let v = h.check();
        assert_eq!(v.violations(), 0, "{v}");
        let jobs = &v.kinds[&Kind::Job];
        assert_eq!((jobs.acked, jobs.unknown, jobs.unknown_landed), (1, 1, 1));
    }

    #[test]
    fn each_violation_is_caught() {
        let h = History::default();
        let t = Instant::now();
        // lost: acked, never completed
        write(&h, "lost", "k1", Outcome::Acked);
        // duplicated: completed under two leases
        write(&h, "dup", "k2", Outcome::Acked);
        lease(&h, "dup", "9", t);
        complete(&h, "dup", "9.1", t, Outcome::Acked);
        complete(&h, "dup", "9.2", t, Outcome::Acked);
        // reordered: y handed out before x was done
        write(&h, "x", "k3", Outcome::Acked);
        write(&h, "y", "k3", Outcome::Acked);
        lease(&h, "x", "3", t);
        lease(&h, "y", "4", t + Duration::from_millis(1));
        complete(&h, "x", "3.1", t + Duration::from_millis(2), Outcome::Acked);
        complete(&h, "y", "4.1", t + Duration::from_millis(3), Outcome::Acked);
        // unexpected: handed out, never written
        lease(&h, "ghost", "5", t);
        let v = h.check();
        let jobs = &v.kinds[&Kind::Job];
        assert_eq!(
            (jobs.lost, jobs.duplicated, jobs.reordered, jobs.unexpected),
            (1, 1, 1, 1),
            "{v}"
        );
    }
}
