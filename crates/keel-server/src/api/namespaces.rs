//! Namespace quotas: set (admins), read with their usage (the namespace's
//! readers), listed (admins).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_api::namespaces::{NamespaceAnswer, NamespaceList, NamespaceRequest, UsageAnswer};
use keel_core::Namespace;
use keel_core::quota::Quotas;
use keel_engine::Engine;
use keel_store::Usage;

use super::ApiError;
use super::extract::{JsonBody, NamespacePath};

type Api<T> = Result<T, ApiError>;

fn answer(namespace: &Namespace, quotas: Quotas, usage: Usage) -> NamespaceAnswer {
    NamespaceAnswer {
        namespace: namespace.to_string(),
        quotas,
        usage: UsageAnswer {
            jobs: usage.jobs,
            schedules: usage.schedules,
            subscriptions: usage.subscriptions,
            bytes: usage.bytes,
        },
    }
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}",
    tag = "namespaces",
    summary = "Set a namespace's quotas",
    request_body(content = Option<keel_api::namespaces::NamespaceRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_api::namespaces::NamespaceAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    JsonBody(quotas): JsonBody<NamespaceRequest>,
) -> Api<Json<NamespaceAnswer>> {
    engine.namespaces().put(&ns, &quotas).await?;
    let (quotas, usage) = engine.namespaces().get(&ns).await?;
    Ok(Json(answer(&ns, quotas, usage)))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}",
    tag = "namespaces",
    summary = "A namespace's quotas and usage",
    responses((status = 200, description = "OK", body = keel_api::namespaces::NamespaceAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<NamespaceAnswer>> {
    let (quotas, usage) = engine.namespaces().get(&ns).await?;
    Ok(Json(answer(&ns, quotas, usage)))
}

#[utoipa::path(
    get,
    path = "/namespaces",
    tag = "namespaces",
    summary = "List namespaces with quotas and usage",
    responses((status = 200, description = "OK", body = keel_api::namespaces::NamespaceList))
)]
pub(super) async fn list(State(engine): State<Arc<Engine>>) -> Api<Json<NamespaceList>> {
    let mut namespaces = Vec::new();
    for (stored, usage) in engine.namespaces().list().await? {
        namespaces.push(answer(&stored.namespace, stored.quotas, usage));
    }
    Ok(Json(NamespaceList { namespaces }))
}
