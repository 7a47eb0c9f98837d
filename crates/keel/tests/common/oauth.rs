//! A real OAuth2 authorization server for the connections tests (RFC 6749
//! with PKCE, RFC 7636), on a loopback port: `/authorize` stands for the
//! end user saying yes (it redirects with a code), `/token` exchanges a
//! code or a refresh token, rotating refresh tokens and revoking the old
//! ones as strict providers do, and `/api/me` is an API that takes only the
//! newest access token. It counts refresh requests, so a test can check
//! how many a burst of calls made.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;

pub(crate) const CLIENT_ID: &str = "keel-app";
pub(crate) const CLIENT_SECRET: &str = "client-s3cret-value";

#[derive(Default)]
struct Issued {
    /// code → (PKCE challenge, redirect_uri)
    codes: HashMap<String, (Option<String>, String)>,
    refresh: HashSet<String>,
    access: HashSet<String>,
    next: usize,
    /// Every token the server has handed out, for the plaintext checks.
    all: Vec<String>,
}

pub(crate) struct Provider {
    pub url: String,
    pub refreshes: Arc<AtomicUsize>,
    issued: Arc<Mutex<Issued>>,
}

#[derive(Clone)]
struct Shared {
    issued: Arc<Mutex<Issued>>,
    refreshes: Arc<AtomicUsize>,
    /// `expires_in` of the first tokens (a code's), then of refreshed ones.
    lifetimes: (Option<u64>, Option<u64>),
}

impl Provider {
    /// `first` is the code's tokens' `expires_in`, `then` the refreshed
    /// ones'.
    pub(crate) async fn start(first: Option<u64>, then: Option<u64>) -> Provider {
        let issued = Arc::new(Mutex::new(Issued::default()));
        let refreshes = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            issued: issued.clone(),
            refreshes: refreshes.clone(),
            lifetimes: (first, then),
        };
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/api/me", get(me))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider {
            url,
            refreshes,
            issued,
        }
    }

    /// Every token handed out so far.
    pub(crate) fn tokens(&self) -> Vec<String> {
        self.issued.lock().expect("issued").all.clone()
    }

    /// An integration of this provider, sending the user back to `keel`.
    pub(crate) fn integration(&self, keel: &str) -> serde_json::Value {
        json!({
            "provider": "generic",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "auth_url": format!("{}/authorize", self.url),
            "token_url": format!("{}/token", self.url),
            "api_base": [self.url],
            "scopes": ["read", "write"],
            "redirect_url": format!("{keel}/oauth/callback"),
        })
    }
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "bad client").into_response();
    }
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri or state").into_response();
    };
    let mut issued = s.issued.lock().expect("issued");
    issued.next += 1;
    let code = format!("code-{}", issued.next);
    let challenge = q.get("code_challenge").cloned();
    issued
        .codes
        .insert(code.clone(), (challenge, redirect.clone()));
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

fn refused(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn token(State(s): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut issued = s.issued.lock().expect("issued");
    let lifetime = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect)) = issued.codes.remove(&code) else {
                return refused("invalid_grant");
            };
            if f.get("redirect_uri") != Some(&redirect) {
                return refused("invalid_grant");
            }
            if let Some(challenge) = challenge {
                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != challenge {
                    return refused("invalid_grant");
                }
            }
            s.lifetimes.0
        }
        Some("refresh_token") => {
            s.refreshes.fetch_add(1, Ordering::SeqCst);
            let old = f.get("refresh_token").cloned().unwrap_or_default();
            // Rotation: the old refresh token and every access token die.
            if !issued.refresh.remove(&old) {
                return refused("invalid_grant");
            }
            issued.access.clear();
            s.lifetimes.1
        }
        _ => return refused("unsupported_grant_type"),
    };
    issued.next += 1;
    let n = issued.next;
    let (access, refresh) = (format!("at-{n}-secret"), format!("rt-{n}-secret"));
    issued.access.insert(access.clone());
    issued.refresh.insert(refresh.clone());
    issued.all.extend([access.clone(), refresh.clone()]);
    let mut answer = json!({
        "access_token": access, "refresh_token": refresh, "token_type": "bearer", "scope": "read write"
    });
    if let Some(seconds) = lifetime {
        answer["expires_in"] = json!(seconds);
    }
    Json(answer).into_response()
}

async fn me(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if s.issued.lock().expect("issued").access.contains(token) {
        Json(json!({"user": "octocat"})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad token"})),
        )
            .into_response()
    }
}

/// Connects `name` through `integration`: the session, the provider's
/// consent (its redirect), and Keel's callback; Keel's answer to it.
pub(crate) async fn connect(
    keel: &super::Server,
    integration: &str,
    name: &str,
    return_to: Option<&str>,
) -> (u16, Option<String>) {
    let mut body = json!({"connection": name});
    if let Some(to) = return_to {
        body["return_to"] = json!(to);
    }
    let (status, session) = keel
        .call(
            "POST",
            &format!("/namespaces/default/integrations/{integration}/connect-sessions"),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let consent = http
        .get(session["authorize_url"].as_str().expect("a URL"))
        .send()
        .await
        .expect("the provider answers");
    let status = consent.status();
    let Some(back) = consent.headers().get("location").cloned() else {
        panic!(
            "the provider did not redirect: {status} {}",
            consent.text().await.unwrap_or_default()
        );
    };
    let back = back.to_str().expect("a location").to_owned();
    let answer = http.get(&back).send().await.expect("keel answers");
    let location = answer
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("text").to_owned());
    (answer.status().as_u16(), location)
}
