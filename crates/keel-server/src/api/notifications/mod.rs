//! Notifications: channels (their secrets go in, never out), templates
//! (refused with the part and line when one does not parse), recipients,
//! and preferences, the namespace's and each recipient's. Sending and
//! reading notifications is `send.rs`; the in-app inbox, `inbox.rs`;
//! one-click unsubscribe links, `unsubscribe.rs`.

pub(super) mod inbox;
pub(super) mod send;
pub(super) mod unsubscribe;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keel_api::notifications::{
    ChannelAnswer, ChannelList, ChannelRequest, PreferencesBody, RecipientAnswer, RecipientList,
    RecipientRequest, SettingsPage, TemplateAnswer, TemplateList, TemplateRequest,
};
use keel_core::notification::{ChannelSpec, RecipientSpec, TemplateSpec};
use keel_engine::Engine;
use keel_engine::notifications::Named;

use super::extract::{
    ChannelPath, JsonBody, NamespacePath, QueryParams, RecipientPath, TemplatePath,
};
use super::{ApiError, created};

type Api<T> = Result<T, ApiError>;

pub(super) const PAGE: u32 = 100;

fn channel(c: Named<ChannelSpec>) -> ChannelAnswer {
    ChannelAnswer {
        name: c.name,
        kind: c.spec.kind().as_str().to_owned(),
        spec: c.spec,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn template(t: Named<TemplateSpec>) -> TemplateAnswer {
    TemplateAnswer {
        name: t.name,
        spec: t.spec,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

fn recipient(r: Named<RecipientSpec>) -> RecipientAnswer {
    RecipientAnswer {
        id: r.name,
        spec: r.spec,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[utoipa::path(put, path = "/namespaces/{ns}/channels/{name}", tag = "notifications",
    summary = "Create or change a notification channel (its secrets are never shown again)",
    request_body = keel_api::notifications::ChannelRequest,
    responses((status = 200, description = "OK", body = ChannelAnswer), (status = 201, description = "created", body = ChannelAnswer)))]
pub(super) async fn channel_put(
    State(engine): State<Arc<Engine>>,
    ChannelPath(ns, name): ChannelPath,
    JsonBody(spec): JsonBody<ChannelRequest>,
) -> Api<Response> {
    let (c, new) = engine
        .notifications()
        .channel_put(&ns, &name, &spec)
        .await?;
    Ok(created((channel(c), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/channels/{name}", tag = "notifications",
    summary = "One notification channel, its secrets hidden",
    responses((status = 200, description = "OK", body = ChannelAnswer)))]
pub(super) async fn channel_get(
    State(engine): State<Arc<Engine>>,
    ChannelPath(ns, name): ChannelPath,
) -> Api<Json<ChannelAnswer>> {
    Ok(Json(channel(
        engine.notifications().channel_get(&ns, &name).await?,
    )))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/channels/{name}", tag = "notifications",
    summary = "Delete a notification channel",
    responses((status = 204, description = "deleted")))]
pub(super) async fn channel_delete(
    State(engine): State<Arc<Engine>>,
    ChannelPath(ns, name): ChannelPath,
) -> Api<StatusCode> {
    engine.notifications().channel_delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/channels", tag = "notifications",
    summary = "A namespace's notification channels by name", params(SettingsPage),
    responses((status = 200, description = "OK", body = ChannelList)))]
pub(super) async fn channels_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<ChannelList>> {
    let list = engine
        .notifications()
        .channels_list(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(ChannelList {
        channels: list.into_iter().map(channel).collect(),
    }))
}

#[utoipa::path(put, path = "/namespaces/{ns}/templates/{name}", tag = "notifications",
    summary = "Create or change a notification template (400 with the part and line when one does not parse)",
    request_body = keel_api::notifications::TemplateRequest,
    responses((status = 200, description = "OK", body = TemplateAnswer), (status = 201, description = "created", body = TemplateAnswer)))]
pub(super) async fn template_put(
    State(engine): State<Arc<Engine>>,
    TemplatePath(ns, name): TemplatePath,
    JsonBody(spec): JsonBody<TemplateRequest>,
) -> Api<Response> {
    let (t, new) = engine
        .notifications()
        .template_put(&ns, &name, &spec)
        .await?;
    Ok(created((template(t), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/templates/{name}", tag = "notifications",
    summary = "One notification template",
    responses((status = 200, description = "OK", body = TemplateAnswer)))]
pub(super) async fn template_get(
    State(engine): State<Arc<Engine>>,
    TemplatePath(ns, name): TemplatePath,
) -> Api<Json<TemplateAnswer>> {
    Ok(Json(template(
        engine.notifications().template_get(&ns, &name).await?,
    )))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/templates/{name}", tag = "notifications",
    summary = "Delete a notification template",
    responses((status = 204, description = "deleted")))]
pub(super) async fn template_delete(
    State(engine): State<Arc<Engine>>,
    TemplatePath(ns, name): TemplatePath,
) -> Api<StatusCode> {
    engine.notifications().template_delete(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/templates", tag = "notifications",
    summary = "A namespace's notification templates by name", params(SettingsPage),
    responses((status = 200, description = "OK", body = TemplateList)))]
pub(super) async fn templates_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<TemplateList>> {
    let list = engine
        .notifications()
        .templates_list(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(TemplateList {
        templates: list.into_iter().map(template).collect(),
    }))
}

#[utoipa::path(put, path = "/namespaces/{ns}/recipients/{id}", tag = "notifications",
    summary = "Create or change a recipient",
    request_body(content = Option<keel_api::notifications::RecipientRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = RecipientAnswer), (status = 201, description = "created", body = RecipientAnswer)))]
pub(super) async fn recipient_put(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, id): RecipientPath,
    JsonBody(spec): JsonBody<RecipientRequest>,
) -> Api<Response> {
    let (r, new) = engine
        .notifications()
        .recipient_put(&ns, &id, &spec)
        .await?;
    Ok(created((recipient(r), new)))
}

#[utoipa::path(get, path = "/namespaces/{ns}/recipients/{id}", tag = "notifications",
    summary = "One recipient",
    responses((status = 200, description = "OK", body = RecipientAnswer)))]
pub(super) async fn recipient_get(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, id): RecipientPath,
) -> Api<Json<RecipientAnswer>> {
    Ok(Json(recipient(
        engine.notifications().recipient_get(&ns, &id).await?,
    )))
}

#[utoipa::path(delete, path = "/namespaces/{ns}/recipients/{id}", tag = "notifications",
    summary = "Delete a recipient and its preferences",
    responses((status = 204, description = "deleted")))]
pub(super) async fn recipient_delete(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, id): RecipientPath,
) -> Api<StatusCode> {
    engine.notifications().recipient_delete(&ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/namespaces/{ns}/recipients", tag = "notifications",
    summary = "A namespace's recipients by id", params(SettingsPage),
    responses((status = 200, description = "OK", body = RecipientList)))]
pub(super) async fn recipients_list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<SettingsPage>,
) -> Api<Json<RecipientList>> {
    let list = engine
        .notifications()
        .recipients_list(&ns, page.after.as_deref(), page.limit.unwrap_or(PAGE))
        .await?;
    Ok(Json(RecipientList {
        recipients: list.into_iter().map(recipient).collect(),
    }))
}

#[utoipa::path(put, path = "/namespaces/{ns}/recipients/{id}/preferences", tag = "notifications",
    summary = "Set a recipient's own preferences (over the namespace's)",
    request_body(content = Option<keel_api::notifications::PreferencesBody>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = PreferencesBody)))]
pub(super) async fn recipient_preferences_put(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, id): RecipientPath,
    JsonBody(prefs): JsonBody<PreferencesBody>,
) -> Api<Json<PreferencesBody>> {
    let notifications = engine.notifications();
    Ok(Json(
        notifications
            .preferences_put(&ns, Some(&id), &prefs)
            .await?,
    ))
}

#[utoipa::path(get, path = "/namespaces/{ns}/recipients/{id}/preferences", tag = "notifications",
    summary = "A recipient's own preferences",
    responses((status = 200, description = "OK", body = PreferencesBody)))]
pub(super) async fn recipient_preferences_get(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, id): RecipientPath,
) -> Api<Json<PreferencesBody>> {
    Ok(Json(
        engine
            .notifications()
            .preferences_get(&ns, Some(&id))
            .await?,
    ))
}

#[utoipa::path(put, path = "/namespaces/{ns}/preferences", tag = "notifications",
    summary = "Set the namespace's default preferences",
    request_body(content = Option<keel_api::notifications::PreferencesBody>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = PreferencesBody)))]
pub(super) async fn preferences_put(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    JsonBody(prefs): JsonBody<PreferencesBody>,
) -> Api<Json<PreferencesBody>> {
    Ok(Json(
        engine
            .notifications()
            .preferences_put(&ns, None, &prefs)
            .await?,
    ))
}

#[utoipa::path(get, path = "/namespaces/{ns}/preferences", tag = "notifications",
    summary = "The namespace's default preferences",
    responses((status = 200, description = "OK", body = PreferencesBody)))]
pub(super) async fn preferences_get(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<PreferencesBody>> {
    Ok(Json(
        engine.notifications().preferences_get(&ns, None).await?,
    ))
}
