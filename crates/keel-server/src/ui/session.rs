//! Who is looking at the dashboard, and what they may do: the session (an
//! API token in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`,
//! checked as the API checks a bearer token; nobody without `--auth`), the
//! grant checks every page makes, the CSRF token and `Origin` check of
//! every state change, and logging in and out.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::Namespace;
use keel_core::auth::{Access, Reach};
use keel_engine::tokens::Caller;
use minijinja::context;
use serde::Deserialize;

use super::{NsQuery, Refused, Ui};

const COOKIE: &str = "keel_token";
/// Who is looking: a token's caller, or nobody when tokens are off.
pub(super) struct Session {
    pub(super) caller: Option<Caller>,
    token: String,
}

impl Session {
    /// Whether this session may do `access` on `reach` (anything without
    /// tokens).
    pub(super) fn may(&self, access: Access, reach: Reach<'_>) -> bool {
        self.caller
            .as_ref()
            .is_none_or(|c| c.grant().permit(access, reach).is_ok())
    }
}

impl Ui {
    /// The session of a request; the login page when it has none.
    pub(super) async fn session(&self, headers: &HeaderMap) -> Result<Session, Refused> {
        if !self.required {
            return Ok(Session {
                caller: None,
                token: String::new(),
            });
        }
        let token = cookie(headers, COOKIE).ok_or_else(to_login)?;
        match self.engine.tokens().authenticate(&token).await {
            Ok(caller) => Ok(Session {
                caller: Some(caller),
                token,
            }),
            Err(_) => Err(to_login()),
        }
    }

    pub(super) fn csrf(&self, session: &Session) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.csrf_key);
        ctx.update(session.token.as_bytes());
        hex(ctx.finish().as_ref())
    }

    /// Refuses a state change whose CSRF token is not this session's, or
    /// whose `Origin` is another site.
    pub(super) fn check_post(
        &self,
        headers: &HeaderMap,
        session: &Session,
        csrf: &str,
    ) -> Result<(), Refused> {
        same_origin(headers)?;
        let expected = self.csrf(session);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            csrf.as_bytes(),
            expected.as_bytes(),
        )) {
            return Err(self
                .error(StatusCode::FORBIDDEN, "this form is stale: reload the page")
                .into());
        }
        Ok(())
    }

    /// A redirect to `to` that sets the session cookie to `token`, or
    /// clears it.
    pub(super) fn redirect_with_session(&self, to: &str, token: Option<&str>) -> Response {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = match token {
            Some(token) => format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}"),
            None => format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict{secure}; Max-Age=0"),
        };
        let mut res = Redirect::to(to).into_response();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, value);
        }
        res
    }

    /// The session of a page that shows namespace `query`, once it may
    /// read it.
    pub(super) async fn reader(
        &self,
        headers: &HeaderMap,
        query: &NsQuery,
    ) -> Result<(Session, Namespace), Refused> {
        let session = self.session(headers).await?;
        let ns = query.namespace(self)?;
        self.require(
            &session,
            Access::Read,
            Reach::Namespace(ns.as_str()),
            &format!("read namespace {ns}"),
        )?;
        Ok((session, ns))
    }

    /// 403 unless the session may do `access` on `reach`; `what` ends
    /// "this token may not ...".
    pub(super) fn require(
        &self,
        session: &Session,
        access: Access,
        reach: Reach<'_>,
        what: &str,
    ) -> Result<(), Refused> {
        if session.may(access, reach) {
            return Ok(());
        }
        let message = format!("this token may not {what}");
        Err(self.error(StatusCode::FORBIDDEN, &message).into())
    }
}

fn to_login() -> Refused {
    Redirect::to("/ui/login").into_response().into()
}

/// A browser's form post names its page's origin; another site's is refused.
fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
    if origin_host.is_empty() || origin_host != host {
        return Err((StatusCode::FORBIDDEN, "a form from another site")
            .into_response()
            .into());
    }
    Ok(())
}

/// The value of cookie `name` in a request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) async fn login_form(State(ui): State<Arc<Ui>>) -> Response {
    if !ui.required {
        return Redirect::to("/ui").into_response();
    }
    ui.page("login.html", None, "default", context! {})
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Refused> {
    same_origin(&headers)?;
    let token = form.token.trim();
    if ui.engine.tokens().authenticate(token).await.is_err() {
        let mut res = ui.page(
            "login.html",
            None,
            "default",
            context! { error => "That token is unknown, expired or revoked." },
        );
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    }
    Ok(ui.redirect_with_session("/ui", Some(token)))
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub(super) csrf: String,
}

pub(super) async fn logout(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    Ok(ui.redirect_with_session("/ui/login", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keel_token=keel_x_y; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("keel_x_y"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn a_form_from_another_origin_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5335"));
        assert!(
            same_origin(&headers).is_ok(),
            "no Origin: not a browser's cross-site form"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5335"),
        );
        assert!(same_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(same_origin(&headers).is_err());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&headers).is_err());
    }
}
