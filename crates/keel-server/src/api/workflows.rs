//! Workflow definitions and runs: `PUT/GET …/workflows/{name}`, versions,
//! starting runs, reading and listing them, and signals, cancel and retry.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_api::runs::{CancelRequest, Item, Run, RunPage, Step};
use keel_api::workflows::{
    DefinitionAnswer, DefinitionSaved, InvalidDefinition, InvalidDefinitionDetail, StartRequest,
    VersionEntry, VersionsAnswer, WorkflowEntry, WorkflowList,
};
use keel_core::workflow::definition::{Format, canonical, parse_source, valid_signal};
use keel_core::workflow::{Definition, Problem, RunStatus};
use keel_core::{ErrorCode, Timestamp};
use keel_store::{RunFilter, StoredRun};
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use super::extract::{
    Body, NamespacePath, QueryParams, RunPath, WorkflowPath, count, json_error, parse, wait_ms,
};
use super::trace::RequestTrace;

type Api<T> = Result<T, ApiError>;
use keel_engine::Engine;
use keel_engine::tokens::Caller;
use keel_engine::workflows::{Hint, Op};

/// Largest definition source accepted.
pub(super) const MAX_DEFINITION_BYTES: usize = 256 * 1024;
const DEFAULT_LIST_LIMIT: u32 = 50;

fn format_of(headers: &HeaderMap) -> Format {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.contains("yaml") {
        Format::Yaml
    } else {
        Format::Json
    }
}

/// 400 `invalid_definition`, with every problem and its path.
fn invalid_definition(problems: Vec<Problem>) -> Response {
    let message = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let body = InvalidDefinition {
        error: InvalidDefinitionDetail {
            code: ErrorCode::InvalidDefinition.as_str().to_owned(),
            message: format!("{} problem(s): {message}", problems.len()),
            problems,
        },
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/workflows/{name}",
    tag = "workflows",
    summary = "Apply a workflow definition (JSON or YAML)",
    request_body(content((serde_json::Value = "application/json"), (String = "application/yaml"))),
    responses((status = 200, description = "OK", body = keel_api::workflows::DefinitionSaved), (status = 201, description = "created", body = keel_api::workflows::DefinitionSaved), (status = 400, description = "the definition has problems (each listed), or another bad request", body = keel_api::workflows::InvalidDefinition))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    WorkflowPath(ns, name): WorkflowPath,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Api<Response> {
    if bytes.len() > MAX_DEFINITION_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a definition may be at most {MAX_DEFINITION_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid("the definition is not UTF-8"))?;
    let value = match parse_source(text, format_of(&headers)) {
        Ok(v) => v,
        Err(problems) => return Ok(invalid_definition(problems)),
    };
    let mut problems = Definition::from_value(&value).err().unwrap_or_default();
    if let Some(found) = value.get("name").and_then(Value::as_str)
        && found != name.as_str()
    {
        problems.push(Problem {
            path: "name".to_owned(),
            message: format!("is {found:?} but the url names {:?}", name.as_str()),
        });
    }
    if !problems.is_empty() {
        return Ok(invalid_definition(problems));
    }
    let (version, created) = engine
        .workflows()
        .put_definition(&ns, name.as_str(), &canonical(&value))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DefinitionSaved {
            name: name.as_str().to_owned(),
            version,
        }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/workflows",
    tag = "workflows",
    summary = "The namespace's workflows, each at its latest version",
    responses((status = 200, description = "OK", body = keel_api::workflows::WorkflowList))
)]
pub(super) async fn definitions(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<WorkflowList>> {
    let workflows = engine.workflows().list(&ns).await?;
    Ok(Json(WorkflowList {
        workflows: workflows
            .into_iter()
            .map(|w| WorkflowEntry {
                name: w.name,
                version: w.version,
                created_at: w.created_at,
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct VersionParams {
    version: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/workflows/{name}",
    tag = "workflows",
    summary = "A workflow definition (latest or one version)",
    params(VersionParams),
    responses((status = 200, description = "OK", body = keel_api::workflows::DefinitionAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    WorkflowPath(ns, name): WorkflowPath,
    QueryParams(params): QueryParams<VersionParams>,
) -> Api<Json<DefinitionAnswer>> {
    let stored = engine
        .workflows()
        .stored(&ns, name.as_str(), params.version)
        .await?;
    let definition: Value = serde_json::from_str(&stored.definition).unwrap_or(Value::Null);
    Ok(Json(DefinitionAnswer {
        name: stored.name,
        version: stored.version,
        created_at: stored.created_at,
        definition,
    }))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/workflows/{name}/versions",
    tag = "workflows",
    summary = "A definition's versions",
    responses((status = 200, description = "OK", body = keel_api::workflows::VersionsAnswer))
)]
pub(super) async fn versions(
    State(engine): State<Arc<Engine>>,
    WorkflowPath(ns, name): WorkflowPath,
) -> Api<Json<VersionsAnswer>> {
    let versions = engine.workflows().versions(&ns, name.as_str()).await?;
    let versions = versions
        .iter()
        .map(|v| VersionEntry {
            version: v.version,
            created_at: v.created_at,
        })
        .collect();
    Ok(Json(VersionsAnswer {
        name: name.as_str().to_owned(),
        versions,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/workflows/{name}/runs",
    tag = "runs",
    summary = "Start a run (an empty body starts with null input)",
    request_body(content = Option<keel_api::workflows::StartRequest>, description = "optional"),
    responses((status = 200, description = "an earlier run with the same idempotency key", body = keel_api::runs::Run), (status = 201, description = "created", body = keel_api::runs::Run))
)]
pub(super) async fn start(
    State(engine): State<Arc<Engine>>,
    WorkflowPath(ns, name): WorkflowPath,
    trace: RequestTrace,
    Body(bytes): Body,
) -> Api<Response> {
    let body: StartRequest = if bytes.is_empty() {
        parse(b"{}")?
    } else {
        parse(&bytes)?
    };
    let input_len = body.input.to_string().len();
    if input_len > engine.limits().max_payload_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "input is {input_len} bytes, over the limit of {}",
                engine.limits().max_payload_bytes
            ),
        ));
    }
    if let Some(key) = &body.idempotency_key
        && (key.is_empty() || key.len() > engine.limits().max_key_len)
    {
        return Err(ApiError::invalid(format!(
            "idempotency_key must be 1 to {} bytes",
            engine.limits().max_key_len
        )));
    }
    let (run, deduplicated) = engine
        .workflows()
        .start(
            &ns,
            name.as_str(),
            body.version,
            body.input,
            body.idempotency_key,
            body.traceparent.or(trace.0),
        )
        .await?;
    let status = if deduplicated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(run_answer(&run, Some(deduplicated)))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct GetParams {
    wait_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/runs/{id}",
    tag = "runs",
    summary = "One run; with wait_ms, waits for it to end",
    params(GetParams),
    responses((status = 200, description = "OK", body = keel_api::runs::Run))
)]
/// One run; with `wait_ms`, waits (up to that long) for it to end.
pub(super) async fn run(
    State(engine): State<Arc<Engine>>,
    RunPath(ns, id, _): RunPath,
    QueryParams(params): QueryParams<GetParams>,
) -> Api<Json<Run>> {
    let wait = wait_ms(engine.limits(), params.wait_ms)?;
    let view = engine
        .runs()
        .wait(&ns, id, Duration::from_millis(wait))
        .await?;
    let mut answer = run_answer(&view.run, None);
    for (name, gates) in view.waiting {
        if let Some(step) = answer.steps.get_mut(&name) {
            step.waiting = Some(gates);
        }
    }
    Ok(Json(answer))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    workflow: Option<String>,
    status: Option<String>,
    /// Runs started at or after this time (RFC 3339).
    since: Option<String>,
    /// Runs started before this time (RFC 3339).
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/runs",
    tag = "runs",
    summary = "List runs, newest first",
    params(ListParams),
    responses((status = 200, description = "OK", body = keel_api::runs::RunPage))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(params): QueryParams<ListParams>,
) -> Api<Json<RunPage>> {
    let limit = count(
        "limit",
        params.limit,
        DEFAULT_LIST_LIMIT,
        engine.limits().max_batch as u32,
    )?;
    let status = params
        .status
        .map(|s| {
            RunStatus::parse(&s).ok_or_else(|| ApiError::invalid(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let time = |name: &str, text: Option<String>| {
        text.map(|t| {
            Timestamp::parse_rfc3339(&t)
                .ok_or_else(|| ApiError::invalid(format!("{name} is not an RFC 3339 time: {t:?}")))
        })
        .transpose()
    };
    let filter = RunFilter {
        workflow: params.workflow,
        status,
        since: time("since", params.since)?,
        until: time("until", params.until)?,
        limit,
        cursor: params.cursor,
    };
    let page = engine.runs().list(&ns, &filter).await?;
    Ok(Json(RunPage {
        runs: page.runs.iter().map(|run| run_answer(run, None)).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/runs/{id}/signals/{signal}",
    tag = "runs",
    summary = "Send a signal to a run (the body is its payload)",
    request_body(content = Option<serde_json::Value>, description = "any JSON; none is null"),
    responses((status = 200, description = "OK", body = keel_api::runs::Run))
)]
pub(super) async fn signal(
    State(engine): State<Arc<Engine>>,
    RunPath(ns, id, signal): RunPath,
    Body(bytes): Body,
) -> Api<Json<Run>> {
    let signal = signal.unwrap_or_default();
    if !valid_signal(&signal) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!(
                "signal name {signal:?} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' or '.'"
            ),
        ));
    }
    if bytes.len() > engine.limits().max_payload_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the signal's payload is over the payload limit",
        ));
    }
    let payload: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(json_error)?
    };
    let run = engine
        .workflows()
        .advance(&ns, id, Hint::Nothing, Op::Signal(signal, payload))
        .await?;
    Ok(Json(run_answer(&run, None)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/runs/{id}/cancel",
    tag = "runs",
    summary = "Cancel a run",
    request_body(content = Option<keel_api::runs::CancelRequest>, description = "optional"),
    responses((status = 200, description = "OK", body = keel_api::runs::Run))
)]
pub(super) async fn cancel(
    State(engine): State<Arc<Engine>>,
    RunPath(ns, id, _): RunPath,
    caller: Option<Extension<Caller>>,
    Body(bytes): Body,
) -> Api<Json<Run>> {
    let body: CancelRequest = if bytes.is_empty() {
        CancelRequest::default()
    } else {
        parse(&bytes)?
    };
    let run = engine
        .workflows()
        .advance(
            &ns,
            id,
            Hint::Nothing,
            Op::Cancel {
                compensate: body.compensate,
                by: caller.map(|Extension(c)| format!("{} (token {})", c.name(), c.token_id())),
            },
        )
        .await?;
    Ok(Json(run_answer(&run, None)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/runs/{id}/retry",
    tag = "runs",
    summary = "Retry a failed run from its failed steps",
    responses((status = 200, description = "OK", body = keel_api::runs::Run))
)]
pub(super) async fn retry(
    State(engine): State<Arc<Engine>>,
    RunPath(ns, id, _): RunPath,
) -> Api<Json<Run>> {
    let run = engine
        .workflows()
        .advance(&ns, id, Hint::Nothing, Op::Retry)
        .await?;
    Ok(Json(run_answer(&run, None)))
}

/// A run as the API answers it.
fn run_answer(run: &StoredRun, deduplicated: Option<bool>) -> Run {
    let state = &run.state;
    let steps = state
        .steps
        .iter()
        .map(|(name, rec)| {
            let items = rec
                .items
                .iter()
                .map(|it| Item {
                    state: it.state,
                    attempts: it.attempts,
                    output: it.output.clone(),
                    error: it.error.clone(),
                })
                .collect();
            let step = Step {
                state: rec.state,
                attempts: rec.attempts,
                output: rec.output.clone(),
                error: rec.error.clone(),
                started_at: rec.started_at,
                finished_at: rec.finished_at,
                items,
                waiting: None,
            };
            (name.clone(), step)
        })
        .collect();
    Run {
        id: run.id,
        workflow: run.workflow.clone(),
        version: run.version,
        status: state.status,
        compensating: state.compensating,
        input: serde_json::from_str(&run.input).unwrap_or(Value::Null),
        output: state.output.clone(),
        error: state.error.clone(),
        created_at: run.created_at,
        updated_at: run.updated_at,
        parent: state.parent.as_ref().map(|p| p.run),
        steps,
        deduplicated,
    }
}
