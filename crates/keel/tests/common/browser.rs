//! A real browser for the dashboard's tests: headless Chromium driven by
//! Debian's `chromedriver` over the W3C WebDriver protocol (JSON over
//! HTTP). The handful of commands the tests use are spoken directly with
//! reqwest, which the tests already have, rather than through a WebDriver
//! client crate and its own HTTP stack. `scripts/test` installs both
//! packages; without them these tests fail and say how to get them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// The key W3C WebDriver gives an element reference under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub(crate) async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (apt install chromium chromium-driver; scripts/test does)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready
                && let Ok(status) = answer.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(answer) => panic!("WebDriver {path}: {answer}"),
        }
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        if answer["value"]["error"].is_string() {
            return Err(answer);
        }
        Ok(answer["value"].clone())
    }

    /// `what` (`text`, `click`, ...) on the first element matching `css`.
    /// A live page may replace the element between finding and using it:
    /// it is then found again.
    async fn on_element(
        &self,
        css: &str,
        method: reqwest::Method,
        what: &str,
        body: Option<Value>,
    ) -> Value {
        for _ in 0..10 {
            let id = self.find(css).await;
            match self
                .try_call(
                    method.clone(),
                    &format!("/element/{id}/{what}"),
                    body.clone(),
                )
                .await
            {
                Ok(value) => return value,
                Err(answer) if answer["value"]["error"] == "stale element reference" => {}
                Err(answer) => panic!("WebDriver {what} on {css}: {answer}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn url(&self) -> String {
        let url = self.call(reqwest::Method::GET, "/url", None).await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the page's URL contains `fragment` (a form's page may
    /// still be loading when its click returns); panics after 10 s.
    pub(crate) async fn wait_url(&self, fragment: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.contains(fragment) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url} never showed {fragment}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Elements matching a CSS selector (none is not an error).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, once the page shows one (a page
    /// that a click started may still be loading); panics after 10 s.
    pub(crate) async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.find_all(css).await.into_iter().next() {
                return id;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self.call(reqwest::Method::GET, "/source", None).await;
                panic!("no element matches {css} on {}:\n{page}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let text = self
            .on_element(css, reqwest::Method::GET, "text", None)
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` is `expected` (the page a click
    /// started may still be loading); panics after 10 s.
    pub(crate) async fn wait_text(&self, css: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if !self.find_all(css).await.is_empty() {
                let text = self.text(css).await;
                if text == expected {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{css} says {text}, not {expected}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        self.on_element(
            css,
            reqwest::Method::POST,
            "value",
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Empties an input or a textarea.
    pub(crate) async fn clear(&self, id: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
    }

    /// Clicks; a click that submits a form returns once the next page
    /// has loaded (WebDriver waits for navigation).
    pub(crate) async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "click", Some(json!({})))
            .await;
    }

    /// The value of a script run in the page (`return ...;`).
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The browser console's errors since the last call.
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        logs.as_array()
            .map(|all| {
                all.iter()
                    .filter(|l| l["level"] == "SEVERE")
                    .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes the page as it looks to `target/ui-screenshots/{name}.png`.
    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("the screenshot is written");
    }

    pub(crate) async fn close(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}
