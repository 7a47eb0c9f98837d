//! Projects: `POST …/plans` computes what a project's definitions would
//! change, `POST …/versions` applies such a plan as a new version (refused
//! with 409 `version_mismatch` when anything it read changed since), and
//! the versions are listed and read. The CLI's `keel plan` and `keel
//! apply` are built on these.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use keel_api::projects::{
    ApplyRequest, PlanRequest, ProjectList, VersionAnswer, VersionList, VersionSummary,
};
use keel_core::ProjectName;
use keel_core::project::Plan;
use keel_engine::Engine;
use keel_store::ProjectVersion;
use serde::Deserialize;

use super::ApiError;
use super::extract::{JsonBody, QueryParams, path_segments, segment, user_namespace};

type Api<T> = Result<T, ApiError>;

/// `{project}` (and `{version}`, when the route has one) from the path.
pub(super) struct ProjectPath(pub ProjectName, pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let segments = path_segments(parts, state).await?;
        let project = ProjectName::new(segment(&segments, "project"))?;
        let version = match segment(&segments, "version") {
            "" => None,
            text => Some(
                text.parse()
                    .map_err(|_| ApiError::invalid(format!("version {text:?} is not a number")))?,
            ),
        };
        Ok(ProjectPath(project, version))
    }
}

fn summary(v: &ProjectVersion) -> VersionSummary {
    VersionSummary {
        project: v.project.to_string(),
        version: v.version,
        state: v.state,
        note: v.body.note.clone(),
        resource_count: v.body.resources.len(),
        change_count: v.body.changes.len(),
        error: v.body.error.clone(),
        created_at: v.created_at,
        finished_at: v.finished_at,
    }
}

fn whole(v: ProjectVersion) -> VersionAnswer {
    VersionAnswer {
        summary: summary(&v),
        changes: v.body.changes,
        resources: v.body.resources,
    }
}

#[utoipa::path(
    get,
    path = "/projects",
    tag = "projects",
    summary = "Every project, at its newest version",
    responses((status = 200, description = "OK", body = keel_api::projects::ProjectList))
)]
pub(super) async fn list(State(engine): State<Arc<Engine>>) -> Api<Json<ProjectList>> {
    let heads = engine.projects().list().await?;
    Ok(Json(ProjectList {
        projects: heads.iter().map(summary).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/projects/{project}/plans",
    tag = "projects",
    summary = "What applying these definitions as the whole project would change",
    request_body = keel_api::projects::PlanRequest,
    responses((status = 200, description = "OK", body = keel_core::project::Plan))
)]
pub(super) async fn plan(
    State(engine): State<Arc<Engine>>,
    ProjectPath(project, _): ProjectPath,
    JsonBody(request): JsonBody<PlanRequest>,
) -> Api<Json<Plan>> {
    for resource in &request.resources {
        user_namespace(resource.namespace.as_str())?;
    }
    Ok(Json(
        engine.projects().plan(&project, request.resources).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/projects/{project}/versions",
    tag = "projects",
    summary = "Apply a plan, all or nothing, as the project's next version",
    request_body = keel_api::projects::ApplyRequest,
    responses(
        (status = 201, description = "applied as a new version", body = keel_api::projects::VersionAnswer),
        (status = 200, description = "nothing to change: the current version", body = keel_api::projects::VersionAnswer)
    )
)]
pub(super) async fn apply(
    State(engine): State<Arc<Engine>>,
    ProjectPath(project, _): ProjectPath,
    JsonBody(request): JsonBody<ApplyRequest>,
) -> Api<Response> {
    if request.plan.project != project {
        return Err(ApiError::invalid(format!(
            "the plan is for project {}, not {project}",
            request.plan.project
        )));
    }
    for resource in &request.plan.resources {
        user_namespace(resource.namespace.as_str())?;
    }
    let applied = engine
        .projects()
        .apply(request.plan, request.note.unwrap_or_default())
        .await?;
    let status = if applied.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(whole(applied.version))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionsQuery {
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/projects/{project}/versions",
    tag = "projects",
    summary = "A project's versions, newest first",
    params(("limit" = Option<u32>, Query, description = "most versions (default 100, at most 1000)")),
    responses((status = 200, description = "OK", body = keel_api::projects::VersionList))
)]
pub(super) async fn versions(
    State(engine): State<Arc<Engine>>,
    ProjectPath(project, _): ProjectPath,
    QueryParams(query): QueryParams<VersionsQuery>,
) -> Api<Json<VersionList>> {
    let versions = engine
        .projects()
        .versions(&project, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(VersionList {
        versions: versions.iter().map(summary).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/projects/{project}/versions/{version}",
    tag = "projects",
    summary = "One version whole: its changes and every definition",
    responses((status = 200, description = "OK", body = keel_api::projects::VersionAnswer))
)]
pub(super) async fn version(
    State(engine): State<Arc<Engine>>,
    ProjectPath(project, version): ProjectPath,
) -> Api<Json<VersionAnswer>> {
    let version = version.unwrap_or_default();
    Ok(Json(whole(
        engine.projects().version(&project, version).await?,
    )))
}
