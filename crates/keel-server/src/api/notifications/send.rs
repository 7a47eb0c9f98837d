//! Sending notifications (`POST .../notifications`, with `Idempotency-Key`)
//! and reading them back with their deliveries and every attempt.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_api::notifications::{
    DeliveryAnswer, DeliveryBrief, NotificationAnswer, NotificationList, NotificationsPage,
    NotifyAnswer, NotifyRequest,
};
use keel_core::notification::DeliveryStatus;
use keel_core::{Error, ErrorCode};
use keel_engine::Engine;
use keel_store::{Accepted, Delivery, Notification, NotificationQuery};

use super::PAGE;
use crate::api::ApiError;
use crate::api::extract::{JsonBody, NamespacePath, NotificationPath, QueryParams};

type Api<T> = Result<T, ApiError>;

fn delivery(d: Delivery) -> DeliveryAnswer {
    DeliveryAnswer {
        id: d.id.to_string(),
        channel: d.channel,
        status: d.status,
        duplicate_of: d.duplicate_of.map(|n| n.to_string()),
        fallback_of: d.fallback_of.map(|f| f.to_string()),
        attempts: d.attempts,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

fn notification(n: Notification) -> NotificationAnswer {
    NotificationAnswer {
        id: n.id.to_string(),
        recipient: n.recipient,
        category: n.category,
        request: n.body,
        deliveries: n.deliveries.into_iter().map(delivery).collect(),
        created_at: n.created_at,
    }
}

fn brief(n: &Notification) -> NotifyAnswer {
    NotifyAnswer {
        id: n.id.to_string(),
        deliveries: n
            .deliveries
            .iter()
            .map(|d| DeliveryBrief {
                channel: d.channel.clone(),
                status: d.status,
                id: Some(d.id.to_string()),
                duplicate_of: d.duplicate_of.map(|f| f.to_string()),
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/namespaces/{ns}/notifications", tag = "notifications",
    summary = "Send a notification: one delivery per channel, at most one per channel, recipient and dedup_key in the namespace's window",
    request_body = NotifyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "answers the notification it made for 24 hours; another body with it is 422")),
    responses(
        (status = 201, description = "accepted", body = NotifyAnswer),
        (status = 200, description = "an earlier notification: the same Idempotency-Key, or every delivery a duplicate", body = NotifyAnswer)))]
pub(in crate::api) async fn send(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    headers: HeaderMap,
    JsonBody(request): JsonBody<NotifyRequest>,
) -> Api<Response> {
    let key = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError(Error::invalid("Idempotency-Key must be visible ASCII")))?,
        ),
        None => None,
    };
    let accepted = engine.notifications().send(&ns, &request, key).await?;
    Ok(match accepted {
        Accepted::New(n) => (StatusCode::CREATED, Json(brief(&n))).into_response(),
        Accepted::Replayed(n) => (StatusCode::OK, Json(brief(&n))).into_response(),
        Accepted::Duplicate { first, channels } => {
            let answer = NotifyAnswer {
                id: first.to_string(),
                deliveries: channels
                    .into_iter()
                    .map(|channel| DeliveryBrief {
                        channel,
                        status: DeliveryStatus::SuppressedDuplicate,
                        id: None,
                        duplicate_of: Some(first.to_string()),
                    })
                    .collect(),
            };
            (StatusCode::OK, Json(answer)).into_response()
        }
    })
}

#[utoipa::path(get, path = "/namespaces/{ns}/notifications/{id}", tag = "notifications",
    summary = "A notification with its deliveries and every attempt",
    responses((status = 200, description = "OK", body = NotificationAnswer)))]
pub(in crate::api) async fn get(
    State(engine): State<Arc<Engine>>,
    NotificationPath(ns, id): NotificationPath,
) -> Api<Json<NotificationAnswer>> {
    Ok(Json(notification(
        engine.notifications().get_notification(&ns, &id).await?,
    )))
}

#[utoipa::path(get, path = "/namespaces/{ns}/notifications", tag = "notifications",
    summary = "Notifications newest first, by recipient, and by a delivery's status or channel",
    params(NotificationsPage),
    responses((status = 200, description = "OK", body = NotificationList)))]
pub(in crate::api) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(page): QueryParams<NotificationsPage>,
) -> Api<Json<NotificationList>> {
    let before = page
        .after
        .as_deref()
        .map(|a| {
            a.parse().map_err(|_| {
                ApiError(Error::new(
                    ErrorCode::InvalidRequest,
                    format!("after {a:?} is not a notification id"),
                ))
            })
        })
        .transpose()?;
    let query = NotificationQuery {
        recipient: page.recipient,
        status: page.status,
        channel: page.channel,
        before,
        limit: page.limit.unwrap_or(PAGE),
    };
    let found = engine
        .notifications()
        .list_notifications(&ns, &query)
        .await?;
    let next_cursor = (found.len() == query.limit as usize)
        .then(|| found.last().map(|n| n.id.to_string()))
        .flatten();
    Ok(Json(NotificationList {
        notifications: found.into_iter().map(notification).collect(),
        next_cursor,
    }))
}
