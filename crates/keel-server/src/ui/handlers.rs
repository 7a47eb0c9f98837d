//! Handlers: the namespace's handlers (`/ui/handlers`) with what this
//! node's invocations of each did (counts, errors, guest CPU, memory
//! high-water), and a handler's page (`/ui/handlers/{name}`): its current
//! version, settings and JavaScript source, and its last invocations here
//! with their outcome, time and logs.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::HandlerName;
use minijinja::{Value, context};

use super::{NsQuery, Refused, Ui};

fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let handlers = ui.engine.handlers();
    let list = handlers.list(&ns).await.map_err(|e| ui.failed(&e))?;
    let rows: Vec<Value> = list
        .iter()
        .map(|h| {
            let a = handlers.activity(&ns, &h.name);
            context! {
                name => h.name.to_string(),
                link => format!("/ui/handlers/{}?ns={ns}", h.name),
                version => h.version,
                kind => h.kind.as_str(),
                invocations => a.invocations,
                errors => a.errors,
                cpu_ms => ms(a.cpu),
                memory_mb => format!("{:.1}", a.memory_peak as f64 / (1 << 20) as f64),
            }
        })
        .collect();
    Ok(ui.page(
        "handlers.html",
        Some(&session),
        ns.as_str(),
        context! { handlers => rows },
    ))
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let name = HandlerName::new(&name).map_err(|e| ui.failed(&e))?;
    let handlers = ui.engine.handlers();
    let version = handlers
        .get(&ns, &name, None)
        .await
        .map_err(|e| ui.failed(&e))?;
    let a = handlers.activity(&ns, &name);
    let recent: Vec<Value> = a
        .recent
        .iter()
        .map(|r| {
            let job = (r.job != "invoke").then(|| format!("/ui/jobs/{}?ns={ns}", r.job));
            context! {
                at => r.at.to_string(),
                job => r.job.clone(),
                job_link => job,
                version => r.version,
                error => r.error.clone(),
                cpu_ms => ms(r.cpu),
                wall_ms => ms(r.wall),
                memory_mb => format!("{:.1}", r.memory_bytes as f64 / (1 << 20) as f64),
                logs => r.logs.clone(),
            }
        })
        .collect();
    let settings = &version.settings;
    let handler = context! {
        name => name.to_string(),
        version => version.version,
        kind => version.kind.as_str(),
        hash => version.hash.clone(),
        created_at => version.created_at.to_string(),
        source => version.source.clone(),
        cpu_ms => settings.limits.cpu_ms,
        wall_ms => settings.limits.wall_ms,
        memory_mb => settings.limits.memory_mb,
        allow_http => settings.allow_http.clone(),
        invocations => a.invocations,
        errors => a.errors,
    };
    Ok(ui.page(
        "handler.html",
        Some(&session),
        ns.as_str(),
        context! { handler => handler, recent => recent },
    ))
}
