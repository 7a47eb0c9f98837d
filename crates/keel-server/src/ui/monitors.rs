//! Monitors and incidents: the monitors (`/ui/monitors`, a page of up to a
//! thousand by name, each with its state and open incident), the incidents
//! (`/ui/incidents`, by status) and an incident's page
//! (`/ui/incidents/{id}`) with its timeline and the forms that acknowledge,
//! resolve or note it.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::IncidentId;
use keel_core::auth::{Access, Reach};
use keel_core::monitor::{Incident, IncidentStatus};
use keel_engine::monitors::IncidentAction;
use keel_store::{IncidentQuery, Monitor};
use minijinja::{Value, context};
use serde::Deserialize;

use super::{NsQuery, Refused, Ui};

const MONITORS: u32 = 1000;
const INCIDENTS: u32 = 100;

fn monitor_view(ns: &str, m: &Monitor) -> Value {
    let spec = &m.spec;
    let target = spec
        .http
        .as_ref()
        .map(|h| h.url.clone())
        .or(spec.tcp.as_ref().map(|t| format!("{}:{}", t.host, t.port)))
        .unwrap_or_else(|| "heartbeat".to_owned());
    context! {
        name => m.name.clone(),
        kind => spec.kind(),
        target => target,
        status => m.state.status.as_str(),
        paused => spec.paused,
        last_result_at => m.state.last_result_at.map(|t| t.to_string()),
        incident => m.incident.map(|i| format!("/ui/incidents/{i}?ns={ns}")),
    }
}

#[derive(Deserialize)]
pub(super) struct MonitorsQuery {
    #[serde(flatten)]
    ns: NsQuery,
    after: Option<String>,
}

pub(super) async fn monitors(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<MonitorsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query.ns).await?;
    let list = ui
        .engine
        .monitors()
        .list(&ns, query.after.as_deref(), MONITORS)
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = (list.len() == MONITORS as usize)
        .then(|| list.last().map(|m| m.name.clone()))
        .flatten();
    let down = list.iter().filter(|m| m.incident.is_some()).count();
    let rows: Vec<Value> = list.iter().map(|m| monitor_view(ns.as_str(), m)).collect();
    Ok(ui.page(
        "monitors.html",
        Some(&session),
        ns.as_str(),
        context! { monitors => rows, down => down, next => next },
    ))
}

fn incident_view(ns: &str, i: &Incident) -> Value {
    context! {
        id => i.id.to_string(),
        link => format!("/ui/incidents/{}?ns={ns}", i.id),
        status => i.status.as_str(),
        summary => i.summary.clone(),
        monitor => i.monitor.clone(),
        dedup_key => i.dedup_key.clone(),
        severity => i.severity.as_str(),
        source => i.source.clone(),
        opened_at => i.opened_at.to_string(),
        acknowledged_by => i.acknowledged_by.clone(),
        resolved_at => i.resolved_at.map(|t| t.to_string()),
        timeline => i.timeline.iter().map(|e| context! {
            at => e.at.to_string(),
            kind => e.kind.clone(),
            by => e.by.clone(),
            text => e.text.clone(),
            step => e.step.map(|s| s + 1),
            pages => e.pages.iter().map(|p| match &p.to {
                Some(to) => format!("{} on {}", to, p.channel),
                None => p.channel.to_string(),
            }).collect::<Vec<_>>(),
        }).collect::<Vec<_>>(),
    }
}

#[derive(Deserialize)]
pub(super) struct IncidentsQuery {
    #[serde(flatten)]
    ns: NsQuery,
    #[serde(default)]
    status: String,
    before: Option<String>,
}

pub(super) async fn incidents(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<IncidentsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query.ns).await?;
    let status = match query.status.as_str() {
        "" => None,
        s => Some(IncidentStatus::parse(s).ok_or_else(|| ui.bad("no such incident status"))?),
    };
    let before = match &query.before {
        Some(b) => Some(
            b.parse::<IncidentId>()
                .map_err(|_| ui.bad("before: not an incident id"))?,
        ),
        None => None,
    };
    let page = IncidentQuery {
        status,
        monitor: None,
        before,
        limit: INCIDENTS,
    };
    let list = ui
        .engine
        .monitors()
        .incidents(&ns, &page)
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = (list.len() == INCIDENTS as usize)
        .then(|| list.last().map(|i| i.id.to_string()))
        .flatten();
    let rows: Vec<Value> = list.iter().map(|i| incident_view(ns.as_str(), i)).collect();
    Ok(ui.page(
        "incidents.html",
        Some(&session),
        ns.as_str(),
        context! { incidents => rows, status => query.status, next => next },
    ))
}

fn incident_id(ui: &Ui, id: &str) -> Result<IncidentId, Refused> {
    id.parse().map_err(|_| {
        ui.failed(&keel_core::Error::new(
            keel_core::ErrorCode::NotFound,
            "no such incident",
        ))
    })
}

pub(super) async fn incident(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let id = incident_id(&ui, &id)?;
    let found = ui
        .engine
        .monitors()
        .incident(&ns, &id)
        .await
        .map_err(|e| ui.failed(&e))?;
    let can_act = session.may(Access::Publish, Reach::Namespace(ns.as_str()));
    Ok(ui.page(
        "incident.html",
        Some(&session),
        ns.as_str(),
        context! { incident => incident_view(ns.as_str(), &found), can_act => can_act },
    ))
}

#[derive(Deserialize)]
pub(super) struct ActForm {
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST /ui/incidents/{id}/{action}`: acknowledge, resolve or note.
pub(super) async fn act(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Query(query): Query<NsQuery>,
    Form(form): Form<ActForm>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    let ns = query.namespace(&ui)?;
    ui.require(
        &session,
        Access::Publish,
        Reach::Namespace(ns.as_str()),
        "act on incidents",
    )?;
    let id = incident_id(&ui, &id)?;
    let action = match action.as_str() {
        "acknowledge" => IncidentAction::Acknowledge,
        "resolve" => IncidentAction::Resolve,
        "note" => IncidentAction::Note(form.text),
        _ => return Err(ui.bad("no such action")),
    };
    let by = session.caller.as_ref().map_or_else(
        || "dashboard".to_owned(),
        |c| format!("{} (dashboard)", c.name()),
    );
    ui.engine
        .monitors()
        .act(&ns, &id, action, &by)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok(Redirect::to(&format!("/ui/incidents/{id}?ns={ns}")).into_response())
}
