//! Lease numbers that no crash can hand out twice.
//!
//! A lease's answer leaves before its own commit is durable (`lease.rs`,
//! docs/design.md "Leases before their fsync"). A crash may then lose the
//! lease while its worker still holds the token, and a rolled-back
//! transaction undoes it the same way. The job comes back and is leased again,
//! which at-least-once allows, but the old token must never match the new
//! lease. So the number in a token is not the job's own count plus one (that
//! count is rolled back with the lease); it is drawn from a counter of this
//! run, whose range starts above every number of earlier runs: the epoch,
//! bumped and synced at every open, is the high bits.

use rusqlite::Connection;

/// Bits of a lease number below the epoch: 2^40 leases per run (127 days at
/// 100,000 a second). Lease numbers are stored as SQLite integers (i64),
/// which leaves 23 bits of epochs.
const RUN_BITS: u32 = 40;
const MAX_EPOCH: u64 = (1 << (63 - RUN_BITS)) - 1;

/// This run's lease numbers: its epoch's range, in order.
pub(crate) struct LeaseNumbers {
    next: u64,
    end: u64,
}

impl LeaseNumbers {
    /// Bumps the stored epoch and commits it; the caller syncs the WAL
    /// before handing out the first lease.
    pub(crate) fn begin(conn: &Connection) -> rusqlite::Result<Self> {
        let epoch: u64 = conn.query_row(
            "UPDATE lease_epoch SET epoch = epoch + 1 RETURNING epoch",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        if epoch > MAX_EPOCH {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!("the lease epoch ran out after {MAX_EPOCH} opens")),
            ));
        }
        Ok(Self::of_epoch(epoch))
    }

    fn of_epoch(epoch: u64) -> Self {
        LeaseNumbers {
            next: epoch << RUN_BITS,
            end: (epoch + 1) << RUN_BITS,
        }
    }

    /// The next lease number. A run that spends its whole range stops (a
    /// restart opens the next epoch) rather than hand out a number of the
    /// next epoch that nothing durable reserved.
    pub(crate) fn next(&mut self) -> u64 {
        if self.next >= self.end {
            tracing::error!(
                "this run handed out 2^40 leases, its range; stopping so that a restart opens a new lease epoch"
            );
            std::process::abort();
        }
        let n = self.next;
        self.next += 1;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_starts_above_every_number_of_the_run_before() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../migrations/0016_lease_epoch.sql"))
            .unwrap();
        let mut first = LeaseNumbers::begin(&conn).unwrap();
        let a = first.next();
        let b = first.next();
        assert!(b > a);
        let mut second = LeaseNumbers::begin(&conn).unwrap();
        assert!(
            second.next() >= first.end,
            "a new run starts past the old range"
        );
        assert!(a > 0, "above the counts of a database from before epochs");
    }

    #[test]
    fn the_last_epoch_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../migrations/0016_lease_epoch.sql"))
            .unwrap();
        conn.execute("UPDATE lease_epoch SET epoch = ?1", [MAX_EPOCH as i64])
            .unwrap();
        assert!(LeaseNumbers::begin(&conn).is_err());
        let last = LeaseNumbers::of_epoch(MAX_EPOCH);
        assert!(
            i64::try_from(last.end - 1).is_ok(),
            "every number fits SQLite's integer"
        );
    }
}
