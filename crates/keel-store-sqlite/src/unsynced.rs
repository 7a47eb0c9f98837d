//! What a lease may show before the commits behind it are durable.
//!
//! A lease is answered before its own commit (`lease.rs`, docs/design.md
//! "Leases before their fsync"), but never before the commit that made its
//! jobs leasable is durable: a crash would undo that commit (a completion
//! that freed the next job of a key, an enqueue never acknowledged). This
//! keeps, per commit not known synced, which jobs it made leasable.
//!
//! Most such jobs are new ones, and a new job's `seq` (its rowid) is above
//! every one committed before it, so new jobs are known by a `seq`
//! watermark per commit, at no cost per job. Everything else that makes a job
//! leasable (a retry, a promotion, a freed key, a redrive, a debounced
//! payload), and a new job whose rowid SQLite reused (it reuses the highest
//! one after that row is pruned), is kept by id.

use std::collections::{HashSet, VecDeque};

use keel_core::JobId;

/// Whether what makes a job leasable is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Readiness {
    Durable,
    /// Committed, not known synced.
    Committed,
    /// Made in the open transaction.
    Open,
}

#[derive(Debug)]
struct Commit {
    number: u64,
    /// The highest `seq` inserted by the end of this commit.
    seq: i64,
    jobs: HashSet<JobId>,
}

#[derive(Debug, Default)]
pub(crate) struct Unsynced {
    /// Made leasable by the open transaction, beyond its new jobs.
    open: HashSet<JobId>,
    commits: VecDeque<Commit>,
    /// The highest `seq` inserted so far, at the last commit, and at the
    /// last commit known durable.
    max_seq: i64,
    committed_seq: i64,
    durable_seq: i64,
}

impl Unsynced {
    /// Everything loaded at open is durable (the store syncs the WAL
    /// before serving).
    pub(crate) fn opened(max_seq: i64) -> Self {
        Unsynced {
            max_seq,
            committed_seq: max_seq,
            durable_seq: max_seq,
            ..Unsynced::default()
        }
    }

    /// A job row was inserted in the open transaction.
    pub(crate) fn inserted(&mut self, id: JobId, seq: i64) {
        if seq > self.committed_seq {
            self.max_seq = self.max_seq.max(seq);
        } else {
            // A reused rowid: the watermark cannot tell it from an old job.
            self.open.insert(id);
        }
    }

    /// A job became leasable, or changed in a way its lease shows, in the
    /// open transaction.
    pub(crate) fn changed(&mut self, id: JobId, seq: i64) {
        if seq <= self.committed_seq {
            self.open.insert(id);
        }
    }

    pub(crate) fn readiness(&self, id: &JobId, seq: i64) -> Readiness {
        if seq > self.committed_seq || self.open.contains(id) {
            Readiness::Open
        } else if seq > self.durable_seq || self.commits.iter().any(|c| c.jobs.contains(id)) {
            Readiness::Committed
        } else {
            Readiness::Durable
        }
    }

    /// The open transaction was committed as number `number`.
    pub(crate) fn committed(&mut self, number: u64) {
        if self.open.is_empty() && self.max_seq == self.committed_seq {
            return;
        }
        self.committed_seq = self.max_seq;
        self.commits.push_back(Commit {
            number,
            seq: self.max_seq,
            jobs: std::mem::take(&mut self.open),
        });
    }

    /// Commits up to number `durable` are synced.
    pub(crate) fn synced(&mut self, durable: u64) {
        while let Some(commit) = self.commits.pop_front_if(|c| c.number <= durable) {
            self.durable_seq = commit.seq;
        }
    }

    /// The open transaction was rolled back: what it inserted is gone, and
    /// its rowids may be handed out again.
    pub(crate) fn rolled_back(&mut self) {
        self.open.clear();
        self.max_seq = self.committed_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId::from_bytes([n; 16])
    }

    #[test]
    fn a_new_job_is_durable_only_once_its_commit_is_synced() {
        let mut u = Unsynced::opened(10);
        assert_eq!(u.readiness(&id(1), 5), Readiness::Durable);
        u.inserted(id(2), 11);
        assert_eq!(u.readiness(&id(2), 11), Readiness::Open);
        u.committed(1);
        assert_eq!(u.readiness(&id(2), 11), Readiness::Committed);
        u.synced(1);
        assert_eq!(u.readiness(&id(2), 11), Readiness::Durable);
    }

    #[test]
    fn an_old_job_made_leasable_is_kept_by_id() {
        let mut u = Unsynced::opened(10);
        u.changed(id(1), 3);
        assert_eq!(u.readiness(&id(1), 3), Readiness::Open);
        assert_eq!(u.readiness(&id(2), 4), Readiness::Durable);
        u.committed(1);
        u.committed(2);
        assert_eq!(u.readiness(&id(1), 3), Readiness::Committed);
        u.synced(2);
        assert_eq!(u.readiness(&id(1), 3), Readiness::Durable);
    }

    #[test]
    fn a_reused_rowid_and_a_rolled_back_one_are_not_taken_for_durable() {
        let mut u = Unsynced::opened(10);
        u.inserted(id(1), 10);
        assert_eq!(u.readiness(&id(1), 10), Readiness::Open, "rowid 10 reused");
        u.inserted(id(2), 11);
        u.rolled_back();
        u.inserted(id(3), 11);
        assert_eq!(u.readiness(&id(3), 11), Readiness::Open);
        u.committed(1);
        assert_eq!(u.readiness(&id(3), 11), Readiness::Committed);
    }
}
