//! Monitors: put, get (with uptime), list, delete, results; maintenance
//! windows. Incidents, events and escalation policies are `incidents.rs`;
//! heartbeats' pings, `ping.rs`; status pages' settings, `status.rs`.

pub(super) mod incidents;
pub(super) mod ping;
pub(super) mod status;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keel_api::monitors::{
    MaintenanceAnswer, MaintenanceList, MonitorAnswer, MonitorList, MonitorRequest, ResultAnswer,
    ResultList, ResultsPage, UptimeAnswer,
};
use keel_api::notifications::SettingsPage;
use keel_core::monitor::MaintenanceSpec;
use keel_engine::Engine;
use keel_engine::monitors::Uptime;
use keel_engine::notifications::Named;
use keel_store::Monitor;

use super::extract::{JsonBody, MonitorPath, NamePath, NamespacePath, QueryParams};
use super::{ApiError, created};

type Api<T> = Result<T, ApiError>;

/// Results and settings in a page unless asked otherwise.
const PAGE: u32 = 100;

fn monitor(m: Monitor, uptime: Option<Uptime>) -> MonitorAnswer {
    let heartbeat = m.spec.heartbeat.is_some();
    MonitorAnswer {
        kind: m.spec.kind().to_owned(),
        name: m.name,
        spec: m.spec,
        state: m.state,
        incident: m.incident.map(|i| i.to_string()),
        ping_url: heartbeat.then(|| format!("/v1/ping/{}", m.token)),
        uptime: uptime.map(|u| UptimeAnswer {
            day: u.day,
            week: u.week,
            month: u.month,
        }),
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/monitors/{name}", tag = "monitors",
    summary = "Create or change a monitor (an HTTP call, a TCP connect or heartbeats)",
    request_body = MonitorRequest,
    responses((status = 200, description = "OK", body = MonitorAnswer), (status = 201, description = "created", body = MonitorAnswer)))]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    MonitorPath(ns, name): MonitorPath,
    JsonBody(spec): JsonBody<MonitorRequest>,
) -> Api<Response> {
    let (m, new) = engine.monitors().put(&ns, name.as_str(), spec).await?;
    Ok(created((monitor(m, None), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/monitors/{name}", tag = "monitors",
    summary = "One monitor: its state, open incident and uptime over 24 h, 7 d and 30 d",
    responses((status = 200, description = "OK", body = MonitorAnswer)))]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    MonitorPath(ns, name): MonitorPath,
) -> Api<Json<MonitorAnswer>> {
    let (m, uptime) = engine.monitors().get(&ns, name.as_str()).await?;
    Ok(Json(monitor(m, Some(uptime))))
}

#[utoipa::path(get, path = "/namespaces/{ns}/monitors", tag = "monitors",
    summary = "A namespace's monitors by name", params(SettingsPage),
    responses((status = 200, description = "OK", body = MonitorList)))]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<MonitorList>> {
    let monitors = engine
        .monitors()
        .list(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(MonitorList {
        monitors: monitors.into_iter().map(|m| monitor(m, None)).collect(),
    }))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/monitors/{name}", tag = "monitors",
    summary = "Delete a monitor with its results (its open incident resolves)",
    responses((status = 204, description = "deleted")))]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    MonitorPath(ns, name): MonitorPath,
) -> Api<StatusCode> {
    engine.monitors().delete(&ns, name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/monitors/{name}/results", tag = "monitors",
    summary = "A monitor's results: after a seq oldest first, or the last ones",
    params(ResultsPage),
    responses((status = 200, description = "OK", body = ResultList)))]
pub(super) async fn results(
    State(engine): State<Arc<Engine>>,
    MonitorPath(ns, name): MonitorPath,
    QueryParams(page): QueryParams<ResultsPage>,
) -> Api<Json<ResultList>> {
    let results = engine
        .monitors()
        .results(&ns, name.as_str(), page.after, page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(ResultList {
        results: results
            .into_iter()
            .map(|r| ResultAnswer {
                seq: r.seq,
                result: r.result,
            })
            .collect(),
    }))
}

fn maintenance(engine: &Engine, m: Named<MaintenanceSpec>) -> MaintenanceAnswer {
    MaintenanceAnswer {
        active: m.spec.active(engine.now()),
        name: m.name,
        spec: m.spec,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/maintenance/{name}", tag = "monitors",
    summary = "Create or change a maintenance window: probes run, incidents page nobody",
    request_body = MaintenanceSpec,
    responses((status = 200, description = "OK", body = MaintenanceAnswer), (status = 201, description = "created", body = MaintenanceAnswer)))]
pub(super) async fn maintenance_put(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
    JsonBody(spec): JsonBody<MaintenanceSpec>,
) -> Api<Response> {
    let (m, new) = engine.monitors().maintenance_put(&ns, &name, &spec).await?;
    Ok(created((maintenance(&engine, m), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/maintenance/{name}", tag = "monitors",
    summary = "One maintenance window",
    responses((status = 200, description = "OK", body = MaintenanceAnswer)))]
pub(super) async fn maintenance_get(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
) -> Api<Json<MaintenanceAnswer>> {
    let m = engine.monitors().maintenance(&ns, &name).await?;
    Ok(Json(maintenance(&engine, m)))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/maintenance/{name}", tag = "monitors",
    summary = "Delete a maintenance window",
    responses((status = 204, description = "deleted")))]
pub(super) async fn maintenance_delete(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, name): NamePath,
) -> Api<StatusCode> {
    engine.monitors().maintenance_delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/maintenance", tag = "monitors",
    summary = "A namespace's maintenance windows by name", params(SettingsPage),
    responses((status = 200, description = "OK", body = MaintenanceList)))]
pub(super) async fn maintenance_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<MaintenanceList>> {
    let list = engine
        .monitors()
        .maintenances(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(MaintenanceList {
        maintenance: list.into_iter().map(|m| maintenance(&engine, m)).collect(),
    }))
}
