//! Unit tests of the job state machine.

use proptest::prelude::*;

use super::*;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn request(json: &str) -> Result<NewJob, Error> {
    let req: JobRequest = serde_json::from_str(json).unwrap();
    req.validate(&QueuePolicy::default(), &Limits::default(), T0)
}

fn ready_job(max_attempts: u32) -> JobLifecycle {
    let mut job = request(r#"{"payload":1}"#).unwrap();
    job.max_attempts = max_attempts;
    JobLifecycle::new(&job, T0)
}

const NO_JITTER: Backoff = Backoff {
    base_ms: 100,
    max_ms: 10_000,
    factor: 2.0,
    jitter: false,
};

#[test]
fn validation_resolves_defaults() {
    let job = request(r#"{"payload":{"a":1}}"#).unwrap();
    assert_eq!(job.priority, 0);
    assert_eq!(job.run_at, T0);
    assert_eq!(job.max_attempts, 20);
    assert_eq!(job.lease_ms, 30_000);
    assert_eq!(job.payload.get(), r#"{"a":1}"#);
}

#[test]
fn validation_reports_each_bad_field() {
    let cases = [
        (r#"{"payload":1,"priority":101}"#, "priority"),
        (r#"{"payload":1,"priority":-101}"#, "priority"),
        (
            r#"{"payload":1,"delay_ms":5,"run_at":"2026-01-01T00:00:00Z"}"#,
            "not both",
        ),
        (r#"{"payload":1,"run_at":"soon"}"#, "run_at"),
        (r#"{"payload":1,"max_attempts":0}"#, "max_attempts"),
        (r#"{"payload":1,"lease_ms":5}"#, "lease_ms"),
        (r#"{"payload":1,"idempotency_key":""}"#, "idempotency_key"),
        (r#"{"payload":1,"backoff":{"factor":0}}"#, "factor"),
        (
            r#"{"payload":1,"debounce":{"key":"","window_ms":10}}"#,
            "debounce.key",
        ),
        (
            r#"{"payload":1,"debounce":{"key":"k","window_ms":0}}"#,
            "window_ms",
        ),
        (
            r#"{"payload":1,"idempotency_key":"i","debounce":{"key":"k","window_ms":10}}"#,
            "not both",
        ),
    ];
    for (json, needle) in cases {
        let err = request(json).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{json}");
        assert!(err.message.contains(needle), "{json}: {}", err.message);
    }
}

#[test]
fn a_debounced_job_waits_out_its_window_or_its_run_at() {
    let job = request(r#"{"payload":1,"debounce":{"key":"k","window_ms":500}}"#).unwrap();
    assert_eq!(job.run_at, T0.plus_ms(500));
    assert_eq!(job.debounce_key.as_deref(), Some("k"));
    let later =
        request(r#"{"payload":1,"delay_ms":900,"debounce":{"key":"k","window_ms":500}}"#).unwrap();
    assert_eq!(later.run_at, T0.plus_ms(900));
}

#[test]
fn oversized_payload_is_payload_too_large() {
    let limits = Limits {
        max_payload_bytes: 8,
        ..Limits::default()
    };
    let req: JobRequest = serde_json::from_str(r#"{"payload":"0123456789"}"#).unwrap();
    let err = req
        .validate(&QueuePolicy::default(), &limits, T0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PayloadTooLarge);
}

#[test]
fn delayed_job_is_scheduled_until_due() {
    let job = request(r#"{"payload":1,"delay_ms":500}"#).unwrap();
    let mut life = JobLifecycle::new(&job, T0);
    assert_eq!(life.state, JobState::Scheduled);
    assert!(!life.promote(T0.plus_ms(499)));
    assert!(life.promote(T0.plus_ms(500)));
    assert_eq!(life.state, JobState::Ready);
}

#[test]
fn a_lease_under_a_chosen_number_fences_every_lower_one() {
    let mut life = ready_job(3);
    let grant = life.lease_as(T0, 1000, 7 << 40).unwrap();
    assert_eq!(grant.lease_seq, 7 << 40);
    assert_eq!(
        life.complete(1, T0.plus_ms(10)).unwrap_err().code,
        ErrorCode::LeaseLost,
        "a token from before the epoch cannot complete the job"
    );
    life.complete(7 << 40, T0.plus_ms(10)).unwrap();
    let mut again = ready_job(3);
    again.lease_as(T0, 1000, 5).unwrap();
    again
        .fail(
            5,
            T0,
            Retry {
                retry: true,
                retry_after_ms: Some(0),
            },
            &Backoff::default(),
            1.0,
        )
        .unwrap();
    assert_eq!(
        again.lease_as(T0, 1000, 5).unwrap_err().code,
        ErrorCode::Internal,
        "a number is never handed out twice for one job"
    );
}

#[test]
fn lease_complete_happy_path() {
    let mut life = ready_job(3);
    let grant = life.lease(T0, 1000).unwrap();
    assert_eq!((grant.lease_seq, grant.expires_at), (1, T0.plus_ms(1000)));
    assert_eq!(life.attempt, 1);
    life.complete(1, T0.plus_ms(10)).unwrap();
    assert_eq!(life.state, JobState::Succeeded);
    assert_eq!(
        life.complete(1, T0.plus_ms(11)).unwrap_err().code,
        ErrorCode::LeaseLost
    );
}

#[test]
fn failure_backs_off_then_dies_when_attempts_are_spent() {
    let mut life = ready_job(2);
    life.lease(T0, 1000).unwrap();
    let t = life.fail(
        1,
        T0,
        Retry {
            retry: true,
            retry_after_ms: None,
        },
        &NO_JITTER,
        0.5,
    );
    assert_eq!(t, Ok(Transition::Scheduled));
    assert_eq!(life.run_at, T0.plus_ms(100));
    assert!(
        life.lease(T0, 1000).is_err(),
        "not leasable before its backoff"
    );
    assert!(life.promote(T0.plus_ms(100)));
    life.lease(T0.plus_ms(100), 1000).unwrap();
    let t = life.fail(
        2,
        T0.plus_ms(100),
        Retry {
            retry: true,
            retry_after_ms: None,
        },
        &NO_JITTER,
        0.5,
    );
    assert_eq!(t, Ok(Transition::Dead));
    assert_eq!(life.state, JobState::Dead);
}

#[test]
fn retry_false_and_retry_after_are_honoured() {
    let mut life = ready_job(5);
    life.lease(T0, 1000).unwrap();
    let t = life.fail(
        1,
        T0,
        Retry {
            retry: true,
            retry_after_ms: Some(0),
        },
        &NO_JITTER,
        0.0,
    );
    assert_eq!(t, Ok(Transition::Ready), "a zero delay skips scheduled");
    life.lease(T0, 1000).unwrap();
    let t = life.fail(
        2,
        T0,
        Retry {
            retry: false,
            retry_after_ms: None,
        },
        &NO_JITTER,
        0.0,
    );
    assert_eq!(t, Ok(Transition::Dead));
}

#[test]
fn an_expired_lease_is_lost_even_before_it_is_reclaimed() {
    let mut life = ready_job(5);
    life.lease(T0, 1000).unwrap();
    assert!(life.heartbeat(1, T0.plus_ms(999), 1000).is_ok());
    assert_eq!(life.lease_expires_at, Some(T0.plus_ms(1999)));
    assert_eq!(
        life.complete(1, T0.plus_ms(1999)).unwrap_err().code,
        ErrorCode::LeaseLost
    );
    assert_eq!(life.expire(T0.plus_ms(1998)), None);
    assert_eq!(life.expire(T0.plus_ms(1999)), Some(Transition::Ready));
    assert_eq!(life.attempt, 1, "the expired lease counted as an attempt");
}

#[test]
fn expiry_of_the_last_attempt_is_dead() {
    let mut life = ready_job(1);
    life.lease(T0, 100).unwrap();
    assert_eq!(life.expire(T0.plus_ms(100)), Some(Transition::Dead));
}

#[test]
fn tokens_from_before_a_redrive_stay_stale() {
    let mut life = ready_job(1);
    life.lease(T0, 100).unwrap();
    life.fail(1, T0, Retry::default(), &NO_JITTER, 0.0).unwrap();
    life.redrive(T0).unwrap();
    assert_eq!(life.attempt, 0);
    let grant = life.lease(T0, 100).unwrap();
    assert_eq!(grant.lease_seq, 2);
    assert_eq!(life.complete(1, T0).unwrap_err().code, ErrorCode::LeaseLost);
    life.complete(2, T0).unwrap();
}

#[test]
fn cancel_applies_to_unfinished_jobs_only() {
    let mut life = ready_job(1);
    life.lease(T0, 100).unwrap();
    life.cancel().unwrap();
    assert_eq!(life.complete(1, T0).unwrap_err().code, ErrorCode::LeaseLost);
    assert_eq!(life.cancel().unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(life.redrive(T0).unwrap_err().code, ErrorCode::InvalidState);
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u16),
    Lease,
    Complete { token_age: u8 },
    Fail { token_age: u8, retry: bool },
    Heartbeat { token_age: u8 },
    Expire,
    Promote,
    Cancel,
    Redrive,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u16..3000).prop_map(Op::Advance),
        Just(Op::Lease),
        (0u8..3).prop_map(|token_age| Op::Complete { token_age }),
        (0u8..3, any::<bool>()).prop_map(|(token_age, retry)| Op::Fail { token_age, retry }),
        (0u8..3).prop_map(|token_age| Op::Heartbeat { token_age }),
        Just(Op::Expire),
        Just(Op::Promote),
        Just(Op::Cancel),
        Just(Op::Redrive),
    ]
}

proptest! {
    /// Whatever workers and maintenance do, in any order: a job completes at most
    /// once, only with the newest unexpired token, attempts never exceed the
    /// maximum, and a final job stays final (but for an explicit redrive of dead).
    #[test]
    fn no_job_completes_twice_or_with_a_stale_token(
        max_attempts in 1u32..5,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut life = ready_job(max_attempts);
        let mut now = T0;
        let mut completions = 0;
        for op in ops {
            let before = life.clone();
            let token = |age: u8| life.lease_seq.saturating_sub(u64::from(age));
            match op {
                Op::Advance(ms) => now = now.plus_ms(u64::from(ms)),
                Op::Lease => {
                    let r = life.lease(now, 1000);
                    prop_assert_eq!(r.is_ok(), before.state == JobState::Ready);
                }
                Op::Complete { token_age } => {
                    let seq = token(token_age);
                    let fresh = before.check_lease(seq, now).is_ok();
                    let r = life.complete(seq, now);
                    prop_assert_eq!(r.is_ok(), fresh);
                    if r.is_ok() {
                        prop_assert_eq!(token_age, 0, "only the newest lease may complete");
                        completions += 1;
                    }
                }
                Op::Fail { token_age, retry } => {
                    let seq = token(token_age);
                    let fresh = before.check_lease(seq, now).is_ok();
                    let r = life.fail(seq, now, Retry { retry, retry_after_ms: None }, &NO_JITTER, 0.5);
                    prop_assert_eq!(r.is_ok(), fresh);
                }
                Op::Heartbeat { token_age } => {
                    let seq = token(token_age);
                    let fresh = before.check_lease(seq, now).is_ok();
                    prop_assert_eq!(life.heartbeat(seq, now, 1000).is_ok(), fresh);
                }
                Op::Expire => { life.expire(now); }
                Op::Promote => { life.promote(now); }
                Op::Cancel => { let _ = life.cancel(); }
                Op::Redrive => { let _ = life.redrive(now); }
            }
            prop_assert!(completions <= 1);
            prop_assert!(life.attempt <= life.max_attempts);
            prop_assert!(life.lease_seq >= before.lease_seq, "the fencing number never goes back");
            prop_assert_eq!(life.state == JobState::Leased, life.lease_expires_at.is_some());
            if before.state.is_final() && before.state != JobState::Dead {
                prop_assert_eq!(&life, &before, "succeeded and cancelled are absorbing");
            }
        }
    }
}

#[test]
fn a_tag_is_written_either_way() {
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(parse_tag("tenant:acme").unwrap(), pair("tenant", "acme"));
    assert_eq!(parse_tag("tenant=acme").unwrap(), pair("tenant", "acme"));
    assert_eq!(parse_tag("url=http://x").unwrap(), pair("url", "http://x"));
    assert_eq!(parse_tag("k:a=b").unwrap(), pair("k", "a=b"));
    assert_eq!(parse_tag("empty:").unwrap(), pair("empty", ""));
    for bad in ["tenant", ":acme", "=acme", ""] {
        let e = parse_tag(bad).unwrap_err();
        assert!(
            e.message.contains("key:value (or key=value)"),
            "{bad}: {}",
            e.message
        );
    }
}
