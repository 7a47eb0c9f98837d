//! Tokens and roles on the real binary: the role × endpoint matrix (every
//! route × every role × its own namespace and another, and no, expired and
//! revoked tokens), resource patterns, the token API and CLI, bootstrap
//! from an empty data directory and an empty database, revocation reaching
//! every node within a second, and no token in any log line.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::{Duration, Instant};

use common::{Logs, Server, bootstrap_token};
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};

/// A route as a client calls it: `{ns}` becomes the namespace under test.
struct Route {
    method: &'static str,
    path: &'static str,
    /// What the route needs: read, jobs (read jobs), publish, work,
    /// operate, admin, metrics (a token over every namespace), open.
    need: &'static str,
    body: Option<fn() -> Value>,
}

const fn r(method: &'static str, path: &'static str, need: &'static str) -> Route {
    Route {
        method,
        path,
        need,
        body: None,
    }
}

const fn rb(
    method: &'static str,
    path: &'static str,
    need: &'static str,
    body: fn() -> Value,
) -> Route {
    Route {
        method,
        path,
        need,
        body: Some(body),
    }
}

fn empty() -> Value {
    json!({})
}
fn no_wait() -> Value {
    json!({"max_jobs": 1, "wait_ms": 0})
}
fn settle() -> Value {
    json!({"lease_token": "00000000000000000000000000000000"})
}
fn job() -> Value {
    json!({"payload": {"n": 1}})
}
fn event() -> Value {
    json!({"data": {"n": 1}})
}

/// Every route of the API. A job or run id that names nothing is fine:
/// what is checked is who gets past the door, not what is behind it.
#[rustfmt::skip]
const ROUTES: &[Route] = &[
    r("GET", "/healthz", "open"),
    r("GET", "/readyz", "open"),
    r("GET", "/metrics", "metrics"),
    r("GET", "/openapi.json", "open"),
    rb("POST", "/v1/hooks/{ns}/nosuch", "open", empty),
    rb("POST", "/v1/tokens", "admin", empty),
    r("GET", "/v1/tokens", "admin"),
    r("DELETE", "/v1/tokens/00000000000000000000000000000000", "admin"),
    r("GET", "/v1/audit", "admin"),
    r("GET", "/v1/namespaces", "admin"),
    r("GET", "/oauth/callback", "open"),
    rb("POST", "/v1/keys/rotate", "admin", empty),
    r("GET", "/v1/namespaces/{ns}/integrations", "read"),
    r("GET", "/v1/namespaces/{ns}/integrations/i", "read"),
    rb("PUT", "/v1/namespaces/{ns}/integrations/i", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/integrations/nosuch", "operate"),
    rb("POST", "/v1/namespaces/{ns}/integrations/i/connect-sessions", "publish", empty),
    r("GET", "/v1/namespaces/{ns}/connections", "read"),
    r("GET", "/v1/namespaces/{ns}/connections/c", "read"),
    r("DELETE", "/v1/namespaces/{ns}/connections/nosuch", "operate"),
    rb("POST", "/v1/namespaces/{ns}/connections/c/requests", "publish", empty),
    r("GET", "/v1/projects", "admin"),
    rb("POST", "/v1/projects/p/plans", "admin", empty),
    rb("POST", "/v1/projects/p/versions", "admin", empty),
    r("GET", "/v1/projects/p/versions", "admin"),
    r("GET", "/v1/projects/p/versions/1", "admin"),
    rb("PUT", "/v1/namespaces/{ns}", "admin", empty),
    r("GET", "/v1/namespaces/{ns}", "read"),
    r("GET", "/v1/namespaces/{ns}/slos", "read"),
    rb("POST", "/v1/namespaces/{ns}/queues/q/jobs", "publish", job),
    rb("POST", "/v1/namespaces/{ns}/queues/q/imports", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/queues/q/lease", "work", no_wait),
    r("GET", "/v1/namespaces/{ns}/queues/q/stream", "work"),
    rb("POST", "/v1/namespaces/{ns}/queues/q/redrive", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/queues/q", "jobs"),
    rb("PUT", "/v1/namespaces/{ns}/queues/q", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/queues/q/pause", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/queues/q/resume", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/jobs", "jobs"),
    r("GET", "/v1/namespaces/{ns}/jobs/{job}", "jobs"),
    rb("POST", "/v1/namespaces/{ns}/jobs/{job}/complete", "work", settle),
    rb("POST", "/v1/namespaces/{ns}/jobs/{job}/fail", "work", settle),
    rb("POST", "/v1/namespaces/{ns}/jobs/{job}/heartbeat", "work", settle),
    rb("POST", "/v1/namespaces/{ns}/jobs/{job}/cancel", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/acks", "work", empty),
    r("GET", "/v1/namespaces/{ns}/topics", "read"),
    r("GET", "/v1/namespaces/{ns}/topics/t", "read"),
    rb("PUT", "/v1/namespaces/{ns}/topics/t", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/topics/t/imports", "publish", empty),
    r("DELETE", "/v1/namespaces/{ns}/topics/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/topics/t/events", "read"),
    rb("POST", "/v1/namespaces/{ns}/topics/t/events", "publish", event),
    r("GET", "/v1/namespaces/{ns}/topics/t/events/e1", "read"),
    rb("POST", "/v1/namespaces/{ns}/topics/t/match", "read", empty),
    r("GET", "/v1/namespaces/{ns}/subscriptions", "read"),
    r("GET", "/v1/namespaces/{ns}/subscriptions/s", "read"),
    rb("PUT", "/v1/namespaces/{ns}/subscriptions/s", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/subscriptions/nosuch", "operate"),
    rb("POST", "/v1/namespaces/{ns}/subscriptions/s/pause", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/subscriptions/s/resume", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/subscriptions/s/seek", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/subscriptions/s/fetch", "work", no_wait),
    rb("POST", "/v1/namespaces/{ns}/subscriptions/s/commit", "work", empty),
    r("GET", "/v1/namespaces/{ns}/workflows", "read"),
    r("GET", "/v1/namespaces/{ns}/workflows/w", "read"),
    rb("PUT", "/v1/namespaces/{ns}/workflows/w", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/workflows/w/versions", "read"),
    rb("POST", "/v1/namespaces/{ns}/workflows/w/runs", "publish", empty),
    r("GET", "/v1/namespaces/{ns}/runs", "read"),
    r("GET", "/v1/namespaces/{ns}/runs/{run}", "read"),
    rb("POST", "/v1/namespaces/{ns}/runs/{run}/signals/go", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/runs/{run}/cancel", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/runs/{run}/retry", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/sources", "read"),
    r("GET", "/v1/namespaces/{ns}/sources/s", "read"),
    rb("PUT", "/v1/namespaces/{ns}/sources/s", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/sources/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/endpoints", "read"),
    r("GET", "/v1/namespaces/{ns}/endpoints/e", "read"),
    rb("PUT", "/v1/namespaces/{ns}/endpoints/e", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/endpoints/nosuch", "operate"),
    rb("POST", "/v1/namespaces/{ns}/endpoints/e/rotate-secret", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/endpoints/e/enable", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/endpoints/e/attempts", "read"),
    rb("POST", "/v1/namespaces/{ns}/endpoints/e/recover", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/schedules", "read"),
    r("GET", "/v1/namespaces/{ns}/schedules/s", "read"),
    rb("PUT", "/v1/namespaces/{ns}/schedules/s", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/schedules/nosuch", "operate"),
    rb("POST", "/v1/namespaces/{ns}/schedules/s/pause", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/schedules/s/resume", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/schedules/s/trigger", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/schedules/s/backfill", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/channels", "read"),
    r("GET", "/v1/namespaces/{ns}/channels/c", "read"),
    rb("PUT", "/v1/namespaces/{ns}/channels/c", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/channels/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/templates", "read"),
    r("GET", "/v1/namespaces/{ns}/templates/t", "read"),
    rb("PUT", "/v1/namespaces/{ns}/templates/t", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/templates/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/recipients", "read"),
    r("GET", "/v1/namespaces/{ns}/recipients/r", "read"),
    rb("PUT", "/v1/namespaces/{ns}/recipients/r", "publish", empty),
    r("DELETE", "/v1/namespaces/{ns}/recipients/nosuch", "publish"),
    r("GET", "/v1/namespaces/{ns}/recipients/r/preferences", "read"),
    rb("PUT", "/v1/namespaces/{ns}/recipients/r/preferences", "publish", empty),
    r("GET", "/v1/namespaces/{ns}/preferences", "read"),
    rb("PUT", "/v1/namespaces/{ns}/preferences", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/notifications", "publish", empty),
    r("GET", "/v1/namespaces/{ns}/notifications", "read"),
    r("GET", "/v1/namespaces/{ns}/notifications/nosuch", "read"),
    r("GET", "/v1/namespaces/{ns}/inbox/r", "read"),
    // A recipient id that cannot be (a control character) answers 400
    // instead of opening a stream that would not end.
    r("GET", "/v1/namespaces/{ns}/inbox/%01/stream", "read"),
    rb("POST", "/v1/namespaces/{ns}/inbox/r/read", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/inbox/r/seen", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/inbox/r/archive", "publish", empty),
    r("POST", "/v1/unsubscribe/nosuch", "open"),
    r("GET", "/v1/unsubscribe/nosuch", "open"),
    r("GET", "/v1/namespaces/{ns}/handlers", "read"),
    r("GET", "/v1/namespaces/{ns}/handlers/h", "read"),
    rb("PUT", "/v1/namespaces/{ns}/handlers/h", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/handlers/nosuch", "operate"),
    rb("PUT", "/v1/namespaces/{ns}/handlers/h/secrets", "operate", empty),
    rb("POST", "/v1/namespaces/{ns}/handlers/h/invoke", "operate", empty),
    r("GET", "/v1/namespaces/{ns}/objects/t/o/state", "read"),
    r("GET", "/v1/namespaces/{ns}/objects/t/o/state/k", "read"),
    rb("PUT", "/v1/namespaces/{ns}/objects/t/o/state/k", "publish", empty),
    r("DELETE", "/v1/namespaces/{ns}/objects/t/o/state/k", "publish"),
    rb("POST", "/v1/namespaces/{ns}/objects/t/o/state:batch", "publish", empty),
    r("GET", "/v1/namespaces/{ns}/monitors", "read"),
    r("GET", "/v1/namespaces/{ns}/monitors/m", "read"),
    rb("PUT", "/v1/namespaces/{ns}/monitors/m", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/monitors/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/monitors/m/results", "read"),
    r("GET", "/v1/namespaces/{ns}/maintenance", "read"),
    r("GET", "/v1/namespaces/{ns}/maintenance/w", "read"),
    rb("PUT", "/v1/namespaces/{ns}/maintenance/w", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/maintenance/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/status-pages", "read"),
    r("GET", "/v1/namespaces/{ns}/status-pages/sp", "read"),
    rb("PUT", "/v1/namespaces/{ns}/status-pages/sp", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/status-pages/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/escalation-policies", "read"),
    r("GET", "/v1/namespaces/{ns}/escalation-policies/p", "read"),
    rb("PUT", "/v1/namespaces/{ns}/escalation-policies/p", "operate", empty),
    r("DELETE", "/v1/namespaces/{ns}/escalation-policies/nosuch", "operate"),
    r("GET", "/v1/namespaces/{ns}/incidents", "read"),
    r("GET", "/v1/namespaces/{ns}/incidents/{run}", "read"),
    rb("POST", "/v1/namespaces/{ns}/incidents/events", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/incidents/{run}/acknowledge", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/incidents/{run}/resolve", "publish", empty),
    rb("POST", "/v1/namespaces/{ns}/incidents/{run}/note", "publish", empty),
    r("POST", "/v1/ping/nosuch", "open"),
    r("GET", "/v1/ping/nosuch", "open"),
    r("POST", "/v1/ping/nosuch/start", "open"),
    r("GET", "/v1/ping/nosuch/fail", "open"),
];

/// The role table of docs/api.md, written out again: which needs each
/// role meets.
const ROLES: &[(&str, &[&str])] = &[
    ("reader", &["read", "jobs"]),
    ("publisher", &["read", "jobs", "publish"]),
    ("worker", &["jobs", "work"]),
    ("operator", &["read", "jobs", "publish", "work", "operate"]),
    (
        "admin",
        &[
            "read", "jobs", "publish", "work", "operate", "admin", "metrics",
        ],
    ),
];

const JOB: &str = "0190a5d0-0000-7000-8000-000000000000";
const RUN: &str = "0190a5d0-0000-7000-8000-000000000001";

fn path(route: &Route, ns: &str) -> String {
    route
        .path
        .replace("{ns}", ns)
        .replace("{job}", JOB)
        .replace("{run}", RUN)
}

async fn call(s: &Server, token: Option<&str>, route: &Route, ns: &str) -> (u16, Value) {
    s.call_as(
        token,
        route.method,
        &path(route, ns),
        route.body.map(|b| b()),
    )
    .await
}

/// Starts a server that requires tokens with its log collected, and the
/// admin token made on its empty data directory before it started.
async fn secured_logged(dir: &tempfile::TempDir) -> (Server, Logs, String) {
    let data = dir.path().to_str().unwrap();
    let admin = bootstrap_token(&["--data-dir", data]).await;
    let (server, logs) = Server::start_logged(dir, &["--auth", "on"]).await;
    (server, logs, admin)
}

fn millis(at: &Value) -> i64 {
    keel_core::Timestamp::parse_rfc3339(at.as_str().unwrap())
        .unwrap()
        .as_millis()
}

/// Every audit entry after `after` that `admin` can read with this
/// query, oldest first, page by page.
async fn audit(s: &Server, admin: &str, after: i64, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = after;
    loop {
        let (status, page) = s
            .call_as(
                Some(admin),
                "GET",
                &format!("/v1/audit?limit=50&after={after}{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return entries,
        }
    }
}

fn secret(answer: &Value) -> String {
    answer["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_lets_in_exactly_the_roles_and_namespaces_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let (s, logs, admin) = secured_logged(&dir).await;
    let expiring = s
        .mint(
            &admin,
            json!({"name": "soon", "role": "operator", "namespaces": ["acme"], "expires_in_ms": 1000}),
        )
        .await;
    let expires_at = millis(&expiring["expires_at"]);
    let revoked = s
        .mint(
            &admin,
            json!({"name": "gone", "role": "operator", "namespaces": ["acme"]}),
        )
        .await;
    let (status, _) = s
        .call_as(
            Some(&admin),
            "DELETE",
            &format!("/v1/tokens/{}", revoked["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut tokens = vec![("admin", admin.clone())];
    for (role, _) in &ROLES[..4] {
        let minted = s
            .mint(
                &admin,
                json!({"name": role, "role": role, "namespaces": ["acme"]}),
            )
            .await;
        tokens.push((role, secret(&minted)));
    }
    let mut secrets: Vec<String> = tokens.iter().map(|(_, t)| t.clone()).collect();
    secrets.extend([secret(&expiring), secret(&revoked)]);

    let setup_done = audit(&s, &admin, 0, "")
        .await
        .last()
        .and_then(|e| e["id"].as_i64())
        .unwrap();
    let mut checked = 0;
    for route in ROUTES {
        // Without a token: only the open routes answer, and never with 401/403.
        let (status, body) = call(&s, None, route, "acme").await;
        if route.need == "open" {
            assert!(
                ![401, 403].contains(&status),
                "{} {}: {status}",
                route.method,
                route.path
            );
        } else {
            assert_eq!(
                status, 401,
                "{} {} without a token: {body}",
                route.method, route.path
            );
            assert_eq!(body["error"]["code"], "unauthenticated");
        }
        // A revoked token is refused like no token.
        if route.need != "open" {
            let (status, body) = call(&s, Some(&secret(&revoked)), route, "acme").await;
            assert_eq!(
                status, 401,
                "{} {} revoked: {body}",
                route.method, route.path
            );
        }
        for (role, token) in &tokens {
            let meets = ROLES
                .iter()
                .find(|(r, _)| r == role)
                .is_some_and(|(_, needs)| needs.contains(&route.need));
            for ns in ["acme", "globex"] {
                let (status, body) = call(&s, Some(token), route, ns).await;
                checked += 1;
                let what = format!(
                    "{} {} as {role} in {ns}: {status} {body}",
                    route.method, route.path
                );
                assert!(status < 500, "{what}");
                let reaches = *role == "admin" || ns == "acme" || !route.path.contains("{ns}");
                let let_in =
                    route.need == "open" || (meets && (reaches || route.need == "metrics"));
                if let_in {
                    assert!(![401, 403].contains(&status), "{what}");
                } else {
                    assert_eq!(status, 403, "{what}");
                    assert_eq!(body["error"]["code"], "forbidden", "{what}");
                }
            }
        }
    }
    assert!(checked >= ROUTES.len() * 10);

    // Every change let in is in the audit log, by the right actor, and
    // nothing else is: not the reads, not the refusals.
    let entries = audit(&s, &admin, setup_done, "").await;
    let mut expected = Vec::new();
    for route in ROUTES.iter().filter(|r| r.method != "GET") {
        for (role, ns) in [("operator", "acme"), ("admin", "acme"), ("admin", "globex")] {
            let audited = match route.need {
                "operate" => true,
                "admin" => role == "admin",
                _ => false,
            };
            if audited {
                expected.push((role.to_owned(), route.method, path(route, ns)));
            }
        }
    }
    let mut seen: Vec<(String, &str, String)> = entries
        .iter()
        .map(|e| {
            let method = ["PUT", "POST", "DELETE"]
                .into_iter()
                .find(|m| e["summary"]["method"] == *m)
                .unwrap();
            let name = e["actor"]["name"].as_str().unwrap();
            let role = if name == "root" { "admin" } else { name };
            assert_eq!(e["actor"]["role"], role, "{e}");
            assert!(e["outcome"].as_u64().is_some_and(|o| o < 500), "{e}");
            (
                role.to_owned(),
                method,
                e["summary"]["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);

    // A refused change changed nothing: the reader's and the other
    // namespace's enqueues left no job behind.
    let reader = &tokens.iter().find(|(r, _)| *r == "reader").unwrap().1;
    let (status, _) = s
        .call_as(
            Some(reader),
            "POST",
            "/v1/namespaces/acme/queues/x/jobs",
            Some(job()),
        )
        .await;
    assert_eq!(status, 403);
    let (_, stats) = s
        .call_as(Some(&admin), "GET", "/v1/namespaces/acme/queues/x", None)
        .await;
    assert_eq!(stats["counts"]["ready"], 0, "{stats}");

    // The expiring token worked until its time, and is refused after it.
    let now = keel_core::Clock::now(&keel_core::SystemClock).as_millis();
    let wait = (expires_at - now).max(0);
    tokio::time::sleep(Duration::from_millis(wait as u64 + 20)).await;
    for route in ROUTES.iter().filter(|r| r.need != "open") {
        let (status, body) = call(&s, Some(&secret(&expiring)), route, "acme").await;
        assert_eq!(
            status, 401,
            "{} {} expired: {body}",
            route.method, route.path
        );
        assert_eq!(body["error"]["message"], "the token has expired");
    }

    // No token, secret or part of one in any log line.
    logs.wait_for("answered status=401").await;
    let lines = logs.lines();
    assert!(lines.len() > 100, "{} lines", lines.len());
    for line in &lines {
        for t in &secrets {
            let secret_part = &t[t.len() - 43..];
            assert!(!line.contains(secret_part), "a token in the log: {line}");
        }
        assert!(!line.contains("Bearer keel_"), "{line}");
    }
}

#[tokio::test]
async fn resource_patterns_narrow_a_token_inside_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let worker = secret(
        &s.mint(
            &admin,
            json!({"name": "mailer", "role": "worker", "namespaces": ["acme"], "resources": ["queue:emails*"]}),
        )
        .await,
    );
    for queue in ["emails", "emails-eu"] {
        let (status, _) = s
            .call_as(
                Some(&admin),
                "POST",
                &format!("/v1/namespaces/acme/queues/{queue}/jobs"),
                Some(job()),
            )
            .await;
        assert_eq!(status, 201);
    }
    let lease = |queue: &'static str| {
        let (s, worker) = (&s, worker.clone());
        async move {
            s.call_as(
                Some(&worker),
                "POST",
                &format!("/v1/namespaces/acme/queues/{queue}/lease"),
                Some(no_wait()),
            )
            .await
        }
    };
    let (status, leased) = lease("emails-eu").await;
    assert_eq!(status, 200, "{leased}");
    let held = &leased["jobs"][0];
    // Settling a held job needs no resource in the path: the lease proves it.
    let (status, body) = s
        .call_as(
            Some(&worker),
            "POST",
            &format!(
                "/v1/namespaces/acme/jobs/{}/complete",
                held["id"].as_str().unwrap()
            ),
            Some(json!({"lease_token": held["lease_token"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = lease("billing").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue billing")
    );
    // Routes that span the namespace are closed to a narrowed token.
    let (status, _) = s
        .call_as(Some(&worker), "GET", "/v1/namespaces/acme/jobs", None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call_as(
            Some(&worker),
            "GET",
            "/v1/namespaces/acme/queues/emails",
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let made = s
        .mint(
            &admin,
            json!({"name": "ci", "role": "publisher", "namespaces": ["acme", "globex"]}),
        )
        .await;
    let token = secret(&made);
    assert!(token.starts_with(&format!("keel_{}_", made["id"].as_str().unwrap())));
    assert_eq!(made["role"], "publisher");
    assert_eq!(made["namespaces"], json!(["acme", "globex"]));
    let lifetime = millis(&made["expires_at"]) - millis(&made["created_at"]);
    assert_eq!(lifetime, 90 * 24 * 3_600_000, "the default expiry");
    let forever = s
        .mint(
            &admin,
            json!({"name": "ops", "role": "admin", "expires_in_ms": null}),
        )
        .await;
    assert_eq!(forever["expires_at"], Value::Null);
    assert_eq!(forever["namespaces"], json!(["*"]));

    for (body, words) in [
        (
            json!({"name": "x", "role": "reader"}),
            "namespaces is required",
        ),
        (
            json!({"name": "x", "role": "root", "namespaces": ["*"]}),
            "root",
        ),
        (
            json!({"name": "x", "role": "admin", "namespaces": ["acme"]}),
            "admin",
        ),
        (
            json!({"name": "", "role": "reader", "namespaces": ["a"]}),
            "name",
        ),
        (
            json!({"name": "x", "role": "reader", "namespaces": ["a"], "expires_in_ms": 5}),
            "expires_in_ms",
        ),
        (
            json!({"name": "x", "role": "reader", "namespaces": ["a"], "extra": 1}),
            "extra",
        ),
    ] {
        let (status, answer) = s
            .call_as(Some(&admin), "POST", "/v1/tokens", Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{words}: {answer}"
        );
    }

    // Used once: the listing shows when, and never a secret.
    let (status, _) = s
        .call_as(Some(&token), "GET", "/v1/namespaces/acme/topics", None)
        .await;
    assert_eq!(status, 200);
    // The use is recorded in the background, after the answer: paced
    // reads until it lands (at most 5 s).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let list = loop {
        let (status, list) = s.call_as(Some(&admin), "GET", "/v1/tokens", None).await;
        assert_eq!(status, 200);
        let listed = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == made["id"])
            .unwrap()
            .clone();
        if listed["last_used_at"].is_string() {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(!list.to_string().contains(&token[token.len() - 43..]));
    assert!(
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );

    // The CLI, with the admin token from --token.
    let (ok, out, err) = s.cli(&["token", "list", "--token", &admin]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ci  publisher  namespaces acme,globex"),
        "{out}"
    );
    let (ok, out, err) = s
        .cli(&[
            "token",
            "create",
            "--name",
            "w",
            "--role",
            "worker",
            "--namespaces",
            "acme",
            "--token",
            &admin,
        ])
        .await;
    assert!(ok, "{err}");
    let cli_token = out.trim().to_owned();
    assert!(err.contains("shown only this once"), "{err}");
    // It says which server it asked, and when the token expires (90 days).
    assert!(
        err.contains(&format!("on the server at {}", s.url)),
        "{err}"
    );
    assert!(
        err.contains("expires 20") && err.contains("--never-expires"),
        "{err}"
    );
    let (status, _) = s
        .call_as(
            Some(&cli_token),
            "POST",
            "/v1/namespaces/acme/queues/q/lease",
            Some(no_wait()),
        )
        .await;
    assert_eq!(status, 200);
    let id = made["id"].as_str().unwrap();
    let (ok, out, err) = s.cli(&["token", "revoke", id, "--token", &admin]).await;
    assert!(ok && out.contains("revoked"), "{out}{err}");
    let (status, body) = s
        .call_as(Some(&token), "GET", "/v1/namespaces/acme/topics", None)
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("the token was revoked"))
    );
    // Straight on the store only while no server holds it: a second
    // process on the data directory is refused, not let in beside it.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("in use by another keel process"),
        "{err}"
    );
    let (ok, _, err) = s.cli(&["token", "list"]).await;
    assert!(!ok && err.contains("unauthenticated"), "{err}");
    let (status, _) = s
        .call_as(Some(&admin), "DELETE", "/v1/tokens/nosuch", None)
        .await;
    assert_eq!(status, 404);
    // A token that is not one, or is someone else's id with a made-up
    // secret, is refused with the same words.
    let forged = format!("{}{}", &token[..token.len() - 43], "A".repeat(43));
    for bad in ["keel_nope", forged.as_str(), "Basic abc"] {
        let (status, body) = s.call_as(Some(bad), "GET", "/v1/tokens", None).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            !body.to_string().contains(bad),
            "the answer repeats the token"
        );
    }
}

#[tokio::test]
async fn metrics_are_open_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _admin) = Server::start_secured(&dir, &["--metrics-public"]).await;
    let (status, _) = s.get("/metrics").await;
    assert_eq!(status, 200);
    let (status, _) = s.get("/v1/namespaces/acme/topics").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_openapi_document_is_open_and_names_every_route_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _admin) = Server::start_secured(&dir, &[]).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let methods = ["get", "put", "post", "delete"];
    let operations: Vec<(String, &str)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (path.clone(), *m))
        })
        .collect();
    // The matrix's routes, but the document itself.
    assert_eq!(operations.len(), ROUTES.len() - 1);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    let enqueue = &doc["paths"]["/v1/namespaces/{ns}/queues/{queue}/jobs"]["post"];
    assert!(enqueue.get("security").is_none(), "needs the token");
    assert!(
        enqueue["responses"]["429"]["description"]
            .as_str()
            .unwrap()
            .contains("`rate_limited`")
    );
}

#[tokio::test]
async fn a_revocation_reaches_every_node_within_a_second() {
    let schema = TestSchema::create("keel_auth").await.unwrap();
    let url = schema.url();
    // Bootstrap on an empty database: the migrations run, the token is made.
    let admin = bootstrap_token(&["--database-url", &url]).await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_with(&["--database-url", &url, "--auth", "on"]).await);
    }
    let made = nodes[0]
        .mint(
            &admin,
            json!({"name": "w", "role": "reader", "namespaces": ["acme"]}),
        )
        .await;
    let token = secret(&made);
    // Every node has read (and cached) the token.
    for node in &nodes {
        let (status, _) = node
            .call_as(Some(&token), "GET", "/v1/namespaces/acme/topics", None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = nodes[1]
        .call_as(
            Some(&admin),
            "DELETE",
            &format!("/v1/tokens/{}", made["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let revoked = Instant::now();
    for node in &nodes {
        loop {
            let (status, _) = node
                .call_as(Some(&token), "GET", "/v1/namespaces/acme/topics", None)
                .await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "still let in after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(revoked.elapsed() < Duration::from_secs(1));
    drop(nodes);
    drop(schema);
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what_and_operators_see_their_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let ops = secret(
        &s.mint(
            &admin,
            json!({"name": "ada", "role": "operator", "namespaces": ["acme"]}),
        )
        .await,
    );
    let other = secret(
        &s.mint(
            &admin,
            json!({"name": "bob", "role": "operator", "namespaces": ["globex"]}),
        )
        .await,
    );
    // A policy change with the caller's own request id.
    let (status, _) = s
        .send_as(
            &ops,
            "PUT",
            "/namespaces/acme/queues/emails",
            &[("x-request-id", "change-42")],
            br#"{"max_attempts": 1}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    // A dead job redriven with an edited payload: the entry has its hash.
    let (status, _) = s
        .call_as(
            Some(&ops),
            "POST",
            "/v1/namespaces/acme/queues/emails/jobs",
            Some(job()),
        )
        .await;
    assert_eq!(status, 201);
    let (_, leased) = s
        .call_as(
            Some(&ops),
            "POST",
            "/v1/namespaces/acme/queues/emails/lease",
            Some(no_wait()),
        )
        .await;
    let held = &leased["jobs"][0];
    let (status, _) = s
        .call_as(
            Some(&ops),
            "POST",
            &format!(
                "/v1/namespaces/acme/jobs/{}/fail",
                held["id"].as_str().unwrap()
            ),
            Some(json!({"lease_token": held["lease_token"], "error": "boom"})),
        )
        .await;
    assert_eq!(status, 200);
    let redrive = json!({"ids": [held["id"]], "payload": {"n": 2}})
        .to_string()
        .into_bytes();
    let (status, body) = s
        .send_as(
            &ops,
            "POST",
            "/namespaces/acme/queues/emails/redrive",
            &[],
            redrive.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A run cancelled by an operator says who.
    let (status, body) = s
        .call_as(
            Some(&ops),
            "PUT",
            "/v1/namespaces/acme/workflows/wait",
            Some(json!({"name": "wait", "steps": {"hold": {"wait_for": {"signal": "go"}}}})),
        )
        .await;
    assert!(status < 300, "{body}");
    let (status, run) = s
        .call_as(
            Some(&ops),
            "POST",
            "/v1/namespaces/acme/workflows/wait/runs",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let (status, cancelled) = s
        .call_as(
            Some(&ops),
            "POST",
            &format!("/v1/namespaces/acme/runs/{run_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let by = cancelled["error"].as_str().unwrap();
    assert!(by.starts_with("cancelled by ada (token "), "{by}");
    // Bob pauses his own queue; his attempt on Ada's is refused and not recorded.
    let pause = |ns: &str| format!("/v1/namespaces/{ns}/queues/emails/pause");
    assert_eq!(
        s.call_as(Some(&other), "POST", &pause("globex"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        s.call_as(Some(&other), "POST", &pause("acme"), None)
            .await
            .0,
        403
    );

    let acme = audit(&s, &admin, 0, "&namespace=acme").await;
    let actions: Vec<&str> = acme.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["queue.put", "queue.redrive", "workflow.put", "run.cancel"]
    );
    assert!(
        acme.iter()
            .all(|e| e["actor"]["name"] == "ada" && e["actor"]["role"] == "operator")
    );
    assert_eq!(acme[0]["request_id"], "change-42");
    assert_eq!(
        (acme[0]["target"].as_str(), acme[0]["outcome"].as_u64()),
        (Some("emails"), Some(200))
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, &redrive);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(acme[1]["summary"]["body_sha256"], hex.as_str());
    assert_eq!(acme[3]["target"], run_id);
    let tokens = audit(&s, &admin, 0, "&action=token.create").await;
    let names: Vec<&str> = tokens
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "bob"]);
    assert!(
        tokens
            .iter()
            .all(|e| e["actor"]["name"] == "root" && e["namespace"].is_null())
    );
    assert_eq!(audit(&s, &admin, 0, "&actor=bob").await.len(), 1);

    // Operators read their namespaces' entries, and only with namespace=.
    let read = |token: &str, query: &str| {
        let (s, token, query) = (&s, token.to_owned(), query.to_owned());
        async move {
            s.call_as(Some(&token), "GET", &format!("/v1/audit{query}"), None)
                .await
        }
    };
    let (status, page) = read(&ops, "?namespace=acme").await;
    assert_eq!(
        (status, page["entries"].as_array().unwrap().len()),
        (200, 4)
    );
    assert_eq!(read(&ops, "").await.0, 403);
    assert_eq!(read(&ops, "?namespace=globex").await.0, 403);
    assert_eq!(read(&admin, "?limit=0").await.0, 400);
}
