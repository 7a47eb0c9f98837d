//! The dashboard in a real browser (headless Chromium through
//! chromedriver): log in with a token, see the namespace's queues with
//! their objectives, pause a queue from the page; a reader sees no button
//! and the server refuses the form anyway; a wrong token, a missing
//! session and another site's form are refused; no page logs a console
//! error. Screenshots land in `target/ui-screenshots/`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::Server;
use common::browser::Browser;
use serde_json::json;

const FORM: &str = "application/x-www-form-urlencoded";

/// An operator's and a reader's token over `default`.
async fn operator_and_reader(s: &Server, admin: &str) -> (String, String) {
    let mut made = Vec::new();
    for role in ["operator", "reader"] {
        let body = json!({"name": role, "role": role, "namespaces": ["default"]});
        made.push(
            s.mint(admin, body).await["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (made.remove(0), made.remove(0))
}

#[tokio::test]
async fn a_token_logs_in_sees_the_overview_and_pauses_a_queue_a_reader_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let (operator, reader) = operator_and_reader(&s, &admin).await;
    let (status, _) = s
        .call_as(
            Some(&admin),
            "PUT",
            "/v1/namespaces/default/queues/emails",
            Some(json!({"slo": {"wait_p99_ms": 50, "success_ratio": 0.999}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call_as(
            Some(&admin),
            "POST",
            "/v1/namespaces/default/queues/emails/jobs",
            Some(json!({"payload": {"to": "ada@example.com"}})),
        )
        .await;
    assert_eq!(status, 201);

    let browser = Browser::start().await;
    // No session: the login page; a wrong token says so.
    browser.goto(&format!("{}/ui", s.url)).await;
    assert!(browser.url().await.ends_with("/ui/login"));
    browser.screenshot("login").await;
    browser.type_into("#token", "keel_nope_nope").await;
    browser.click("#login").await;
    assert!(browser.text("#login-error").await.contains("unknown"));
    // The refusal's 401 is the one console error the browser logs.
    let errors = browser.console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("401"), "{errors:?}");

    // The operator: the overview, the queue with its objectives, a button.
    browser.type_into("#token", &operator).await;
    browser.click("#login").await;
    browser.find("table#queues").await;
    assert!(
        browser.url().await.ends_with("/ui"),
        "{}",
        browser.url().await
    );
    let row = browser.text("tr[data-queue=emails]").await;
    assert!(
        row.contains("wait_p99_ms") && row.contains("success_ratio"),
        "{row}"
    );
    assert!(browser.text("header .who").await.contains("operator"));
    assert!(
        row.contains("no worker has leased from this queue in 10 minutes"),
        "{row}"
    );
    assert!(browser.find_all("#no-auth").await.is_empty());
    browser.screenshot("overview").await;
    browser.click("tr[data-queue=emails] button.pause").await;
    // The page after the click: the queue paused, the button to resume it.
    assert_eq!(browser.text("tr[data-queue=emails] .tag").await, "paused");
    browser.find("tr[data-queue=emails] button.resume").await;
    let (_, queue) = s
        .call_as(
            Some(&admin),
            "GET",
            "/v1/namespaces/default/queues/emails",
            None,
        )
        .await;
    assert_eq!(queue["paused"], true, "{queue}");
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // The reader: the same page without the button.
    browser.click("header .who button").await;
    browser.find("#token").await;
    assert!(browser.url().await.ends_with("/ui/login"));
    browser.type_into("#token", &reader).await;
    browser.click("#login").await;
    assert!(
        browser
            .text("tr[data-queue=emails]")
            .await
            .contains("paused")
    );
    assert!(
        browser
            .find_all("tr[data-queue=emails] button")
            .await
            .is_empty()
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;

    // ...and the server refuses the reader's form anyway, with the page's
    // own CSRF token.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("keel_token={reader}");
    let page = http
        .get(format!("{}/ui", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let resume = format!("{}/ui/queues/emails/resume?ns=default", s.url);
    let refused = http
        .post(&resume)
        .header("cookie", &cookie)
        .header("content-type", FORM)
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // An operator's form without the page's CSRF token, or from another
    // site, is refused too.
    let cookie = format!("keel_token={operator}");
    for (origin, csrf) in [
        (None, "forged"),
        (Some("https://evil.example"), csrf.as_str()),
    ] {
        let mut post = http
            .post(&resume)
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body(format!("csrf={csrf}"));
        if let Some(origin) = origin {
            post = post.header("origin", origin);
        }
        assert_eq!(post.send().await.unwrap().status(), 403);
    }
    let (_, queue) = s
        .call_as(
            Some(&admin),
            "GET",
            "/v1/namespaces/default/queues/emails",
            None,
        )
        .await;
    assert_eq!(queue["paused"], true);
}

#[tokio::test]
async fn without_tokens_a_banner_says_so_and_empty_views_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui?ns=fresh", s.url)).await;
    assert!(browser.text("#no-auth").await.contains("without tokens"));
    let empty = browser.text("main").await;
    assert!(
        empty.contains("No queues in fresh yet") && empty.contains("No topics in fresh yet"),
        "{empty}"
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test]
async fn a_dead_job_is_found_by_a_payload_field_edited_redriven_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let (operator, reader) = operator_and_reader(&s, &admin).await;
    let call = |method: &'static str, path: String, body: serde_json::Value| {
        let s = &s;
        let admin = admin.clone();
        async move { s.call_as(Some(&admin), method, &path, Some(body)).await }
    };
    let v1 = "/v1/namespaces/default";
    for customer in [41, 42, 43] {
        let job = json!({"payload": {"customer": customer}, "max_attempts": 1,
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
        assert_eq!(
            call("POST", format!("{v1}/queues/billing/jobs"), job)
                .await
                .0,
            201
        );
    }
    // A worker fails the job of customer 42 for good.
    let (_, leased) = call(
        "POST",
        format!("{v1}/queues/billing/lease"),
        json!({"worker_id": "w", "max_jobs": 3, "wait_ms": 0}),
    )
    .await;
    let dead = leased["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["payload"]["customer"] == 42)
        .unwrap()
        .clone();
    let id = dead["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        "POST",
        format!("{v1}/jobs/{id}/fail"),
        json!({"lease_token": dead["lease_token"], "error": "card declined"}),
    )
    .await;
    assert_eq!(status, 200);

    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui/login", s.url)).await;
    browser.type_into("#token", &operator).await;
    browser.click("#login").await;
    browser.find("table#queues").await;
    browser.goto(&format!("{}/ui/jobs?ns=default", s.url)).await;
    browser.type_into("#q", "payload.customer = 42").await;
    browser.click("#search").await;
    let link = format!("tr[data-job=\"{id}\"] a");
    browser.find(&link).await;
    assert_eq!(browser.find_all("#jobs tbody tr").await.len(), 1);
    browser.screenshot("jobs").await;
    browser.click(&link).await;
    assert_eq!(browser.text("#attempt").await, "attempt 1 of 1");
    assert_eq!(browser.text("#state").await, "dead");
    assert!(browser.text("#errors").await.contains("card declined"));
    assert_eq!(
        browser.text("#trace").await,
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    browser.screenshot("job").await;
    // Edit the payload and redrive.
    let textarea = browser.find("#payload").await;
    browser.clear(&textarea).await;
    browser
        .type_into("#payload", r#"{"customer": 42, "card": "replaced"}"#)
        .await;
    browser.click("#redrive").await;
    browser.wait_text("#state", "ready").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // A worker gets the edited payload and completes it; the page says so.
    let (_, leased) = call(
        "POST",
        format!("{v1}/queues/billing/lease"),
        json!({"worker_id": "w", "max_jobs": 1, "wait_ms": 0}),
    )
    .await;
    let job = &leased["jobs"][0];
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["payload"], json!({"customer": 42, "card": "replaced"}));
    let (status, _) = call(
        "POST",
        format!("{v1}/jobs/{id}/complete"),
        json!({"lease_token": job["lease_token"], "result": {"charged": true}}),
    )
    .await;
    assert_eq!(status, 200);
    browser
        .goto(&format!("{}/ui/jobs/{id}?ns=default", s.url))
        .await;
    assert_eq!(browser.text("#state").await, "succeeded");
    assert!(browser.text("#result").await.contains("charged"));

    // A reader sees the job but no redrive or cancel.
    browser.click("header .who button").await;
    browser.find("#token").await;
    browser.type_into("#token", &reader).await;
    browser.click("#login").await;
    browser.find("table#queues").await;
    let other = leased_dead_after(&s, &admin).await;
    browser
        .goto(&format!("{}/ui/jobs/{other}?ns=default", s.url))
        .await;
    assert_eq!(browser.text("#state").await, "dead");
    assert!(browser.find_all("#redrive").await.is_empty());
    assert!(browser.find_all("#cancel").await.is_empty());
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

/// A new job of `billing`, leased and failed for good; its id.
async fn leased_dead_after(s: &Server, admin: &str) -> String {
    let v1 = "/v1/namespaces/default";
    let job = json!({"payload": {"customer": 44}, "max_attempts": 1});
    let (status, _) = s
        .call_as(
            Some(admin),
            "POST",
            &format!("{v1}/queues/billing/jobs"),
            Some(job),
        )
        .await;
    assert_eq!(status, 201);
    let (_, leased) = s
        .call_as(
            Some(admin),
            "POST",
            &format!("{v1}/queues/billing/lease"),
            Some(json!({"worker_id": "w", "max_jobs": 1, "wait_ms": 0})),
        )
        .await;
    let job = &leased["jobs"][0];
    let id = job["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .call_as(
            Some(admin),
            "POST",
            &format!("{v1}/jobs/{id}/fail"),
            Some(json!({"lease_token": job["lease_token"], "error": "no"})),
        )
        .await;
    assert_eq!(status, 200);
    id
}

/// Logs `browser` in with `token` and waits for the overview.
async fn log_in(browser: &Browser, s: &Server, token: &str) {
    browser.goto(&format!("{}/ui/login", s.url)).await;
    browser.type_into("#token", token).await;
    browser.click("#login").await;
    // The login page has a heading too: wait for the page of the session
    // (the header names who is logged in), or the next step may race the
    // login's redirect (a CI flake: a page loaded without the session).
    browser.find("header .who").await;
}

#[tokio::test]
async fn a_runs_dag_shows_the_failed_step_and_an_operator_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let (operator, reader) = operator_and_reader(&s, &admin).await;
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let s = &s;
        let admin = admin.clone();
        async move { s.call_as(Some(&admin), method, &path, body).await }
    };
    let v1 = "/v1/namespaces/default";
    let definition = json!({"name": "checkout", "description": "reserve, charge, ship", "steps": {
        "reserve": {"task": {"queue": "stock"}},
        "charge": {"needs": ["reserve"], "task": {"queue": "billing"}, "retry": {"max_attempts": 1}},
        "ship": {"needs": ["charge"], "task": {"queue": "shipping"}},
    }});
    let (status, _) = call("PUT", format!("{v1}/workflows/checkout"), Some(definition)).await;
    assert!(status == 200 || status == 201, "{status}");
    let (status, run) = call(
        "POST",
        format!("{v1}/workflows/checkout/runs"),
        Some(json!({"input": {"order": 7}})),
    )
    .await;
    assert_eq!(status, 201);
    let id = run["id"].as_str().unwrap().to_owned();
    // A worker does one job of `queue`, completing it or failing it with
    // `error`.
    let work = |queue: &'static str, error: Option<&'static str>| {
        let call = &call;
        async move {
            let (_, leased) = call(
                "POST",
                format!("{v1}/queues/{queue}/lease"),
                Some(json!({"worker_id": "w", "max_jobs": 1, "wait_ms": 10_000})),
            )
            .await;
            let job = &leased["jobs"][0];
            let (verb, body) = match error {
                Some(e) => (
                    "fail",
                    json!({"lease_token": job["lease_token"], "error": e}),
                ),
                None => (
                    "complete",
                    json!({"lease_token": job["lease_token"], "result": {}}),
                ),
            };
            let job_id = job["id"].as_str().unwrap();
            let (status, _) = call("POST", format!("{v1}/jobs/{job_id}/{verb}"), Some(body)).await;
            assert_eq!(status, 200, "{leased}");
        }
    };
    work("stock", None).await;
    work("billing", Some("card declined")).await;
    let (_, failed) = call("GET", format!("{v1}/runs/{id}?wait_ms=10000"), None).await;
    assert_eq!(failed["status"], "failed", "{failed}");

    let browser = Browser::start().await;
    log_in(&browser, &s, &operator).await;
    browser
        .goto(&format!("{}/ui/runs?ns=default&status=failed", s.url))
        .await;
    let link = format!("tr[data-run=\"{id}\"] a");
    browser.find(&link).await;
    browser.screenshot("runs").await;
    browser.click(&link).await;
    // The DAG: the failed step is drawn failed, the one before succeeded.
    browser.find("#dag g.node.failed[data-step=charge]").await;
    browser
        .find("#dag g.node.succeeded[data-step=reserve]")
        .await;
    assert_eq!(browser.find_all("#dag g.node.failed").await.len(), 1);
    assert_eq!(browser.find_all("#dag path.edge").await.len(), 2);
    // The waterfall marks the failed attempt; the table has its error.
    browser
        .find("#waterfall g.row.failed[data-step=charge] line.failure")
        .await;
    assert!(browser.text("#step-charge").await.contains("card declined"));
    assert_eq!(browser.text("#status").await, "failed");
    browser.screenshot("run").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // Retried from the page: the failed step runs again, the run succeeds.
    browser.click("#retry").await;
    browser.wait_text("#status", "running").await;
    browser.find("#dag g.node.running[data-step=charge]").await;
    work("billing", None).await;
    work("shipping", None).await;
    let (_, done) = call("GET", format!("{v1}/runs/{id}?wait_ms=10000"), None).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    browser
        .goto(&format!("{}/ui/runs/{id}?ns=default", s.url))
        .await;
    assert_eq!(browser.text("#status").await, "succeeded");
    assert_eq!(browser.find_all("#dag g.node.succeeded").await.len(), 3);

    // The definition's page draws the same DAG.
    browser
        .goto(&format!("{}/ui/workflows?ns=default", s.url))
        .await;
    browser.click("tr[data-workflow=checkout] a").await;
    browser.find("#dag g.node.step").await;
    assert_eq!(browser.find_all("#dag g.node.step").await.len(), 3);
    assert!(browser.text("#steps").await.contains("task on billing"));
    browser.screenshot("workflow").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    // The overview counts it among the runs that ended in the last hour.
    browser.goto(&format!("{}/ui?ns=default", s.url)).await;
    let runs = browser.text("#runs").await;
    assert!(
        runs.contains("running 0") && runs.contains("succeeded 1") && runs.contains("failed 0"),
        "{runs}"
    );

    // A reader sees why a new run waits, and no button to change it.
    let (_, waiting) = call(
        "POST",
        format!("{v1}/workflows/checkout/runs"),
        Some(json!({"input": {"order": 8}})),
    )
    .await;
    let waiting = waiting["id"].as_str().unwrap().to_owned();
    browser.click("header .who button").await;
    log_in(&browser, &s, &reader).await;
    browser
        .goto(&format!("{}/ui/runs/{waiting}?ns=default", s.url))
        .await;
    assert!(
        browser.text("#step-reserve").await.contains("no worker"),
        "{}",
        browser.text("#step-reserve").await
    );
    assert!(browser.text("#step-charge").await.contains("needs reserve"));
    for button in ["#retry", "#cancel", "#signal"] {
        assert!(browser.find_all(button).await.is_empty(), "{button}");
    }
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test]
async fn bulk_actions_count_first_then_act_on_what_the_filter_selects() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let (operator, reader) = operator_and_reader(&s, &admin).await;
    let v1 = "/v1/namespaces/default";
    // Five dead jobs: three of batch 7, two of batch 8.
    let jobs: Vec<_> = [7, 7, 8, 7, 8]
        .iter()
        .map(|b| json!({"payload": {"batch": b}, "max_attempts": 1}))
        .collect();
    let (status, _) = s
        .call_as(
            Some(&admin),
            "POST",
            &format!("{v1}/queues/imports/jobs"),
            Some(json!({"jobs": jobs})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, leased) = s
        .call_as(
            Some(&admin),
            "POST",
            &format!("{v1}/queues/imports/lease"),
            Some(json!({"worker_id": "w", "max_jobs": 5, "wait_ms": 0})),
        )
        .await;
    for job in leased["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let body = json!({"lease_token": job["lease_token"], "error": "bad row"});
        let (status, _) = s
            .call_as(
                Some(&admin),
                "POST",
                &format!("{v1}/jobs/{id}/fail"),
                Some(body),
            )
            .await;
        assert_eq!(status, 200);
    }
    let counts = || async {
        let (_, queue) = s
            .call_as(Some(&admin), "GET", &format!("{v1}/queues/imports"), None)
            .await;
        let n = |state: &str| queue["counts"][state].as_u64().unwrap();
        (n("dead"), n("ready"), n("cancelled"))
    };
    assert_eq!(counts().await, (5, 0, 0));

    let browser = Browser::start().await;
    log_in(&browser, &s, &operator).await;
    browser
        .goto(&format!(
            "{}/ui/jobs?ns=default&queue=imports&state=dead&q=payload.batch+%3D+7",
            s.url
        ))
        .await;
    assert_eq!(browser.find_all("#jobs tbody tr").await.len(), 3);
    // The count and a confirmation first: nothing moved yet.
    browser.click("#bulk-redrive").await;
    browser.wait_url("/ui/jobs/bulk").await;
    assert_eq!(browser.text("main h1").await, "Redrive 3 jobs?");
    assert!(browser.find_all("#bulk-cancel").await.is_empty());
    browser.screenshot("bulk").await;
    assert_eq!(counts().await, (5, 0, 0));
    browser.click("#confirm").await;
    assert!(
        browser
            .text("#done")
            .await
            .starts_with("Redrove 3 of the 3"),
        "{}",
        browser.text("#done").await
    );
    assert_eq!(counts().await, (2, 3, 0));
    // Back to the search, now of the ready ones, and cancel them all.
    browser.click("#back").await;
    browser.find("#q").await;
    browser
        .goto(&format!(
            "{}/ui/jobs?ns=default&queue=imports&state=ready",
            s.url
        ))
        .await;
    browser.click("#bulk-cancel").await;
    browser.wait_url("/ui/jobs/bulk").await;
    assert_eq!(browser.text("main h1").await, "Cancel 3 jobs?");
    browser.click("#confirm").await;
    assert!(
        browser
            .text("#done")
            .await
            .starts_with("Cancelled 3 of the 3")
    );
    assert_eq!(counts().await, (2, 0, 3));
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // A reader sees no bulk button, and the server refuses the page anyway.
    browser.click("header .who button").await;
    log_in(&browser, &s, &reader).await;
    browser
        .goto(&format!(
            "{}/ui/jobs?ns=default&queue=imports&state=dead",
            s.url
        ))
        .await;
    assert_eq!(browser.find_all("#jobs tbody tr").await.len(), 2);
    assert!(browser.find_all("#bulk-redrive").await.is_empty());
    browser.close().await;
    let refused = reqwest::Client::new()
        .get(format!(
            "{}/ui/jobs/bulk?ns=default&action=redrive&queue=imports",
            s.url
        ))
        .header("cookie", format!("keel_token={reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(counts().await, (2, 0, 3));
}

#[tokio::test]
async fn live_pages_follow_changes_over_their_stream_and_end_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir, &[]).await;
    let id = s.enqueue("live", json!({"payload": {"n": 1}})).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/ui/jobs/{id}?ns=default", s.url))
        .await;
    assert_eq!(browser.text("#state").await, "ready");
    // A worker takes and completes the job; the open page shows it, with
    // no reload (the test never navigates).
    let job = &s
        .lease("live", json!({"worker_id": "w", "max_jobs": 1}))
        .await[0];
    browser.wait_text("#state", "leased").await;
    let (status, _) = s
        .post(
            &format!("/v1/namespaces/default/jobs/{id}/complete"),
            json!({"lease_token": job["lease_token"], "result": {"ok": true}}),
        )
        .await;
    assert_eq!(status, 200);
    browser.wait_text("#state", "succeeded").await;
    assert!(browser.text("#result").await.contains("ok"));
    // The overview: a queue that appears while the page is open.
    browser.goto(&format!("{}/ui?ns=default", s.url)).await;
    assert!(browser.find_all("tr[data-queue=later]").await.is_empty());
    s.enqueue("later", json!({"payload": {}})).await;
    browser.find("tr[data-queue=later]").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    // An open stream does not hold the server up at shutdown.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), s.terminate())
        .await
        .expect("the server stops with a live page open");
    assert!(stopped.success(), "{stopped:?}");
    browser.close().await;
}

#[tokio::test]
async fn topics_schedules_endpoints_tokens_and_the_audit_log_have_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &["--allow-private-http"]).await;
    let (_, reader) = operator_and_reader(&s, &admin).await;
    let mut receiver = common::receiver::Receiver::start().await;
    let v1 = "/v1/namespaces/default";
    for (path, body) in [
        (
            format!("{v1}/endpoints/hooks"),
            json!({"url": format!("{}/hook", receiver.url), "headers": {"authorization": "Bearer hidden-value"}}),
        ),
        (format!("{v1}/topics/orders"), json!({})),
        (
            format!("{v1}/subscriptions/to-hooks"),
            json!({"topic": "orders", "target": {"endpoint": "hooks"}}),
        ),
        (
            format!("{v1}/schedules/nightly"),
            json!({"every_ms": 3_600_000, "target": {"queue": "reports", "job": {"payload": {}}}}),
        ),
    ] {
        let (status, answer) = s.call_as(Some(&admin), "PUT", &path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let publish = |n: u32| {
        let (s, admin) = (&s, admin.clone());
        async move {
            let (status, _) = s
                .call_as(
                    Some(&admin),
                    "POST",
                    &format!("{v1}/topics/orders/events"),
                    Some(json!({"data": {"order": n}})),
                )
                .await;
            assert_eq!(status, 201);
        }
    };
    publish(1).await;
    publish(2).await;
    receiver.ids(2).await;

    let browser = Browser::start().await;
    log_in(&browser, &s, &admin).await;
    // A topic: its subscription, the tail of its events, live.
    browser.click("tr[data-topic=orders] a").await;
    browser
        .find("#subscriptions tr[data-subscription=to-hooks]")
        .await;
    assert_eq!(browser.find_all("#tail tbody tr").await.len(), 2);
    publish(3).await;
    browser.find("#tail tr[data-seq=\"3\"]").await;
    browser.screenshot("topic").await;
    // Schedules: the next fires; the ledger says why it is empty.
    browser.click("header nav a[href^=\"/ui/schedules\"]").await;
    browser.click("tr[data-schedule=nightly] a").await;
    browser.find("#next").await;
    assert_eq!(browser.find_all("#next tbody tr").await.len(), 5);
    browser.find("#no-ledger").await;
    browser.screenshot("schedule").await;
    // Endpoints: health and the attempts log; header values stay hidden.
    browser.click("header nav a[href^=\"/ui/endpoints\"]").await;
    assert!(
        browser
            .text("tr[data-endpoint=hooks]")
            .await
            .contains("healthy")
    );
    browser.click("tr[data-endpoint=hooks] a").await;
    browser.find("#attempts").await;
    assert!(browser.find_all("#attempts tbody tr").await.len() >= 2);
    assert!(browser.text("#attempts").await.contains("succeeded"));
    let page = browser.text("main").await;
    assert!(page.contains("authorization") && !page.contains("hidden-value"));
    browser.screenshot("endpoint").await;
    // Tokens and the audit log, for an admin.
    browser.click("header nav a[href^=\"/ui/tokens\"]").await;
    browser.find("#tokens").await;
    assert_eq!(browser.find_all("#tokens tbody tr").await.len(), 3);
    browser.click("header nav a[href^=\"/ui/audit\"]").await;
    browser
        .find("#entries tr[data-action=\"endpoint.put\"]")
        .await;
    browser.type_into("#action", "schedule.put").await;
    browser.click("#search").await;
    browser.wait_url("action=schedule.put").await;
    assert_eq!(browser.find_all("#entries tbody tr").await.len(), 1);
    browser.screenshot("audit").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    // A reader has no admin pages, and is refused them.
    browser.click("header .who button").await;
    log_in(&browser, &s, &reader).await;
    assert!(
        browser
            .find_all("header nav a[href^=\"/ui/tokens\"]")
            .await
            .is_empty()
    );
    browser.close().await;
    for page in ["tokens", "audit"] {
        let refused = reqwest::Client::new()
            .get(format!("{}/ui/{page}", s.url))
            .header("cookie", format!("keel_token={reader}"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{page}");
    }
}

#[tokio::test]
async fn the_notifications_page_searches_and_shows_each_deliverys_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let v1 = "/v1/namespaces/default";
    for (method, path, body) in [
        ("PUT", format!("{v1}/channels/inbox"), json!({"in_app": {}})),
        (
            "PUT",
            format!("{v1}/channels/mail"),
            json!({"email": {"smtp_url": "smtp://mail.example:587", "from": "keel@example.com"}}),
        ),
        ("PUT", format!("{v1}/recipients/ada"), json!({})),
        (
            "POST",
            format!("{v1}/notifications"),
            json!({"subject": "Deploy done", "text": "v42", "channels": ["inbox", "mail"], "to": "ada"}),
        ),
        (
            "POST",
            format!("{v1}/notifications"),
            json!({"subject": "Other", "text": "", "channel": "inbox", "to": {"email": "x@example.com"}}),
        ),
    ] {
        let (status, answer) = s.call_as(Some(&admin), method, &path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let browser = Browser::start().await;
    log_in(&browser, &s, &admin).await;
    browser
        .click("header nav a[href^=\"/ui/notifications\"]")
        .await;
    assert_eq!(browser.find_all("#notifications tbody tr").await.len(), 2);
    assert!(
        browser
            .text("#channels tr[data-channel=mail]")
            .await
            .contains("email")
    );
    browser.type_into("#recipient", "ada").await;
    browser.click("#search").await;
    browser.wait_url("recipient=ada").await;
    assert_eq!(browser.find_all("#notifications tbody tr").await.len(), 1);
    let row = browser.text("#notifications tbody tr").await;
    assert!(
        row.contains("Deploy done") && row.contains("inbox") && row.contains("mail"),
        "{row}"
    );
    browser.click("#notifications tbody tr a").await;
    browser.find("#request").await;
    assert!(browser.text("#request").await.contains("Deploy done"));
    browser.screenshot("notification").await;
    browser.close().await;
}

#[tokio::test]
async fn an_incident_is_found_from_the_monitors_page_and_acknowledged_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let v1 = "/v1/namespaces/default";
    for (method, path, body) in [
        (
            "PUT",
            format!("{v1}/monitors/api"),
            json!({"http": {"url": "https://api.example.com/health"}, "paused": true}),
        ),
        (
            "POST",
            format!("{v1}/incidents/events"),
            json!({"dedup_key": "db", "action": "trigger", "summary": "db primary unreachable"}),
        ),
    ] {
        let (status, answer) = s.call_as(Some(&admin), method, &path, Some(body)).await;
        assert!(status == 201 || status == 202, "{path}: {answer}");
    }
    let browser = Browser::start().await;
    log_in(&browser, &s, &admin).await;
    browser.click("header nav a[href^=\"/ui/monitors\"]").await;
    let row = browser.text("#monitors tr[data-monitor=api]").await;
    assert!(
        row.contains("pending") && row.contains("api.example.com"),
        "{row}"
    );
    browser.click("header nav a[href^=\"/ui/incidents\"]").await;
    assert_eq!(browser.find_all("#incidents tbody tr").await.len(), 1);
    browser.click("#incidents tbody tr a").await;
    assert_eq!(browser.text("#incident-status").await, "open");
    browser.click("#acknowledge").await;
    browser.wait_text("#incident-status", "acknowledged").await;
    assert!(browser.find_all("#acknowledge").await.is_empty());
    browser
        .type_into("#note-text", "failing over to the replica")
        .await;
    browser.click("#note").await;
    browser.find("#timeline tr[data-kind=note]").await;
    let note = browser.text("#timeline tr[data-kind=note]").await;
    assert!(note.contains("failing over to the replica"), "{note}");
    let acked = browser.text("#timeline tr[data-kind=acknowledged]").await;
    assert!(acked.contains("(dashboard)"), "{acked}");
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.screenshot("incident").await;
    browser.close().await;
}

#[tokio::test]
async fn a_handlers_invocations_and_logs_are_on_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let v1 = "/v1/namespaces/default";
    let js = "export default async (job, ctx) => { ctx.log('greeting', job.payload.name); return 'hi ' + job.payload.name; }";
    for (method, path, body) in [
        ("PUT", format!("{v1}/handlers/greeter"), json!({"js": js})),
        (
            "POST",
            format!("{v1}/handlers/greeter/invoke"),
            json!({"payload": {"name": "ada"}}),
        ),
    ] {
        let (status, answer) = s.call_as(Some(&admin), method, &path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let browser = Browser::start().await;
    log_in(&browser, &s, &admin).await;
    browser.click("header nav a[href^=\"/ui/handlers\"]").await;
    let row = browser.text("#handlers tr[data-handler=greeter]").await;
    assert!(row.contains("js") && row.contains('1'), "{row}");
    browser.click("#handlers tr[data-handler=greeter] a").await;
    let invocations = browser.text("#invocations").await;
    assert!(
        invocations.contains("greeting ada") && invocations.contains("ok"),
        "{invocations}"
    );
    assert!(browser.text("#source").await.contains("ctx.log"));
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.screenshot("handler").await;
    browser.close().await;
}
