//! Monitors against the real server: a local target turned down and up on
//! cue, probes fired by triggering the monitor's hidden schedule (its slots
//! are the schedules engine's), incidents confirmed, escalated, acknowledged
//! and resolved, with the pages received by a real SMTP server and a Slack
//! stand-in; heartbeats on time and late; maintenance and a dependency
//! muting pages; PagerDuty-shaped events; and a kill -9 during an
//! escalation's wait.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::receiver::Receiver;
use common::smtp::SmtpSink;
use common::{Server, assert_error, eventually};
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

async fn put(server: &Server, path: &str, body: Value) -> Value {
    let (status, answer) = server.call("PUT", &format!("{NS}{path}"), Some(body)).await;
    assert!(status == 200 || status == 201, "PUT {path}: {answer}");
    answer
}

/// A target that answers 200 while up and 503 while down.
struct Target {
    url: String,
    up: Arc<AtomicBool>,
}

impl Target {
    async fn start() -> Target {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(move || {
                let up = flag.load(Ordering::SeqCst);
                async move {
                    if up {
                        (axum::http::StatusCode::OK, "{\"status\":\"ok\"}")
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "{\"status\":\"down\"}",
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Target { url, up }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// Fires one probe of `monitor` now and waits for its result; the result.
async fn probe(server: &Server, monitor: &str) -> Value {
    let results = format!("{NS}/monitors/{monitor}/results?limit=1000");
    let before = server.get(&results).await.1["results"]
        .as_array()
        .unwrap()
        .len();
    let (status, fired) = server
        .post(
            &format!("{NS}/schedules/keel.monitor.{monitor}/trigger"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{fired}");
    eventually("the probe's result", || async {
        let list = server.get(&results).await.1["results"].clone();
        let list = list.as_array().unwrap();
        (list.len() > before).then(|| list[before].clone())
    })
    .await
}

async fn incidents(server: &Server, status: &str) -> Vec<Value> {
    let (code, answer) = server.get(&format!("{NS}/incidents?status={status}")).await;
    assert_eq!(code, 200, "{answer}");
    answer["incidents"].as_array().unwrap().clone()
}

/// Channels `mail` (plain SMTP to `sink`, recipient `bob`) and `ops` (Slack
/// through `slack`), and a policy `oncall`: bob by e-mail, then #ops after
/// `wait_ms` without an acknowledgement.
async fn paging(server: &Server, sink: &SmtpSink, slack: &Receiver, wait_ms: u64) {
    let url = format!("smtp://127.0.0.1:{}?tls=none", sink.port);
    put(
        server,
        "/channels/mail",
        json!({"email": {"smtp_url": url, "from": "keel@example.com"}}),
    )
    .await;
    put(
        server,
        "/recipients/bob",
        json!({"email": "bob@example.com"}),
    )
    .await;
    put(
        server,
        "/channels/ops",
        json!({"slack": {"webhook_url": slack.url}}),
    )
    .await;
    put(
        server,
        "/escalation-policies/oncall",
        json!({"steps": [
            {"notify": [{"channel": "mail", "to": "bob"}], "wait_ms": wait_ms},
            {"notify": [{"channel": "ops"}], "wait_ms": wait_ms}],
            "resolve_notify": true}),
    )
    .await;
}

#[tokio::test]
async fn a_confirmed_outage_pages_escalates_and_resolves_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let sink = SmtpSink::start(dir.path(), true).await;
    let mut slack = Receiver::start().await;
    let target = Target::start().await;
    paging(&server, &sink, &slack, 1000).await;
    let created = put(
        &server,
        "/monitors/api",
        json!({"http": {"url": target.url, "expect": {"json": {"path": "$.status", "equals": "ok"}}},
               "escalation": "oncall", "paused": true, "labels": {"team": "core"}}),
    )
    .await;
    assert_eq!(
        (
            created["kind"].as_str(),
            created["state"]["status"].as_str()
        ),
        (Some("http"), Some("pending"))
    );

    assert_eq!(probe(&server, "api").await["ok"], true);
    target.set(false);
    let failed = probe(&server, "api").await;
    assert_eq!(failed["ok"], false);
    assert!(
        failed["error"].as_str().unwrap().contains("status 503"),
        "{failed}"
    );
    assert!(
        incidents(&server, "open").await.is_empty(),
        "one failure confirms nothing"
    );
    probe(&server, "api").await;
    let open = incidents(&server, "open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["monitor"], "api");
    assert_eq!(open[0]["dedup_key"], "monitor/api");
    let id = open[0]["id"].as_str().unwrap().to_owned();
    // More failures (and more probes) open nothing more.
    probe(&server, "api").await;
    assert_eq!(incidents(&server, "open").await.len(), 1);

    // Step 1 e-mails bob at once; nobody acknowledges, so step 2 posts to #ops.
    let mail = sink.message(1).await;
    assert!(
        mail.contains("To: bob@example.com") && mail.contains("api is down"),
        "{mail}"
    );
    let page = slack.next().await;
    assert!(
        page.json()["text"]
            .as_str()
            .unwrap()
            .contains("api is down"),
        "{}",
        page.json()
    );
    let incident = server.get(&format!("{NS}/incidents/{id}")).await.1;
    let kinds: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "paged", "paged"], "{incident}");

    let (status, acked) = server
        .post(&format!("{NS}/incidents/{id}/acknowledge"), json!({}))
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "anonymous");
    let again = server
        .post(&format!("{NS}/incidents/{id}/acknowledge"), json!({}))
        .await;
    assert_error(&again, 409, "conflict");
    let (status, _) = server
        .post(
            &format!("{NS}/incidents/{id}/note"),
            json!({"text": "rolling back"}),
        )
        .await;
    assert_eq!(status, 200);

    target.set(true);
    probe(&server, "api").await;
    assert_eq!(
        incidents(&server, "resolved").await.len(),
        0,
        "recover_after is 2"
    );
    probe(&server, "api").await;
    let resolved = incidents(&server, "resolved").await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["id"], id.as_str());
    // Everyone paged hears it resolved, once.
    let notice = sink.message(2).await;
    assert!(notice.contains("[resolved]"), "{notice}");
    let notice = slack.next().await;
    assert!(
        notice.json()["text"].as_str().unwrap().contains("resolved"),
        "{}",
        notice.json()
    );

    let (_, monitor) = server.get(&format!("{NS}/monitors/api")).await;
    assert_eq!(monitor["state"]["status"], "up");
    assert!(monitor.get("incident").is_none(), "{monitor}");
    let day = monitor["uptime"]["24h"].as_f64().unwrap();
    assert!(day > 0.0 && day < 1.0, "{monitor}");
    assert_eq!(sink.count(), 2, "one page and one notice by e-mail");
    // The incident's opening and its resolution by recovery are counted once each.
    let counted = |kind: &'static str| server.metric("keel_incidents_total", kind);
    assert_eq!(counted("kind=\"opened\"").await, 1.0);
    assert_eq!(counted("kind=\"resolved\"").await, 1.0);
    assert_eq!(counted("kind=\"acknowledged\"").await, 1.0);
}

#[tokio::test]
async fn an_acknowledgement_stops_the_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let sink = SmtpSink::start(dir.path(), true).await;
    let slack = Receiver::start().await;
    paging(&server, &sink, &slack, 1000).await;
    let trigger = json!({"dedup_key": "db-primary", "action": "trigger", "summary": "db primary unreachable",
                         "severity": "error", "source": "pgbouncer", "escalation": "oncall"});
    let (status, opened) = server
        .post(&format!("{NS}/incidents/events"), trigger.clone())
        .await;
    assert_eq!(status, 202, "{opened}");
    let id = opened["incident"]["id"].as_str().unwrap().to_owned();
    // The same key again joins the incident.
    let (_, again) = server
        .post(&format!("{NS}/incidents/events"), trigger)
        .await;
    assert_eq!(again["incident"]["id"], id.as_str());
    sink.message(1).await;
    let ack = json!({"dedup_key": "db-primary", "action": "acknowledge"});
    let (status, acked) = server.post(&format!("{NS}/incidents/events"), ack).await;
    assert_eq!(status, 202, "{acked}");
    assert_eq!(acked["incident"]["status"], "acknowledged");
    // The second step's job comes due after the wait and pages nobody.
    eventually("the second step ran", || async {
        let jobs = server
            .get(&format!("{NS}/jobs?queue=keel.monitor&state=succeeded"))
            .await
            .1;
        (jobs["jobs"].as_array().unwrap().len() >= 2).then_some(jobs)
    })
    .await;
    let incident = server.get(&format!("{NS}/incidents/{id}")).await.1;
    let paged = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "paged")
        .count();
    assert_eq!(paged, 1, "{incident}");
    assert_eq!(sink.count(), 1);
    let resolve = json!({"dedup_key": "db-primary", "action": "resolve"});
    let (status, resolved) = server
        .post(&format!("{NS}/incidents/events"), resolve.clone())
        .await;
    assert_eq!(
        (status, resolved["incident"]["status"].as_str()),
        (202, Some("resolved"))
    );
    let gone = server
        .post(&format!("{NS}/incidents/events"), resolve)
        .await;
    assert_error(&gone, 404, "not_found");
    let bad = server
        .post(
            &format!("{NS}/incidents/events"),
            json!({"dedup_key": "x", "action": "trigger"}),
        )
        .await;
    assert_error(&bad, 400, "invalid_request");
}

#[tokio::test]
async fn heartbeats_on_time_pass_and_a_missed_one_opens_an_incident() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let created = put(
        &server,
        "/monitors/nightly",
        json!({"heartbeat": {"period_ms": 3_600_000}, "confirm_after": 1, "paused": true}),
    )
    .await;
    let url = created["ping_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/v1/ping/") && url.len() > 30, "{created}");
    let ping = |path: String, body: &'static str| {
        let server = &server;
        async move {
            server
                .raw(
                    "POST",
                    &path.replacen("/v1", "", 1),
                    body.as_bytes().to_vec(),
                )
                .await
        }
    };
    let (status, _) = ping(url.clone(), "backup done: 42 GB").await;
    assert_eq!(status, 200);
    let checked = probe(&server, "nightly").await;
    let results = server
        .get(&format!("{NS}/monitors/nightly/results"))
        .await
        .1;
    assert_eq!(
        results["results"][0]["body"], "backup done: 42 GB",
        "{results}"
    );
    assert_eq!(checked["kind"], "check");
    assert!(checked["ok"].is_null(), "a ping came: {checked}");
    // No ping since that check: the next one fails, and opens an incident.
    let missed = probe(&server, "nightly").await;
    assert_eq!(missed["ok"], false);
    assert!(
        missed["error"].as_str().unwrap().contains("no ping since"),
        "{missed}"
    );
    assert_eq!(incidents(&server, "open").await.len(), 1);
    // A ping resolves it after recover_after (2) of them; a GET pings too.
    let (status, _) = server.get(&url.replacen("/v1", "", 1)).await;
    assert_eq!(status, 200);
    ping(url.clone(), "").await;
    assert_eq!(incidents(&server, "open").await.len(), 0);
    let (status, _) = ping(format!("{url}/1"), "exit 1").await;
    assert_eq!(status, 200);
    let last = server
        .get(&format!("{NS}/monitors/nightly/results?limit=1"))
        .await
        .1;
    assert_eq!(last["results"][0]["ok"], false);
    let unknown = server.raw("POST", "/ping/not-a-token", Vec::new()).await;
    assert_error(&unknown, 404, "not_found");
    let bad = ping(format!("{url}/nope"), "").await;
    assert_error(&bad, 400, "invalid_request");
}

#[tokio::test]
async fn maintenance_and_a_dependency_mute_pages_but_not_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let sink = SmtpSink::start(dir.path(), true).await;
    let slack = Receiver::start().await;
    let (core, edge) = (Target::start().await, Target::start().await);
    paging(&server, &sink, &slack, 60_000).await;
    let monitor = |url: &str, extra: Value| {
        let mut spec = json!({"http": {"url": url}, "confirm_after": 1, "escalation": "oncall", "paused": true});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    put(
        &server,
        "/monitors/core",
        monitor(&core.url, json!({"labels": {"team": "db"}})),
    )
    .await;
    put(
        &server,
        "/monitors/edge",
        monitor(&edge.url, json!({"depends_on": "core"})),
    )
    .await;
    put(&server, "/monitors/lone", monitor(&edge.url, json!({}))).await;
    let window = put(
        &server,
        "/maintenance/db-upgrade",
        json!({"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z", "labels": {"team": "db"}}),
    )
    .await;
    assert_eq!(window["active"], true);
    core.set(false);
    edge.set(false);
    probe(&server, "core").await;
    probe(&server, "edge").await;
    let muted = |name: &'static str| {
        let server = &server;
        eventually("the first step decided", move || async move {
            let list = incidents(server, "open").await;
            let incident = list.into_iter().find(|i| i["monitor"] == name)?;
            let timeline = incident["timeline"].as_array().unwrap().clone();
            (timeline.len() > 1).then_some(Value::Array(timeline))
        })
    };
    let core_timeline = muted("core").await;
    assert_eq!(core_timeline[1]["kind"], "muted");
    assert!(
        core_timeline[1]["text"]
            .as_str()
            .unwrap()
            .contains("db-upgrade")
    );
    let edge_timeline = muted("edge").await;
    assert_eq!(edge_timeline[1]["kind"], "muted");
    assert!(edge_timeline[1]["text"].as_str().unwrap().contains("core"));
    // A monitor neither covers pages as usual.
    probe(&server, "lone").await;
    let mail = sink.message(1).await;
    assert!(mail.contains("lone is down"), "{mail}");
    assert_eq!(sink.count(), 1, "the muted incidents paged nobody");
}

#[tokio::test]
async fn monitors_refuse_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let put_monitor = |body: Value| {
        let server = &server;
        async move {
            server
                .call("PUT", &format!("{NS}/monitors/m"), Some(body))
                .await
        }
    };
    assert_error(
        &put_monitor(json!({"http": {"url": "https://a"}, "interval_ms": 100})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &put_monitor(json!({"tcp": {"host": "a", "port": 1}, "heartbeat": {"period_ms": 60000}}))
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &put_monitor(json!({"http": {"url": "https://a"}, "depends_on": "m"})).await,
        400,
        "invalid_request",
    );
    let policy = json!({"steps": [{"notify": [{"channel": "nowhere"}], "wait_ms": 1000}]});
    let refused = server
        .call("PUT", &format!("{NS}/escalation-policies/p"), Some(policy))
        .await;
    assert_error(&refused, 400, "invalid_request");
    assert_error(
        &server.get(&format!("{NS}/monitors/none")).await,
        404,
        "not_found",
    );
    assert_error(
        &server.get(&format!("{NS}/incidents/not-an-id")).await,
        404,
        "not_found",
    );
    assert_error(
        &server.get(&format!("{NS}/incidents?status=sleeping")).await,
        400,
        "invalid_request",
    );
    // Without --allow-private-http a loopback target is refused by the guard.
    put(
        &server,
        "/monitors/local",
        json!({"http": {"url": "http://127.0.0.1:9/"}, "paused": true}),
    )
    .await;
    let refused = probe(&server, "local").await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("refused by keel"),
        "{refused}"
    );
    let (status, _) = server
        .call("DELETE", &format!("{NS}/monitors/local"), None)
        .await;
    assert_eq!(status, 204);
    assert_error(
        &server
            .get(&format!("{NS}/schedules/keel.monitor.local"))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn the_next_step_still_comes_once_after_a_kill_during_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &["--allow-private-http"]).await;
    let sink = SmtpSink::start(dir.path(), true).await;
    let mut slack = Receiver::start().await;
    paging(&server, &sink, &slack, 3000).await;
    let trigger = json!({"dedup_key": "disk", "action": "trigger", "summary": "disk full", "escalation": "oncall"});
    let (status, opened) = server
        .post(&format!("{NS}/incidents/events"), trigger)
        .await;
    assert_eq!(status, 202, "{opened}");
    let id = opened["incident"]["id"].as_str().unwrap().to_owned();
    sink.message(1).await;
    server.kill9().await;
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let page = slack.next().await;
    assert!(page.json()["text"].as_str().unwrap().contains("disk full"));
    let incident = eventually("the second step recorded", || async {
        let incident = server.get(&format!("{NS}/incidents/{id}")).await.1;
        (incident["step"] == 2).then_some(incident)
    })
    .await;
    let paged: Vec<&Value> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "paged")
        .collect();
    assert_eq!(paged.len(), 2, "{incident}");
    assert_eq!(
        sink.count(),
        1,
        "step 1 was not sent again after the restart"
    );
}

#[tokio::test]
async fn a_status_page_shows_its_monitors_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let target = Target::start().await;
    for name in ["api", "secret"] {
        put(
            &server,
            &format!("/monitors/{name}"),
            json!({"http": {"url": target.url}, "confirm_after": 1, "paused": true}),
        )
        .await;
    }
    probe(&server, "api").await;
    target.set(false);
    probe(&server, "api").await;
    let created = put(
        &server,
        "/status-pages/acme",
        json!({"title": "Acme status", "monitors": ["api"]}),
    )
    .await;
    assert_eq!(created["url"], "/status/acme");
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/status/acme", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "public, max-age=30");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Acme status") && html.contains("data-monitor=\"api\""),
        "{html}"
    );
    assert!(html.contains("Some systems are down"), "{html}");
    assert!(
        !html.contains("secret") && !html.contains(&target.url),
        "nothing the page does not name: {html}"
    );
    assert_eq!(html.matches("class=\"bar ").count(), 90);
    let json: Value = http
        .get(format!("{}/status/acme.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["components"][0]["status"], "down");
    assert_eq!(json["incidents"][0]["status"], "open");
    let badge = http
        .get(format!("{}/status/acme/badge/api.svg", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(badge.headers()["content-type"], "image/svg+xml");
    assert!(badge.text().await.unwrap().contains(">down</text>"));
    let uptime = http
        .get(format!(
            "{}/status/acme/badge/api.svg?show=uptime",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert!(uptime.text().await.unwrap().contains("50.00%"));
    let other = http
        .get(format!("{}/status/acme/badge/secret.svg", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // A slug is one namespace's; a draft is not served.
    let (status, _) = server
        .call(
            "PUT",
            "/namespaces/other/status-pages/acme",
            Some(json!({"title": "x", "monitors": ["api"]})),
        )
        .await;
    assert_eq!(status, 409);
    put(
        &server,
        "/status-pages/acme",
        json!({"title": "Acme status", "monitors": ["api"], "public": false}),
    )
    .await;
    let draft = http
        .get(format!("{}/status/acme", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(draft.status(), 404);
    let (_, list) = server.get(&format!("{NS}/status-pages")).await;
    assert_eq!(list["status_pages"][0]["slug"], "acme");
}

/// An HTTPS target on `localhost` serving the SMTP sink's certificate (made
/// by openssl for a day, signed by its test CA); its port.
async fn https_target(dir: &std::path::Path) -> (u16, tokio::process::Child) {
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let port = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    (port, child)
}

#[tokio::test]
async fn a_certificate_near_its_expiry_warns_once_per_threshold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The sink makes the certificates (valid for a day) and the CA keel trusts.
    let sink = SmtpSink::start(dir.path(), false).await;
    let (port, _target) = https_target(dir.path()).await;
    let ca = sink.cert.to_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let env = [("SSL_CERT_FILE", ca.as_str())];
    let mut server = Server::start_with_env(&data, &["--allow-private-http"], &env).await;
    put(&server, "/channels/pager", json!({"in_app": {}})).await;
    put(&server, "/recipients/ops", json!({})).await;
    put(
        &server,
        "/escalation-policies/oncall",
        json!({"steps": [{"notify": [{"channel": "pager", "to": "ops"}], "wait_ms": 60000}]}),
    )
    .await;
    let url = format!("https://localhost:{port}/");
    put(
        &server,
        "/monitors/site",
        json!({"http": {"url": url, "tls_expiry_days": 14}, "escalation": "oncall", "paused": true}),
    )
    .await;
    let first = probe(&server, "site").await;
    assert_eq!(
        (first["ok"].as_bool(), first["tls_days_left"].as_i64()),
        (Some(true), Some(0)),
        "{first}"
    );
    probe(&server, "site").await;
    server.kill9().await;
    let server = Server::start_with_env(&data, &["--allow-private-http"], &env).await;
    probe(&server, "site").await;
    let (_, monitor) = server.get(&format!("{NS}/monitors/site")).await;
    assert_eq!(monitor["state"]["tls_warned"], 1, "{monitor}");
    // Three probes and one warning (the 14-, 7- and 1-day thresholds are
    // crossed at once: the smallest is warned of), all settled.
    let jobs = eventually("the monitor's jobs settled", || async {
        let (_, all) = server
            .get(&format!("{NS}/jobs?queue=keel.monitor&limit=100"))
            .await;
        let all = all["jobs"].as_array().unwrap().clone();
        all.iter()
            .all(|j| j["state"] == "succeeded")
            .then_some(Value::Array(all))
    })
    .await;
    assert_eq!(jobs.as_array().unwrap().len(), 4, "{jobs}");
    let sent = eventually("the warning", || async {
        let (_, list) = server
            .get(&format!("{NS}/notifications?recipient=ops"))
            .await;
        let list = list["notifications"].as_array().unwrap().clone();
        (!list.is_empty()).then_some(Value::Array(list))
    })
    .await;
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let subject = sent[0]["request"]["content"]["subject"]
        .as_str()
        .unwrap_or_default();
    assert!(
        subject.contains("certificate expires in 0 days"),
        "{}",
        sent[0]
    );
}
