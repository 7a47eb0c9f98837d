//! Schedules: put, get (with the next slots and the ledger), list, delete,
//! pause, resume, trigger and backfill.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_api::schedules::{
    BackfillAnswer, BackfillRequest, FireTime, ScheduleAnswer, ScheduleList, ScheduleRequest,
    SlotAnswer,
};
use keel_core::ScheduleName;
use keel_core::schedule::Cadence;
use keel_engine::Engine;
use keel_store::{LedgerEntry, Schedule};

use super::ApiError;
use super::extract::{JsonBody, NamespacePath, SchedulePath};

type Api<T> = Result<T, ApiError>;

/// A monitor's schedule (`keel.monitor.{name}`) changes with its monitor
/// only; it may be read and triggered (a probe now).
fn not_a_monitors(name: &ScheduleName) -> Api<()> {
    match name
        .as_str()
        .strip_prefix(keel_core::monitor::SCHEDULE_PREFIX)
    {
        Some(monitor) => Err(keel_core::Error::new(
            keel_core::ErrorCode::Conflict,
            format!("schedule {name} is monitor {monitor:?}'s: change the monitor instead"),
        )
        .into()),
        None => Ok(()),
    }
}

/// Slots shown ahead.
const NEXT_SLOTS: usize = 5;
/// Ledger rows shown by `GET` of one schedule.
const RECENT: u32 = 20;

fn slot(entry: LedgerEntry) -> SlotAnswer {
    SlotAnswer {
        nominal_time: entry.nominal_time,
        fired_at: entry.fired_at,
        outcome: entry.outcome,
        target_id: entry.target_id,
    }
}

pub(crate) fn answer(schedule: Schedule, recent: Vec<LedgerEntry>) -> ScheduleAnswer {
    let mut next_fire_times = Vec::new();
    if let Ok(cadence) = Cadence::new(&schedule.spec) {
        let mut next = schedule.state.next;
        while let Some(at) = next.filter(|_| next_fire_times.len() < NEXT_SLOTS) {
            next_fire_times.push(FireTime {
                utc: at,
                local: cadence.local(at),
            });
            next = cadence.next_after(at);
        }
    }
    ScheduleAnswer {
        name: schedule.name,
        next_fire_times,
        recent: recent.into_iter().map(slot).collect(),
        fired: schedule.state.fired,
        skipped: schedule.state.skipped,
        missed: schedule.state.missed,
        buffered: schedule.state.buffered.len(),
        spec: schedule.spec,
        created_at: schedule.created_at,
        updated_at: schedule.updated_at,
    }
}

pub(crate) async fn full(engine: &Engine, schedule: Schedule) -> Api<ScheduleAnswer> {
    let recent = engine
        .schedules()
        .ledger(&schedule.namespace, &schedule.name, RECENT)
        .await?;
    Ok(answer(schedule, recent))
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/schedules/{name}",
    tag = "schedules",
    summary = "Create or change a schedule",
    request_body = keel_api::schedules::ScheduleRequest,
    responses((status = 200, description = "OK", body = keel_api::schedules::ScheduleAnswer), (status = 201, description = "created", body = keel_api::schedules::ScheduleAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
    JsonBody(spec): JsonBody<ScheduleRequest>,
) -> Api<Response> {
    not_a_monitors(&name)?;
    let put = engine.schedules().put(&ns, name.as_str(), spec).await?;
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(full(&engine, put.schedule).await?)).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/schedules/{name}",
    tag = "schedules",
    summary = "One schedule with its next fire times",
    responses((status = 200, description = "OK", body = keel_api::schedules::ScheduleAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
) -> Api<Json<ScheduleAnswer>> {
    let schedule = engine.schedules().get(&ns, name.as_str()).await?;
    Ok(Json(full(&engine, schedule).await?))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/schedules",
    tag = "schedules",
    summary = "List schedules",
    responses((status = 200, description = "OK", body = keel_api::schedules::ScheduleList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<ScheduleList>> {
    let schedules = engine.schedules().list(&ns).await?;
    Ok(Json(ScheduleList {
        schedules: schedules
            .into_iter()
            .map(|s| answer(s, Vec::new()))
            .collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/schedules/{name}",
    tag = "schedules",
    summary = "Delete a schedule",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
) -> Api<StatusCode> {
    not_a_monitors(&name)?;
    engine.schedules().delete(&ns, name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/schedules/{name}/pause",
    tag = "schedules",
    summary = "Pause a schedule",
    responses((status = 200, description = "OK", body = keel_api::schedules::ScheduleAnswer))
)]
pub(super) async fn pause(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
) -> Api<Json<ScheduleAnswer>> {
    not_a_monitors(&name)?;
    let schedule = engine.schedules().pause(&ns, name.as_str(), true).await?;
    Ok(Json(full(&engine, schedule).await?))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/schedules/{name}/resume",
    tag = "schedules",
    summary = "Resume a schedule",
    responses((status = 200, description = "OK", body = keel_api::schedules::ScheduleAnswer))
)]
pub(super) async fn resume(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
) -> Api<Json<ScheduleAnswer>> {
    not_a_monitors(&name)?;
    let schedule = engine.schedules().pause(&ns, name.as_str(), false).await?;
    Ok(Json(full(&engine, schedule).await?))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/schedules/{name}/trigger",
    tag = "schedules",
    summary = "Fire a schedule now",
    responses((status = 200, description = "OK", body = keel_api::schedules::SlotAnswer))
)]
pub(super) async fn trigger(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
) -> Api<Json<SlotAnswer>> {
    let entry = engine.schedules().trigger(&ns, name.as_str()).await?;
    Ok(Json(slot(entry)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/schedules/{name}/backfill",
    tag = "schedules",
    summary = "Fire a schedule's slots over a past range",
    request_body = keel_api::schedules::BackfillRequest,
    responses((status = 200, description = "OK", body = keel_api::schedules::BackfillAnswer))
)]
pub(super) async fn backfill(
    State(engine): State<Arc<Engine>>,
    SchedulePath(ns, name): SchedulePath,
    JsonBody(range): JsonBody<BackfillRequest>,
) -> Api<Json<BackfillAnswer>> {
    not_a_monitors(&name)?;
    let entries = engine
        .schedules()
        .backfill(&ns, name.as_str(), range.from, range.to)
        .await?;
    Ok(Json(BackfillAnswer {
        slots: entries.into_iter().map(slot).collect(),
    }))
}
