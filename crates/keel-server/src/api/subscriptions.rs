//! Subscription endpoints: put, get, list, delete, pause, resume, seek;
//! pulled fetch and commit; and a dry run of a filter over a topic's history.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_api::subscriptions::{
    CommitRequest, Committed, FetchAnswer, FetchRequest, MatchAnswer, MatchRequest, StartAt,
    SubscriptionAnswer, SubscriptionList, SubscriptionRequest, SubscriptionStatus,
};
use keel_core::TopicName;
use keel_core::subscription::{DEFAULT_CONSUMER_TIMEOUT_MS, Start, SubscriptionSpec};
use keel_engine::Engine;
use keel_store::{EventQuery, Subscription};
use serde::Deserialize;

use super::ApiError;
use super::extract::{
    JsonBody, NamespacePath, QueryParams, SubscriptionPath, TopicPath, count, wait_ms,
};
use super::topics::event_answer;

type Api<T> = Result<T, ApiError>;

const DEFAULT_FETCH: u32 = 100;
/// Most events one match request looks at.
const MAX_MATCH_SCAN: u32 = 10_000;
const MATCH_SAMPLE: usize = 10;

fn answer(sub: Subscription) -> SubscriptionAnswer {
    let lag = sub.lag();
    SubscriptionAnswer {
        name: sub.name,
        topic: sub.spec.topic.to_string(),
        filter: sub.spec.filter,
        target: sub.spec.target,
        consumer_timeout_ms: sub.spec.consumer_timeout_ms,
        status: if sub.paused {
            SubscriptionStatus::Paused
        } else {
            SubscriptionStatus::Active
        },
        position: sub.position,
        lag,
        delivered: sub.delivered,
        skipped: sub.skipped,
        created_at: sub.created_at,
    }
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/subscriptions/{name}",
    tag = "subscriptions",
    summary = "Create or change a subscription",
    request_body = keel_api::subscriptions::SubscriptionRequest,
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionAnswer), (status = 201, description = "created", body = keel_api::subscriptions::SubscriptionAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
    JsonBody(body): JsonBody<SubscriptionRequest>,
) -> Api<Response> {
    let spec = SubscriptionSpec {
        topic: TopicName::new(&body.topic)?,
        filter: body.filter.unwrap_or_default(),
        target: body.target,
        consumer_timeout_ms: body
            .consumer_timeout_ms
            .unwrap_or(DEFAULT_CONSUMER_TIMEOUT_MS),
    };
    let start = body.start.map_or(Start::Latest, Start::from);
    let (sub, created) = engine
        .subscriptions()
        .put(&ns, name.as_str(), &spec, start)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer(sub))).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/subscriptions/{name}",
    tag = "subscriptions",
    summary = "One subscription and where it stands",
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
) -> Api<Json<SubscriptionAnswer>> {
    let sub = engine.subscriptions().get(&ns, name.as_str()).await?;
    Ok(Json(answer(sub)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    topic: Option<String>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/subscriptions",
    tag = "subscriptions",
    summary = "List subscriptions",
    params(ListParams),
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
    QueryParams(params): QueryParams<ListParams>,
) -> Api<Json<SubscriptionList>> {
    let topic = params.topic.as_deref().map(TopicName::new).transpose()?;
    let subs = engine
        .subscriptions()
        .list(Some(&ns), topic.as_ref())
        .await?;
    Ok(Json(SubscriptionList {
        subscriptions: subs.into_iter().map(answer).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/subscriptions/{name}",
    tag = "subscriptions",
    summary = "Delete a subscription",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
) -> Api<StatusCode> {
    engine.subscriptions().delete(&ns, name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/subscriptions/{name}/pause",
    tag = "subscriptions",
    summary = "Pause a subscription",
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionAnswer))
)]
pub(super) async fn pause(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
) -> Api<Json<SubscriptionAnswer>> {
    let sub = engine
        .subscriptions()
        .pause(&ns, name.as_str(), true)
        .await?;
    Ok(Json(answer(sub)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/subscriptions/{name}/resume",
    tag = "subscriptions",
    summary = "Resume a subscription",
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionAnswer))
)]
pub(super) async fn resume(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
) -> Api<Json<SubscriptionAnswer>> {
    let sub = engine
        .subscriptions()
        .pause(&ns, name.as_str(), false)
        .await?;
    Ok(Json(answer(sub)))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/subscriptions/{name}/seek",
    tag = "subscriptions",
    summary = "Move a subscription's position",
    request_body = keel_api::subscriptions::StartAt,
    responses((status = 200, description = "OK", body = keel_api::subscriptions::SubscriptionAnswer))
)]
pub(super) async fn seek(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
    JsonBody(start): JsonBody<StartAt>,
) -> Api<Json<SubscriptionAnswer>> {
    let sub = engine
        .subscriptions()
        .seek(&ns, name.as_str(), start.into())
        .await?;
    Ok(Json(answer(sub)))
}

fn check_consumer(consumer: &str) -> Api<()> {
    if consumer.is_empty() || consumer.len() > 128 {
        return Err(ApiError::invalid("consumer must be 1 to 128 bytes"));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/subscriptions/{name}/fetch",
    tag = "subscriptions",
    summary = "Fetch events (pull)",
    request_body = keel_api::subscriptions::FetchRequest,
    responses((status = 200, description = "OK", body = keel_api::subscriptions::FetchAnswer))
)]
pub(super) async fn fetch(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
    JsonBody(body): JsonBody<FetchRequest>,
) -> Api<Json<FetchAnswer>> {
    check_consumer(&body.consumer)?;
    let max = count(
        "max_events",
        body.max_events,
        DEFAULT_FETCH,
        engine.limits().max_batch as u32,
    )?;
    let wait = wait_ms(engine.limits(), body.wait_ms)?;
    let fetched = engine
        .subscriptions()
        .fetch(
            &ns,
            name.as_str(),
            &body.consumer,
            max,
            Duration::from_millis(wait),
        )
        .await?;
    Ok(Json(FetchAnswer {
        events: fetched
            .events
            .into_iter()
            .map(event_answer)
            .collect::<Api<Vec<_>>>()?,
        cursor: fetched.cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/subscriptions/{name}/commit",
    tag = "subscriptions",
    summary = "Commit fetched events",
    request_body = keel_api::subscriptions::CommitRequest,
    responses((status = 200, description = "OK", body = keel_api::subscriptions::Committed))
)]
pub(super) async fn commit(
    State(engine): State<Arc<Engine>>,
    SubscriptionPath(ns, name): SubscriptionPath,
    JsonBody(body): JsonBody<CommitRequest>,
) -> Api<Json<Committed>> {
    check_consumer(&body.consumer)?;
    engine
        .subscriptions()
        .commit(&ns, name.as_str(), &body.consumer, &body.cursor)
        .await?;
    Ok(Json(Committed { committed: true }))
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/topics/{topic}/match",
    tag = "subscriptions",
    summary = "Try a filter on a topic's history",
    request_body(content = Option<keel_api::subscriptions::MatchRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_api::subscriptions::MatchAnswer))
)]
/// A filter tried on up to `limit` events after `after`.
pub(super) async fn matches(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
    JsonBody(body): JsonBody<MatchRequest>,
) -> Api<Json<MatchAnswer>> {
    body.filter.check()?;
    let limit = count("limit", body.limit, 1000, MAX_MATCH_SCAN)?;
    let (mut after, mut scanned, mut matched, mut sample) = (body.after, 0u64, 0u64, Vec::new());
    while scanned < u64::from(limit) {
        let page = (u64::from(limit) - scanned).min(engine.limits().max_batch as u64) as u32;
        let query = EventQuery {
            after,
            key: None,
            kind: None,
            limit: page,
        };
        let events = engine.topics().events(&ns, &topic, &query).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            break;
        };
        scanned += events.len() as u64;
        after = last;
        for event in events {
            if body.filter.matches(&event) {
                matched += 1;
                if sample.len() < MATCH_SAMPLE {
                    sample.push(event_answer(event)?);
                }
            }
        }
    }
    Ok(Json(MatchAnswer {
        matched,
        scanned,
        sample,
    }))
}
