//! Every bound Keel enforces, with its default. A limit that is hit produces a
//! clear error (400, 413, 429 or 507), never a crash or a silent drop.

/// Configurable bounds; see each field for the error that enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON payload (or result) of one job, in bytes → 413.
    pub max_payload_bytes: usize,
    /// Largest request body, in bytes; read as a stream and cut off there → 413.
    pub max_body_bytes: usize,
    /// Most jobs in one enqueue, ack or redrive batch → 400.
    pub max_batch: usize,
    /// Most jobs one lease call may ask for → 400.
    pub max_lease_jobs: u32,
    /// Longest lease long-poll, in ms → 400.
    pub max_wait_ms: u64,
    /// Unfinished jobs one namespace may hold → 429.
    pub max_namespace_jobs: u64,
    /// Longest idempotency key, ordering key, tag key or tag value → 400.
    pub max_key_len: usize,
    /// Most tags on one job → 400.
    pub max_tags: usize,
    /// Longest error message kept for a failed attempt; longer ones are cut.
    pub max_error_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_batch: 1000,
            max_lease_jobs: 1000,
            max_wait_ms: 60_000,
            max_namespace_jobs: 10_000_000,
            max_key_len: 256,
            max_tags: 32,
            max_error_len: 4096,
        }
    }
}

pub const MIN_PRIORITY: i64 = -100;
pub const MAX_PRIORITY: i64 = 100;
/// Shortest and longest lease a worker may ask for, in ms.
pub const MIN_LEASE_MS: u64 = 100;
pub const MAX_LEASE_MS: u64 = 24 * 3_600_000;
