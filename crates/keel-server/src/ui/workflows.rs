//! Workflow definitions: the list of a namespace's workflows
//! (`/ui/workflows`) and one definition (`/ui/workflows/{name}`) with its
//! versions, its DAG drawn, and each step's action.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::workflow::Definition;
use keel_core::workflow::definition::{Action, Sleep, Step};
use minijinja::context;
use minijinja::value::Serde;
use serde::Deserialize;

use super::draw::{self, StepShape};
use super::{NsQuery, Refused, Ui};

/// What a step does, in a few words.
pub(super) fn describe(action: &Action) -> String {
    match action {
        Action::Task { queue, .. } => format!("task on {queue}"),
        Action::Http(spec) => format!("{} call", spec.method),
        Action::Notify(_) => "notify".to_owned(),
        Action::Sleep(Sleep::For(ms)) => format!("sleep {}", draw::duration(*ms)),
        Action::Sleep(Sleep::Until(_)) => "sleep until a time".to_owned(),
        Action::WaitFor {
            signal: Some(s), ..
        } => format!("wait for signal {s}"),
        Action::WaitFor { event: Some(e), .. } => format!("wait for an event on {}", e.topic),
        Action::WaitFor { .. } => "wait".to_owned(),
        Action::Workflow { name, .. } => format!("run workflow {name}"),
        Action::ForEach { step, .. } => format!("for each: {}", describe(step)),
    }
}

/// The DAG of a definition's steps (not its compensations), each box of
/// the class `class_of` gives it.
pub(super) fn dag_of<'a>(
    definition: &'a Definition,
    class_of: impl Fn(&str) -> &'a str,
) -> draw::Dag {
    let shapes: Vec<StepShape<'_>> = definition
        .main_steps()
        .map(|(name, step)| StepShape {
            name,
            needs: &step.needs,
            detail: describe(&step.action),
            class: class_of(name),
        })
        .collect();
    draw::dag(&shapes)
}

/// A stored definition as the engine reads it (it was checked when stored).
pub(super) fn parse(ui: &Ui, text: &str) -> Result<Definition, Refused> {
    serde_json::from_str(text)
        .ok()
        .and_then(|value| Definition::from_value(&value).ok())
        .ok_or_else(|| ui.bad("this version's definition no longer parses"))
}

fn step_row(name: &str, step: &Step) -> minijinja::Value {
    context! {
        name => name,
        needs => step.needs.clone(),
        action => describe(&step.action),
        condition => step.condition.clone(),
        max_attempts => step.max_attempts,
        compensate => step.compensate.clone(),
        compensation => step.compensation,
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let workflows = ui
        .engine
        .workflows()
        .list(&ns)
        .await
        .map_err(|e| ui.failed(&e))?;
    let rows = workflows
        .iter()
        .map(|w| {
            let definition = serde_json::from_str(&w.definition)
                .ok()
                .and_then(|v| Definition::from_value(&v).ok());
            context! {
                name => w.name.clone(),
                version => w.version,
                created_at => w.created_at.to_string(),
                description => definition.as_ref().and_then(|d| d.description.clone()),
                steps => definition.as_ref().map(|d| d.main_steps().count()),
            }
        })
        .collect::<Vec<_>>();
    Ok(ui.page(
        "workflows.html",
        Some(&session),
        ns.as_str(),
        context! { workflows => rows },
    ))
}

#[derive(Deserialize)]
pub(super) struct VersionQuery {
    #[serde(flatten)]
    ns: NsQuery,
    version: Option<u32>,
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query.ns).await?;
    let versions = ui
        .engine
        .workflows()
        .versions(&ns, &name)
        .await
        .map_err(|e| ui.failed(&e))?;
    let shown = match query.version {
        Some(v) => versions.iter().find(|w| w.version == v),
        None => versions.last(),
    }
    .ok_or_else(|| ui.bad("no such version"))?;
    let definition = parse(&ui, &shown.definition)?;
    let dag = dag_of(&definition, |_| "step");
    let source = serde_json::from_str::<serde_json::Value>(&shown.definition)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| shown.definition.clone());
    Ok(ui.page(
        "workflow.html",
        Some(&session),
        ns.as_str(),
        context! {
            name => name,
            version => shown.version,
            created_at => shown.created_at.to_string(),
            description => definition.description,
            versions => versions.iter().rev().map(|w| context! {
                version => w.version, created_at => w.created_at.to_string(),
            }).collect::<Vec<_>>(),
            dag => Serde(dag),
            steps => definition.steps.iter().map(|(n, s)| step_row(n, s)).collect::<Vec<_>>(),
            source => source,
        },
    ))
}
