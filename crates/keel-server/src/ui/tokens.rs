//! Tokens (`/ui/tokens`, admins): every token with its role, reach, and
//! when it was last used, expires or was revoked. Never a secret: the
//! store keeps only their hashes.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::auth::{Access, Reach};
use minijinja::{Value, context};

use super::{NsQuery, Refused, Ui};
use crate::api::tokens::answer;

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let ns = query.namespace(&ui)?;
    ui.require(&session, Access::Admin, Reach::All, "list tokens")?;
    let tokens: Vec<Value> = ui
        .engine
        .tokens()
        .list()
        .await
        .map_err(|e| ui.failed(&e))?
        .into_iter()
        .map(answer)
        .map(|t| {
            context! {
                id => t.id,
                name => t.name,
                role => t.role.as_str(),
                namespaces => t.namespaces,
                resources => t.resources,
                created_at => t.created_at.to_string(),
                expires_at => t.expires_at.map(|t| t.to_string()),
                last_used_at => t.last_used_at.map(|t| t.to_string()),
                revoked_at => t.revoked_at.map(|t| t.to_string()),
            }
        })
        .collect();
    Ok(ui.page(
        "tokens.html",
        Some(&session),
        ns.as_str(),
        context! { tokens => tokens },
    ))
}
