//! Errors that carry a stable code. Every failure a client can see maps to one
//! [`ErrorCode`]: a snake_case string and an HTTP status, decided here once so
//! that the server, the CLI and the SDK agree.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is well-formed JSON but a field is missing, unknown or out of range.
    InvalidRequest,
    /// The body is not JSON at all.
    InvalidJson,
    /// A namespace or queue name breaks the naming rules.
    InvalidName,
    /// A batch holds more items than allowed.
    BatchTooLarge,
    NotFound,
    JobNotFound,
    /// The lease token is stale: the job was re-leased, expired, finished or cancelled.
    LeaseLost,
    /// The job is in a state the action does not apply to.
    InvalidState,
    /// Someone else changed the thing first (a run advanced by another node).
    Conflict,
    /// Fetch or commit on a subscription that delivers to a target.
    HasTarget,
    /// A commit whose events were handed to another consumer meanwhile.
    CursorStale,
    /// A workflow definition has problems; the message lists every one.
    InvalidDefinition,
    /// An `Idempotency-Key` already used, within its window, for a request
    /// with another body.
    IdempotencyKeyReused,
    /// A webhook whose signature or timestamp does not check out.
    Unauthenticated,
    /// A valid token whose role, namespaces or resources do not reach the request.
    Forbidden,
    /// A body or a payload is larger than the limit.
    PayloadTooLarge,
    /// An `If-Match` named a version that is no longer the current one.
    VersionMismatch,
    /// The namespace holds as many unfinished jobs as it may.
    NamespaceFull,
    /// A namespace's quota on a size (`max_jobs`, `max_schedules`,
    /// `max_subscriptions`) would be passed; the message names it.
    QuotaExceeded,
    /// A namespace's quota on a rate (`max_enqueue_per_second`,
    /// `max_publish_per_second`) is spent for now; `Retry-After` says when.
    RateLimited,
    /// The disk is full; nothing was written.
    StorageFull,
    MethodNotAllowed,
    /// The server is draining and takes no new work.
    ShuttingDown,
    /// The server holds as many connections, or as many request bodies
    /// being read, as it may; `Retry-After` says when to try again.
    Overloaded,
    /// A request's body did not arrive within the body read timeout.
    RequestTimeout,
    /// The database cannot be reached (restarting, a broken connection);
    /// `Retry-After` says when to try again. A write in flight when the
    /// connection broke may or may not have landed.
    StorageUnavailable,
    /// A third party Keel called on the client's behalf (an OAuth2
    /// provider's token endpoint) refused or did not answer in time.
    UpstreamFailed,
    /// A bug or an unexpected storage failure; the message says which.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the enum (the OpenAPI document lists them).
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidName,
        ErrorCode::BatchTooLarge,
        ErrorCode::NotFound,
        ErrorCode::JobNotFound,
        ErrorCode::LeaseLost,
        ErrorCode::InvalidState,
        ErrorCode::Conflict,
        ErrorCode::HasTarget,
        ErrorCode::CursorStale,
        ErrorCode::InvalidDefinition,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::PayloadTooLarge,
        ErrorCode::VersionMismatch,
        ErrorCode::NamespaceFull,
        ErrorCode::QuotaExceeded,
        ErrorCode::RateLimited,
        ErrorCode::StorageFull,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ShuttingDown,
        ErrorCode::Overloaded,
        ErrorCode::RequestTimeout,
        ErrorCode::StorageUnavailable,
        ErrorCode::UpstreamFailed,
        ErrorCode::Internal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::JobNotFound => "job_not_found",
            ErrorCode::LeaseLost => "lease_lost",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::Conflict => "conflict",
            ErrorCode::HasTarget => "has_target",
            ErrorCode::CursorStale => "cursor_stale",
            ErrorCode::InvalidDefinition => "invalid_definition",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::NamespaceFull => "namespace_full",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::Internal => "internal",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidName
            | ErrorCode::BatchTooLarge
            | ErrorCode::InvalidDefinition => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound | ErrorCode::JobNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::LeaseLost
            | ErrorCode::InvalidState
            | ErrorCode::Conflict
            | ErrorCode::HasTarget
            | ErrorCode::CursorStale => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::VersionMismatch => 412,
            ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::NamespaceFull
            | ErrorCode::QuotaExceeded
            | ErrorCode::RateLimited
            | ErrorCode::Overloaded => 429,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::ShuttingDown | ErrorCode::StorageUnavailable => 503,
            ErrorCode::StorageFull => 507,
            ErrorCode::UpstreamFailed => 502,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error with its code and a lowercase message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// When to try again, for a `rate_limited` error (`Retry-After`).
    pub retry_after_ms: Option<u64>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidRequest, message)
    }

    pub fn job_not_found(id: impl fmt::Display) -> Self {
        Error::new(ErrorCode::JobNotFound, format!("job {id} not found"))
    }

    pub fn lease_lost() -> Self {
        Error::new(
            ErrorCode::LeaseLost,
            "the lease token is stale: the job was re-leased, expired or finished",
        )
    }

    /// 429: a write would take `namespace` to `would_hold` unfinished jobs,
    /// over its `limit`. One wording, whichever store refuses.
    pub fn namespace_full(namespace: impl fmt::Display, would_hold: u64, limit: u64) -> Self {
        Error::new(
            ErrorCode::NamespaceFull,
            format!(
                "namespace {namespace} would hold {would_hold} unfinished jobs; the limit is {limit}"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}
