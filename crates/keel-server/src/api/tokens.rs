//! API tokens (admin only): create (the secret is in this answer and no
//! other), list (with `last_used_at`, never a secret), revoke.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keel_api::tokens::{TokenAnswer, TokenCreated, TokenList, TokenRequest};
use keel_core::auth::{Grant, Role};
use keel_engine::Engine;
use keel_engine::tokens::Expiry;
use keel_store::Token;

use super::ApiError;
use super::extract::JsonBody;

type Api<T> = Result<T, ApiError>;

pub(crate) fn answer(token: Token) -> TokenAnswer {
    TokenAnswer {
        id: token.id,
        name: token.name,
        role: token.grant.role,
        namespaces: token.grant.namespaces,
        resources: token.grant.resources,
        created_at: token.created_at,
        expires_at: token.expires_at,
        last_used_at: token.last_used_at,
        revoked_at: token.revoked_at,
    }
}

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    summary = "Create a token; its secret is in this answer only",
    request_body = keel_api::tokens::TokenRequest,
    responses((status = 201, description = "created", body = keel_api::tokens::TokenCreated))
)]
pub(super) async fn create(
    State(engine): State<Arc<Engine>>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Api<(StatusCode, Json<TokenCreated>)> {
    let namespaces = match (req.namespaces, req.role) {
        (Some(namespaces), _) => namespaces,
        (None, Role::Admin) => vec!["*".to_owned()],
        (None, _) => {
            return Err(ApiError::invalid(
                "namespaces is required: the namespaces the token reaches, or [\"*\"] for all",
            ));
        }
    };
    let expiry = match req.expires_in_ms {
        None => Expiry::Default,
        Some(None) => Expiry::Never,
        Some(Some(ms)) => Expiry::In(ms),
    };
    let resources = match (req.recipient, req.resources) {
        (None, resources) => resources,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give recipient or resources, not both"));
        }
        (Some(_), None) if !matches!(req.role, Role::Reader | Role::Publisher) => {
            return Err(ApiError::invalid(
                "a recipient's token is a reader's or a publisher's",
            ));
        }
        (Some(recipient), None) => {
            keel_core::notification::check_recipient_id(&recipient)?;
            if recipient.ends_with('*') {
                return Err(ApiError::invalid(
                    "a recipient's token names one recipient: no trailing *",
                ));
            }
            Some(vec![format!("inbox:{recipient}")])
        }
    };
    let grant = Grant {
        role: req.role,
        namespaces,
        resources,
    };
    let issued = engine.tokens().create(&req.name, grant, expiry).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            about: answer(issued.token),
            token: issued.secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    summary = "List tokens (never their secrets)",
    responses((status = 200, description = "OK", body = keel_api::tokens::TokenList))
)]
pub(super) async fn list(State(engine): State<Arc<Engine>>) -> Api<Json<TokenList>> {
    let tokens = engine.tokens().list().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(answer).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tokens",
    summary = "Revoke a token on every node within a second",
    responses((status = 200, description = "OK", body = keel_api::tokens::TokenAnswer))
)]
pub(super) async fn revoke(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Api<Json<TokenAnswer>> {
    Ok(Json(answer(engine.tokens().revoke(&id).await?)))
}
