//! HTTP API v1: routes, the error body, and extractors that turn every bad
//! input into a coded 4xx (never a 500 or a panic).

mod acks;
pub(crate) mod audit;
mod auth;
mod cloudevents;
mod connections;
pub(crate) mod endpoints;
mod error;
mod extract;
mod handlers;
mod health;
mod imports;
mod jobs;
mod monitors;
mod namespaces;
mod notifications;
mod openapi;
mod projects;
mod queues;
mod request_id;
pub(crate) mod schedules;
mod slos;
mod sources;
mod stream;
mod subscriptions;
pub(crate) mod tokens;
mod topics;
mod trace;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::middleware;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::AuthConfig;
pub use error::ApiError;
pub use extract::BodyBounds;

use keel_engine::Engine;

/// The whole API; `auth` says whether callers need tokens.
pub fn router(engine: Arc<Engine>, auth: AuthConfig) -> Router {
    let body_limit = engine.limits().max_body_bytes;
    let (routes, document) = documented().split_for_parts();
    let document = Bytes::from(
        serde_json::to_vec(&openapi::finish(document))
            .unwrap_or_else(|_| unreachable!("the document serializes")),
    );
    routes
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .route_layer(middleware::from_fn_with_state(
            (engine.clone(), auth),
            auth::check,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(request_id::request_id))
        .with_state(engine)
}

/// Every documented route: each handler's `#[utoipa::path]` gives both its
/// place in the router and its operation in the OpenAPI document.
/// 201 with the answer when `new`, else 200.
fn created<T: serde::Serialize>((answer, new): (T, bool)) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let status = if new {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    (status, axum::Json(answer)).into_response()
}

fn documented() -> OpenApiRouter<Arc<Engine>> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(jobs::enqueue))
        .routes(routes!(jobs::lease))
        .routes(routes!(stream::stream))
        .routes(routes!(jobs::redrive))
        .routes(routes!(imports::queue))
        .routes(routes!(imports::topic))
        .routes(routes!(connections::integrations_list))
        .routes(routes!(
            connections::integration_get,
            connections::integration_put,
            connections::integration_delete
        ))
        .routes(routes!(connections::connect))
        .routes(routes!(connections::connections_list))
        .routes(routes!(
            connections::connection_get,
            connections::connection_delete
        ))
        .routes(routes!(connections::proxy))
        .routes(routes!(connections::rotate))
        .routes(routes!(projects::list))
        .routes(routes!(projects::plan))
        .routes(routes!(projects::apply, projects::versions))
        .routes(routes!(projects::version))
        .routes(routes!(queues::stats, queues::set_policy))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(acks::complete))
        .routes(routes!(acks::fail))
        .routes(routes!(acks::heartbeat))
        .routes(routes!(acks::cancel))
        .routes(routes!(acks::acks))
        .routes(routes!(topics::list))
        .routes(routes!(topics::get, topics::put, topics::delete))
        .routes(routes!(topics::events, topics::publish))
        .routes(routes!(topics::event))
        .routes(routes!(subscriptions::matches))
        .routes(routes!(subscriptions::list))
        .routes(routes!(
            subscriptions::get,
            subscriptions::put,
            subscriptions::delete
        ))
        .routes(routes!(subscriptions::pause))
        .routes(routes!(subscriptions::resume))
        .routes(routes!(subscriptions::seek))
        .routes(routes!(subscriptions::fetch))
        .routes(routes!(subscriptions::commit))
        .routes(routes!(workflows::definitions))
        .routes(routes!(workflows::get, workflows::put))
        .routes(routes!(workflows::versions))
        .routes(routes!(workflows::start))
        .routes(routes!(workflows::list))
        .routes(routes!(workflows::run))
        .routes(routes!(workflows::signal))
        .routes(routes!(workflows::cancel))
        .routes(routes!(workflows::retry))
        .routes(routes!(sources::list))
        .routes(routes!(sources::get, sources::put, sources::delete))
        .routes(routes!(sources::ingest))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(namespaces::list))
        .routes(routes!(namespaces::get, namespaces::put))
        .routes(routes!(slos::list))
        .routes(routes!(endpoints::list))
        .routes(routes!(endpoints::get, endpoints::put, endpoints::delete))
        .routes(routes!(endpoints::rotate))
        .routes(routes!(endpoints::enable))
        .routes(routes!(endpoints::attempts))
        .routes(routes!(endpoints::recover))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::get, schedules::put, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::trigger))
        .routes(routes!(schedules::backfill))
        .routes(routes!(notifications::channels_list))
        .routes(routes!(
            notifications::channel_get,
            notifications::channel_put,
            notifications::channel_delete
        ))
        .routes(routes!(notifications::templates_list))
        .routes(routes!(
            notifications::template_get,
            notifications::template_put,
            notifications::template_delete
        ))
        .routes(routes!(notifications::recipients_list))
        .routes(routes!(
            notifications::recipient_get,
            notifications::recipient_put,
            notifications::recipient_delete
        ))
        .routes(routes!(
            notifications::recipient_preferences_get,
            notifications::recipient_preferences_put
        ))
        .routes(routes!(
            notifications::preferences_get,
            notifications::preferences_put
        ))
        .routes(routes!(
            notifications::send::send,
            notifications::send::list
        ))
        .routes(routes!(notifications::send::get))
        .routes(routes!(notifications::inbox::inbox_list))
        .routes(routes!(notifications::inbox::inbox_read))
        .routes(routes!(notifications::inbox::inbox_seen))
        .routes(routes!(notifications::inbox::inbox_archive))
        .routes(routes!(notifications::inbox::inbox_stream))
        .routes(routes!(
            notifications::unsubscribe::unsubscribe,
            notifications::unsubscribe::unsubscribe_page
        ))
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::get, handlers::put, handlers::delete))
        .routes(routes!(handlers::secrets))
        .routes(routes!(handlers::invoke))
        .routes(routes!(handlers::state::list))
        .routes(routes!(
            handlers::state::get,
            handlers::state::put,
            handlers::state::delete
        ))
        .routes(routes!(handlers::state::batch))
        .routes(routes!(monitors::list))
        .routes(routes!(monitors::get, monitors::put, monitors::delete))
        .routes(routes!(monitors::results))
        .routes(routes!(monitors::maintenance_list))
        .routes(routes!(
            monitors::maintenance_get,
            monitors::maintenance_put,
            monitors::maintenance_delete
        ))
        .routes(routes!(monitors::status::list))
        .routes(routes!(
            monitors::status::get,
            monitors::status::put,
            monitors::status::delete
        ))
        .routes(routes!(monitors::incidents::policies_list))
        .routes(routes!(
            monitors::incidents::policy_get,
            monitors::incidents::policy_put,
            monitors::incidents::policy_delete
        ))
        .routes(routes!(monitors::incidents::list))
        .routes(routes!(monitors::incidents::event))
        .routes(routes!(monitors::incidents::get))
        .routes(routes!(monitors::incidents::acknowledge))
        .routes(routes!(monitors::incidents::resolve))
        .routes(routes!(monitors::incidents::note))
        .routes(routes!(monitors::ping::ping, monitors::ping::ping_get))
        .routes(routes!(
            monitors::ping::signal_post,
            monitors::ping::signal_get
        ));
    OpenApiRouter::with_openapi(openapi::Base::openapi())
        .nest("/v1", v1)
        .routes(routes!(connections::callback))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}
