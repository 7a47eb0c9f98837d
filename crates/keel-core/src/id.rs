//! Ids (of jobs and of runs) and lease tokens.
//!
//! Ids are UUIDv7: time-ordered, so the indexes they key stay append-mostly.
//! A lease token names one lease of one job: the job id and the job's lease
//! sequence number. The sequence counts every lease the job ever had and is never
//! reset (not even by redrive, which resets `attempt`), so a token from an
//! earlier lease can never match a later one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::{ContextV7, Uuid};

use crate::Timestamp;

/// Defines a time-ordered id type: a UUIDv7 that prints hyphenated, parses
/// from that text and serializes as it. Each kind of id is a type of its own,
/// so a run id can never be passed where a job id is meant.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Uuid::from_bytes(bytes))
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// A job's id.
    JobId
);
uuid_id!(
    /// A workflow run's id.
    RunId
);
uuid_id!(
    /// A notification's id (its deliveries are named by their jobs' ids).
    NotificationId
);
uuid_id!(
    /// An incident's id.
    IncidentId
);

/// Makes ids that sort in the order they were made, even within one millisecond.
/// Not thread-safe by design: one generator lives with the one writer that assigns ids.
#[derive(Debug, Default)]
pub struct JobIdGenerator(ContextV7);

impl JobIdGenerator {
    pub fn next(&self, now: Timestamp) -> JobId {
        JobId(self.uuid(now))
    }

    /// A run id from the same sequence: runs and jobs made together sort together.
    pub fn next_run(&self, now: Timestamp) -> RunId {
        RunId(self.uuid(now))
    }

    /// A notification id from the same sequence.
    pub fn next_notification(&self, now: Timestamp) -> NotificationId {
        NotificationId(self.uuid(now))
    }

    /// An incident id from the same sequence.
    pub fn next_incident(&self, now: Timestamp) -> IncidentId {
        IncidentId(self.uuid(now))
    }

    /// An event id for an event published without one: a UUIDv7, as text.
    pub fn next_event(&self, now: Timestamp) -> String {
        self.uuid(now).to_string()
    }

    fn uuid(&self, now: Timestamp) -> Uuid {
        let ms = now.as_millis().max(0) as u64;
        let ts = uuid::Timestamp::from_unix(&self.0, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        Uuid::new_v7(ts)
    }
}

/// Proof that a worker holds the current lease of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    pub job: JobId,
    pub lease_seq: u64,
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.job, self.lease_seq)
    }
}

impl FromStr for LeaseToken {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (job, seq) = s.rsplit_once('.').ok_or(())?;
        Ok(LeaseToken {
            job: job.parse().map_err(|_| ())?,
            lease_seq: seq.parse().map_err(|_| ())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order_within_one_millisecond() {
        let ids = JobIdGenerator::default();
        let now = Timestamp::from_millis(1_800_000_000_000);
        let made: Vec<JobId> = (0..1000).map(|_| ids.next(now)).collect();
        assert!(made.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn lease_token_round_trips() {
        let token = LeaseToken {
            job: JobIdGenerator::default().next(Timestamp::from_millis(1)),
            lease_seq: 42,
        };
        assert_eq!(token.to_string().parse::<LeaseToken>(), Ok(token));
        assert!("nope".parse::<LeaseToken>().is_err());
        assert!(format!("{}.x", token.job).parse::<LeaseToken>().is_err());
    }
}
