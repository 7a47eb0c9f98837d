//! Status pages' settings: put, get, list, delete. The pages themselves are
//! served outside the API (`crate::status`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keel_api::monitors::{StatusPageAnswer, StatusPageList, StatusPageRequest};
use keel_core::monitor::StatusPageSpec;
use keel_engine::Engine;
use keel_engine::notifications::Named;

use super::super::extract::{JsonBody, NamePath, NamespacePath};
use super::super::{ApiError, created};

type Api<T> = Result<T, ApiError>;

fn page(p: Named<StatusPageSpec>) -> StatusPageAnswer {
    StatusPageAnswer {
        url: format!("/status/{}", p.name),
        slug: p.name,
        spec: p.spec,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/status-pages/{name}", tag = "status_pages",
    summary = "Create or change a status page (its slug is unique across namespaces: 409 when another has it)",
    request_body = StatusPageRequest,
    responses((status = 200, description = "OK", body = StatusPageAnswer), (status = 201, description = "created", body = StatusPageAnswer)))]
pub(in super::super) async fn put(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, slug): NamePath,
    JsonBody(spec): JsonBody<StatusPageRequest>,
) -> Api<Response> {
    let (p, new) = engine.monitors().status_page_put(&ns, &slug, &spec).await?;
    Ok(created((page(p), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/status-pages/{name}", tag = "status_pages",
    summary = "One status page's settings",
    responses((status = 200, description = "OK", body = StatusPageAnswer)))]
pub(in super::super) async fn get(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, slug): NamePath,
) -> Api<Json<StatusPageAnswer>> {
    Ok(Json(page(engine.monitors().status_page(&ns, &slug).await?)))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/status-pages/{name}", tag = "status_pages",
    summary = "Delete a status page",
    responses((status = 204, description = "deleted")))]
pub(in super::super) async fn delete(
    State(engine): State<Arc<Engine>>,
    NamePath(ns, slug): NamePath,
) -> Api<StatusCode> {
    engine.monitors().status_page_delete(&ns, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/status-pages", tag = "status_pages",
    summary = "A namespace's status pages",
    responses((status = 200, description = "OK", body = StatusPageList)))]
pub(in super::super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<StatusPageList>> {
    let pages = engine.monitors().status_pages(&ns).await?;
    Ok(Json(StatusPageList {
        status_pages: pages.into_iter().map(page).collect(),
    }))
}
