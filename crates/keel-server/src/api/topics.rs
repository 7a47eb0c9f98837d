//! Topic endpoints: policy, publishing (Keel's own form and CloudEvents),
//! reading history and following it (`wait_ms`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_api::topics::{
    EventAnswer, EventPage, EventRequest, PublishedAnswer, PublishedBatch, TopicAnswer, TopicList,
    TopicRequest,
};
use keel_core::{Error, Event, NewEvent, TopicPolicy};
use keel_engine::Engine;
use keel_store::{EventQuery, Topic};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ApiError;
use super::cloudevents::{self, Mode};
use super::extract::{
    Body, JsonBody, NamespacePath, Object, QueryParams, TopicPath, batch_items, count, json_error,
    parse, wait_ms,
};
use super::trace::RequestTrace;

type Api<T> = Result<T, ApiError>;

const DEFAULT_PAGE: u32 = 100;

fn topic_answer(topic: Topic) -> TopicAnswer {
    TopicAnswer {
        name: topic.name.to_string(),
        retention_ms: topic.policy.retention_ms,
        dedup_window_ms: topic.policy.dedup_window_ms,
        max_event_bytes: topic.policy.max_event_bytes,
        slo: topic.policy.slo,
        head_seq: topic.head_seq,
        events: topic.events,
        created_at: topic.created_at,
    }
}

pub(super) fn event_answer(event: Event) -> Api<EventAnswer> {
    let e = event.event;
    let data = RawValue::from_string(e.data)
        .map_err(|err| Error::internal(format!("stored event data does not parse: {err}")))?;
    Ok(EventAnswer {
        id: e.id,
        seq: event.seq,
        kind: e.kind,
        source: e.source,
        key: e.key,
        time: e.time,
        data,
        headers: e.headers,
    })
}

#[utoipa::path(
    put,
    path = "/namespaces/{ns}/topics/{topic}",
    tag = "topics",
    summary = "Create or change a topic",
    request_body(content = Option<keel_api::topics::TopicRequest>, description = "an empty body reads as {}"),
    responses((status = 200, description = "OK", body = keel_api::topics::TopicAnswer), (status = 201, description = "created", body = keel_api::topics::TopicAnswer))
)]
pub(super) async fn put(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
    JsonBody(body): JsonBody<TopicRequest>,
) -> Api<Response> {
    let defaults = TopicPolicy::default();
    let policy = TopicPolicy {
        retention_ms: body.retention_ms.unwrap_or(defaults.retention_ms),
        dedup_window_ms: body.dedup_window_ms.unwrap_or(defaults.dedup_window_ms),
        max_event_bytes: body.max_event_bytes.unwrap_or(defaults.max_event_bytes),
        slo: body.slo,
    };
    let (stored, created) = engine.topics().put(&ns, &topic, &policy).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(topic_answer(stored))).into_response())
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/topics/{topic}",
    tag = "topics",
    summary = "One topic",
    responses((status = 200, description = "OK", body = keel_api::topics::TopicAnswer))
)]
pub(super) async fn get(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
) -> Api<Json<TopicAnswer>> {
    Ok(Json(topic_answer(engine.topics().get(&ns, &topic).await?)))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/topics",
    tag = "topics",
    summary = "List topics",
    responses((status = 200, description = "OK", body = keel_api::topics::TopicList))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Api<Json<TopicList>> {
    let topics = engine.topics().list(&ns).await?;
    Ok(Json(TopicList {
        topics: topics.into_iter().map(topic_answer).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/topics/{topic}",
    tag = "topics",
    summary = "Delete a topic and its events",
    responses((status = 204, description = "deleted"))
)]
pub(super) async fn delete(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
) -> Api<StatusCode> {
    engine.topics().delete(&ns, &topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/namespaces/{ns}/topics/{topic}/events",
    tag = "topics",
    summary = "Publish one event or a batch (JSON or CloudEvents)",
    request_body(content((keel_api::topics::PublishRequest = "application/json"), (serde_json::Value = "application/cloudevents+json"), (Vec<serde_json::Value> = "application/cloudevents-batch+json"))),
    responses((status = 201, description = "created", body = keel_api::topics::PublishAnswer))
)]
pub(super) async fn publish(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
    trace: RequestTrace,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Api<Response> {
    let (requests, batch) = match cloudevents::mode(&headers) {
        Mode::Structured => (cloudevents::structured(&bytes, false)?, false),
        Mode::StructuredBatch => (cloudevents::structured(&bytes, true)?, true),
        Mode::Binary => (vec![cloudevents::binary(&headers, &bytes)?], false),
        Mode::Native => match batch_items(&bytes, "events")? {
            Some(events) => (
                serde_json::from_str::<Vec<Object<EventRequest>>>(events.get())
                    .map_err(json_error)?
                    .into_iter()
                    .map(|Object(e)| e)
                    .collect(),
                true,
            ),
            None => (vec![parse(&bytes)?], false),
        },
    };
    let now = engine.now();
    let events = requests
        .into_iter()
        .map(|r| NewEvent {
            generated_id: r.id.is_none(),
            id: r.id.unwrap_or_else(|| engine.topics().new_id()),
            kind: r.kind.unwrap_or_default(),
            source: r.source.unwrap_or_default(),
            key: r.key,
            time: r.time.unwrap_or(now),
            data: r
                .data
                .map_or_else(|| "null".to_owned(), |d| d.get().to_owned()),
            headers: traced(r.headers, &trace),
        })
        .collect::<Vec<NewEvent>>();
    let published = engine.topics().publish(&ns, &topic, events).await?;
    let mut answers: Vec<PublishedAnswer> = published
        .into_iter()
        .map(|p| PublishedAnswer {
            id: p.id,
            seq: p.seq,
            duplicate: p.duplicate,
        })
        .collect();
    Ok(if batch {
        (
            StatusCode::CREATED,
            Json(PublishedBatch { events: answers }),
        )
            .into_response()
    } else {
        let one = answers
            .pop()
            .ok_or_else(|| ApiError(Error::internal("no answer for the publish")))?;
        (StatusCode::CREATED, Json(one)).into_response()
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadParams {
    after: Option<u64>,
    key: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<u32>,
    /// Waits up to this long for the first event when there is none yet.
    wait_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/topics/{topic}/events",
    tag = "topics",
    summary = "Read a topic's events in order",
    params(ReadParams),
    responses((status = 200, description = "OK", body = keel_api::topics::EventPage))
)]
pub(super) async fn events(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, _): TopicPath,
    QueryParams(params): QueryParams<ReadParams>,
) -> Api<Json<EventPage>> {
    let limit = count(
        "limit",
        params.limit,
        DEFAULT_PAGE,
        engine.limits().max_batch as u32,
    )?;
    let wait = wait_ms(engine.limits(), params.wait_ms)?;
    let query = EventQuery {
        after: params.after.unwrap_or(0),
        key: params.key,
        kind: params.kind,
        limit,
    };
    let events = engine
        .topics()
        .read(&ns, &topic, &query, Duration::from_millis(wait))
        .await?;
    let full = events.len() == limit as usize;
    let next_after = events.last().map(|e| e.seq).filter(|_| full);
    Ok(Json(EventPage {
        events: events
            .into_iter()
            .map(event_answer)
            .collect::<Api<Vec<_>>>()?,
        next_after,
    }))
}

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/topics/{topic}/events/{id}",
    tag = "topics",
    summary = "One event",
    responses((status = 200, description = "OK", body = keel_api::topics::EventAnswer))
)]
pub(super) async fn event(
    State(engine): State<Arc<Engine>>,
    TopicPath(ns, topic, id): TopicPath,
) -> Api<Json<EventAnswer>> {
    let id = id.unwrap_or_default();
    Ok(Json(event_answer(
        engine.topics().event(&ns, &topic, &id).await?,
    )?))
}

/// An event's attributes with the request's trace context as the
/// distributed-tracing extension, unless the event carries its own.
fn traced(mut headers: BTreeMap<String, String>, trace: &RequestTrace) -> BTreeMap<String, String> {
    if let Some(context) = &trace.0 {
        headers
            .entry(keel_core::event::TRACEPARENT.to_owned())
            .or_insert_with(|| context.to_string());
    }
    headers
}
