//! Schedules through the real binary: slots fire on time with their
//! templates filled, the ledger says what became of each slot, overlap
//! policies hold a slot back or skip it, pause and resume, trigger and
//! backfill, event targets, the edge's refusals, and exactly one fire per
//! slot across a kill -9 (none twice, none lost inside the catch-up window).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Server, assert_error};
use keel_core::Timestamp;
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

fn every_second(queue: &str, overlap: &str) -> Value {
    json!({
        "every_ms": 1000,
        "overlap": overlap,
        "target": {"queue": queue, "job": {
            "payload": {"nominal": "${{ schedule.nominal_time }}", "by": "${{ schedule.name }}"},
            "max_attempts": 1,
        }},
    })
}

async fn put(server: &Server, name: &str, spec: Value) -> Value {
    let (status, body) = server
        .call("PUT", &format!("{NS}/schedules/{name}"), Some(spec))
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
    body
}

/// Leases until `n` jobs came (each completed unless `hold`), returning them.
async fn take(server: &Server, queue: &str, n: usize, hold: bool) -> Vec<Value> {
    let mut jobs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while jobs.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} jobs came",
            jobs.len()
        );
        let got = server
            .lease(
                queue,
                json!({"max_jobs": n - jobs.len(), "wait_ms": 5000, "lease_ms": 60_000}),
            )
            .await;
        for job in got {
            if !hold {
                let (status, body) = server
                    .post(
                        &format!("{NS}/jobs/{}/complete", job["id"].as_str().unwrap()),
                        json!({"lease_token": job["lease_token"]}),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
            jobs.push(job);
        }
    }
    jobs
}

fn nominal(job: &Value) -> i64 {
    Timestamp::parse_rfc3339(job["payload"]["nominal"].as_str().unwrap())
        .unwrap()
        .as_millis()
}

fn outcomes(schedule: &Value) -> Vec<String> {
    schedule["recent"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["outcome"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn slots_fire_on_time_with_their_templates_and_the_ledger_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let created = put(&server, "tick", every_second("ticks", "allow")).await;
    assert_eq!(created["next_fire_times"].as_array().unwrap().len(), 5);
    assert!(
        created["next_fire_times"][0]["local"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let jobs = take(&server, "ticks", 3, false).await;
    let mut slots: Vec<i64> = jobs.iter().map(nominal).collect();
    slots.sort_unstable();
    assert_eq!(slots[1] - slots[0], 1000);
    assert_eq!(slots[2] - slots[1], 1000);
    for job in &jobs {
        assert_eq!(job["payload"]["by"], "tick");
        assert_eq!(job["tags"]["keel.schedule"], "tick");
        // Leased within a second of its slot: the timer wakes at the slot.
        let created = Timestamp::parse_rfc3339(job["created_at"].as_str().unwrap()).unwrap();
        let late = created.as_millis() - nominal(job);
        assert!((0..1000).contains(&late), "fired {late} ms after its slot");
    }
    let (_, schedule) = server.get(&format!("{NS}/schedules/tick")).await;
    let recent = schedule["recent"].as_array().unwrap();
    assert!(recent.len() >= 3, "{schedule}");
    let ids: BTreeSet<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    let fired: BTreeSet<&str> = recent
        .iter()
        .filter(|s| s["outcome"] == "fired")
        .map(|s| s["target_id"].as_str().unwrap())
        .collect();
    assert!(ids.is_subset(&fired), "{ids:?} {fired:?}");
    assert!(schedule["fired"].as_u64().unwrap() >= 3);

    // The same content again changes nothing.
    let (status, again) = server
        .call(
            "PUT",
            &format!("{NS}/schedules/tick"),
            Some(every_second("ticks", "allow")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["updated_at"], created["updated_at"]);
    let (status, list) = server.get(&format!("{NS}/schedules")).await;
    assert_eq!(status, 200);
    assert_eq!(list["schedules"][0]["name"], "tick");
    let (ok, out, _) = server.cli(&["schedule", "get", "tick"]).await;
    assert!(
        ok && out.contains("every 1000 ms") && out.contains("fired"),
        "{out}"
    );
    let (status, _) = server
        .call("DELETE", &format!("{NS}/schedules/tick"), None)
        .await;
    assert_eq!(status, 204);
    assert_error(
        &server.get(&format!("{NS}/schedules/tick")).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn overlap_skip_and_buffer_hold_slots_behind_an_unfinished_fire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    put(&server, "skipper", every_second("skip", "skip")).await;
    put(&server, "buffer", every_second("buffer", "buffer_one")).await;
    // Hold the first job of each: the slots after it are skipped, or one
    // waits.
    let held_skip = take(&server, "skip", 1, true).await;
    let held_buffer = take(&server, "buffer", 1, true).await;
    let wait_for = |name: &'static str, outcome: &'static str| {
        let server = &server;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (_, s) = server.get(&format!("{NS}/schedules/{name}")).await;
                if outcomes(&s).iter().any(|o| o == outcome) {
                    return s;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name}: no {outcome} in {s}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let skipped = wait_for("skipper", "skipped_overlap").await;
    assert!(skipped["skipped"].as_u64().unwrap() >= 1);
    let buffered = wait_for("buffer", "buffered").await;
    assert_eq!(buffered["buffered"], 1);
    // No second job came while the first was held.
    let none = server.lease("skip", json!({"max_jobs": 5})).await;
    assert!(none.is_empty(), "{none:?}");
    // The held job ends: the buffered slot fires (its own nominal time).
    let job = &held_buffer[0];
    server
        .post(
            &format!("{NS}/jobs/{}/complete", job["id"].as_str().unwrap()),
            json!({"lease_token": job["lease_token"]}),
        )
        .await;
    let next = take(&server, "buffer", 1, false).await;
    assert_eq!(
        nominal(&next[0]) - nominal(job),
        1000,
        "the buffered slot is the next one"
    );
    drop(held_skip);
}

#[tokio::test]
async fn pause_resume_trigger_and_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let mut spec = every_second("manual", "allow");
    spec["paused"] = json!(true);
    put(&server, "m", spec).await;
    // Paused: slots pass as `paused`, nothing is enqueued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = server.get(&format!("{NS}/schedules/m")).await;
        if outcomes(&s).iter().filter(|o| *o == "paused").count() >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .lease("manual", json!({"max_jobs": 5}))
            .await
            .is_empty()
    );
    // Trigger fires now, paused or not.
    let (status, slot) = server
        .post(&format!("{NS}/schedules/m/trigger"), json!({}))
        .await;
    assert_eq!(status, 200, "{slot}");
    assert_eq!(slot["outcome"], "fired");
    let triggered = take(&server, "manual", 1, false).await;
    assert_eq!(triggered[0]["id"], slot["target_id"]);
    // Regression: a schedule's jobs skipped the job service's counting.
    assert_eq!(
        server
            .metric("keel_jobs_enqueued_total", "queue=\"manual\"")
            .await,
        1.0
    );
    // Backfill three past slots; again, and nothing fires twice.
    let now = Timestamp::parse_rfc3339(slot["nominal_time"].as_str().unwrap()).unwrap();
    let from = Timestamp::from_millis((now.as_millis() / 1000 - 600) * 1000);
    let to = from.plus_ms(2000);
    let range = json!({"from": from, "to": to});
    let (status, filled) = server
        .post(&format!("{NS}/schedules/m/backfill"), range.clone())
        .await;
    assert_eq!(status, 200, "{filled}");
    assert_eq!(filled["slots"].as_array().unwrap().len(), 3, "{filled}");
    let jobs = take(&server, "manual", 3, false).await;
    let slots: BTreeSet<i64> = jobs.iter().map(nominal).collect();
    assert_eq!(slots, [0, 1000, 2000].map(|d| from.as_millis() + d).into());
    let (_, again) = server
        .post(&format!("{NS}/schedules/m/backfill"), range)
        .await;
    assert_eq!(again["slots"], json!([]), "{again}");
    assert_error(
        &server
            .post(
                &format!("{NS}/schedules/m/backfill"),
                json!({"from": from, "to": now.plus_ms(3_600_000)}),
            )
            .await,
        400,
        "invalid_request",
    );
    // Resume: slots fire again.
    let (status, resumed) = server
        .post(&format!("{NS}/schedules/m/resume"), json!({}))
        .await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
    take(&server, "manual", 1, false).await;
    let (ok, out, err) = server.cli(&["schedule", "pause", "m"]).await;
    assert!(ok && out.contains("PAUSED"), "{out} {err}");
}

#[tokio::test]
async fn an_event_target_publishes_once_per_slot_under_the_slots_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    put(
        &server,
        "beat",
        json!({"cron": "* * * * * *", "timezone": "Europe/London", "target": {"topic": "beats", "event": {
            "type": "heartbeat", "key": "k", "data": {"at": "${{ schedule.nominal_time }}"},
        }}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let (status, page) = server
            .get(&format!("{NS}/topics/beats/events?after=0&wait_ms=2000"))
            .await;
        if status == 200 && page["events"].as_array().unwrap().len() >= 2 {
            break page["events"].as_array().unwrap().clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
    };
    for event in &events {
        let at = Timestamp::parse_rfc3339(event["data"]["at"].as_str().unwrap()).unwrap();
        assert_eq!(
            event["id"],
            format!("keel.schedule/beat/{}", at.as_millis())
        );
        assert_eq!(
            (&event["type"], &event["key"]),
            (&json!("heartbeat"), &json!("k"))
        );
    }
}

#[tokio::test]
async fn the_edge_refuses_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let target = json!({"queue": "q", "job": {"payload": 1}});
    let path = format!("{NS}/schedules/bad");
    for (spec, code) in [
        (
            json!({"cron": "61 * * * *", "target": target}),
            "invalid_request",
        ),
        (
            json!({"cron": "* * * * *", "timezone": "Mars/Olympus", "target": target}),
            "invalid_request",
        ),
        (json!({"every_ms": 10, "target": target}), "invalid_request"),
        (
            json!({"every_ms": 1000, "cron": "* * * * *", "target": target}),
            "invalid_request",
        ),
        (
            json!({"every_ms": 1000, "overlap": "sometimes", "target": target}),
            "invalid_request",
        ),
        (
            json!({"every_ms": 1000, "target": target, "typo": 1}),
            "invalid_request",
        ),
        (
            json!({"every_ms": 1000, "target": {"queue": "q", "job": {"payload": "${{ event.x }}"}}}),
            "invalid_request",
        ),
        (
            json!({"every_ms": 1000, "target": {"topic": "t", "event": {"id": "mine"}}}),
            "invalid_request",
        ),
    ] {
        assert_error(
            &server.call("PUT", &path, Some(spec.clone())).await,
            400,
            code,
        );
    }
    assert_error(
        &server
            .call(
                "PUT",
                &path,
                Some(json!({"every_ms": 1000, "target": {"workflow": "absent"}})),
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &server
            .post(&format!("{NS}/schedules/none/trigger"), json!({}))
            .await,
        404,
        "not_found",
    );
}

/// Kill -9 with slots firing every second, stay down three seconds, start
/// again: every slot from the first to the last fired exactly once (the
/// ones of the downtime in catch-up), none twice.
#[tokio::test]
async fn kill_9_around_slots_fires_each_slot_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    put(&server, "tick", every_second("ticks", "allow")).await;
    let mut jobs = take(&server, "ticks", 3, false).await;
    server.kill9().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = Server::start(&dir, &[]).await;
    jobs.extend(take(&server, "ticks", 6, false).await);
    let (_, schedule) = server.get(&format!("{NS}/schedules/tick")).await;
    // Every job the schedule made, leased or not: no slot twice, no gap.
    let all = server.list_all("ticks").await;
    let mut slots = Vec::new();
    for id in &all {
        slots.push(nominal(&server.job(id).await));
    }
    slots.sort_unstable();
    let distinct: BTreeSet<i64> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot fired twice: {slots:?}");
    let (first, last) = (slots[0], *slots.last().unwrap());
    assert_eq!(
        slots.len() as i64,
        (last - first) / 1000 + 1,
        "a slot was lost: {slots:?}"
    );
    assert_eq!(schedule["missed"], 0, "{schedule}");
}

/// A namespace full of unfinished jobs refuses a fire's job: the slot is
/// recorded as missed (not lost unseen), and the schedule moves on to its
/// next slots instead of trying the refused one again and again.
#[tokio::test]
async fn a_refused_fire_is_recorded_missed_and_the_schedule_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--max-namespace-jobs", "2"]).await;
    put(&server, "tick", every_second("ticks", "allow")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let schedule = loop {
        let (_, s) = server.get(&format!("{NS}/schedules/tick")).await;
        if s["missed"].as_u64().unwrap() >= 2 {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(schedule["fired"], 2, "{schedule}");
    let missed: Vec<&Value> = schedule["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "missed")
        .collect();
    assert!(
        missed.len() >= 2 && missed.iter().all(|s| s["target_id"].is_null()),
        "{schedule}"
    );
    // Room again: the next slot fires.
    take(&server, "ticks", 2, false).await;
    take(&server, "ticks", 1, false).await;
}
