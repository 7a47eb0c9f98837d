//! The HTTP client.

use std::time::Duration;

use keel_api::jobs::{
    AckAnswer, AcksAnswer, AcksRequest, CompleteRequest, Enqueued, EnqueuedBatch, FailRequest,
    HeartbeatAnswer, HeartbeatRequest, LeaseRequest, Leased, RedriveAnswer, RedriveRequest,
};
use keel_api::queues::{PausedAnswer, QueueAnswer};
use keel_api::runs::{CancelRequest, Run, RunPage};
use keel_api::workflows::{DefinitionAnswer, DefinitionSaved, StartRequest, WorkflowList};
use keel_api::{ErrorBody, ErrorDetail};
use keel_core::Timestamp;

use crate::JobSpec;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bad server URL: {0}")]
    Url(String),
    /// A value to send that is not JSON (a map with non-string keys, …).
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A worker stream failed or ended.
    #[error("stream: {0}")]
    Stream(String),
}

impl ClientError {
    /// The error code (`lease_lost`, `job_not_found`, …) when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A job as the server shows it, with its payload and result as JSON values.
pub type Job = keel_api::jobs::Job<Value>;
/// A page of jobs, newest first.
pub type JobPage = keel_api::jobs::JobPage<Value>;
/// A job leased to this worker, with its payload as a JSON value.
pub type LeasedJob = keel_api::jobs::LeasedJob<Value>;

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub queue: Option<String>,
    pub state: Option<String>,
    pub tag: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    /// HTTP/1.1 only, for a worker stream's upgrade (`http` may agree on h2).
    pub(crate) http1: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer` on every request.
    token: Option<std::sync::Arc<str>>,
}

/// Path segments are names the server validates; this keeps a stray `/` or `?`
/// from changing the route.
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTTPS uses rustls on ring (aws-lc's C build is too slow for these
/// machines); reqwest needs the provider installed before any client is built.
/// Installing twice is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:5335`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Client::with_ca_cert(base_url, None)
    }

    /// A client that also trusts the PEM certificate authority `ca_pem`
    /// (one or more certificates): for a server whose TLS certificate a
    /// private CA issued.
    pub fn with_ca_cert(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::Url(base));
        }
        install_tls_provider();
        let builder = || -> Result<reqwest::ClientBuilder, ClientError> {
            let mut builder = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(5));
            if let Some(pem) = ca_pem {
                for ca in reqwest::Certificate::from_pem_bundle(pem)? {
                    builder = builder.add_root_certificate(ca);
                }
            }
            Ok(builder)
        };
        Ok(Client {
            http: builder()?.build()?,
            http1: builder()?.http1_only().build()?,
            base,
            token: None,
        })
    }

    /// The same client, sending `token` (`keel_…`) with every request.
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `req` with the token and the caller's trace context.
    pub(crate) fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        #[cfg(feature = "otel")]
        let req = match crate::trace::current() {
            Some(context) => req.header("traceparent", context.as_str()),
            None => req,
        };
        req
    }

    pub(crate) async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.authorized(req).send().await?;
        if resp.status().is_success() {
            return Ok(resp.json().await?);
        }
        Err(Client::error_of(resp).await)
    }

    /// The error a refused request's answer carries.
    pub(crate) async fn error_of(resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let error = resp.json::<ErrorBody>().await.map_or_else(
            |_| ErrorDetail {
                code: "unknown".to_owned(),
                message: String::new(),
            },
            |body| body.error,
        );
        ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    pub async fn enqueue(
        &self,
        namespace: &str,
        queue: &str,
        job: &JobSpec,
    ) -> Result<Enqueued, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/jobs",
            seg(namespace),
            seg(queue)
        ));
        self.send(self.http.post(url).json(job)).await
    }

    pub async fn enqueue_many(
        &self,
        namespace: &str,
        queue: &str,
        jobs: &[JobSpec],
    ) -> Result<Vec<Enqueued>, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/jobs",
            seg(namespace),
            seg(queue)
        ));
        let batch: EnqueuedBatch = self
            .send(self.http.post(url).json(&json!({ "jobs": jobs })))
            .await?;
        Ok(batch.jobs)
    }

    pub async fn get_job(&self, namespace: &str, id: &str) -> Result<Job, ClientError> {
        let url = self.url(&format!("/namespaces/{}/jobs/{}", seg(namespace), seg(id)));
        self.send(self.http.get(url)).await
    }

    pub async fn list_jobs(
        &self,
        namespace: &str,
        query: &ListQuery,
    ) -> Result<JobPage, ClientError> {
        let url = self.url(&format!("/namespaces/{}/jobs", seg(namespace)));
        let mut params: Vec<(&str, String)> = Vec::new();
        for (key, value) in [
            ("queue", &query.queue),
            ("state", &query.state),
            ("tag", &query.tag),
            ("cursor", &query.cursor),
        ] {
            if let Some(v) = value {
                params.push((key, v.clone()));
            }
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        self.send(self.http.get(url).query(&params)).await
    }

    /// Stores a workflow definition (YAML or JSON text); answers with its version.
    pub async fn put_workflow(
        &self,
        namespace: &str,
        name: &str,
        source: &str,
        yaml: bool,
    ) -> Result<DefinitionSaved, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/workflows/{}",
            seg(namespace),
            seg(name)
        ));
        let content_type = if yaml {
            "application/yaml"
        } else {
            "application/json"
        };
        let req = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(source.to_owned());
        self.send(req).await
    }

    /// A workflow's definition (the latest version, or `version`).
    /// The namespace's workflows, each at its latest version.
    pub async fn list_workflows(&self, namespace: &str) -> Result<WorkflowList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/workflows", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn get_workflow(
        &self,
        namespace: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<DefinitionAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/workflows/{}",
            seg(namespace),
            seg(name)
        ));
        let mut req = self.http.get(url);
        if let Some(v) = version {
            req = req.query(&[("version", v)]);
        }
        self.send(req).await
    }

    /// Starts a run of the latest version of a workflow.
    pub async fn start_run(
        &self,
        namespace: &str,
        workflow: &str,
        input: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Run, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/workflows/{}/runs",
            seg(namespace),
            seg(workflow)
        ));
        let body = StartRequest {
            input: input.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            version: None,
            traceparent: None,
        };
        self.send(self.http.post(url).json(&body)).await
    }

    /// A run with every step; with `wait_ms`, the server waits up to that long
    /// for the run to end.
    pub async fn get_run(
        &self,
        namespace: &str,
        id: &str,
        wait_ms: Option<u64>,
    ) -> Result<Run, ClientError> {
        let url = self.url(&format!("/namespaces/{}/runs/{}", seg(namespace), seg(id)));
        let mut req = self.http.get(url);
        if let Some(ms) = wait_ms {
            req = req
                .query(&[("wait_ms", ms)])
                .timeout(Duration::from_millis(ms + 10_000));
        }
        self.send(req).await
    }

    /// Runs, newest first, a page at a time; optionally of one workflow, in
    /// one status.
    pub async fn list_runs(
        &self,
        namespace: &str,
        workflow: Option<&str>,
        status: Option<&str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<RunPage, ClientError> {
        let url = self.url(&format!("/namespaces/{}/runs", seg(namespace)));
        let mut params = vec![("limit", limit.to_string())];
        if let Some(w) = workflow {
            params.push(("workflow", w.to_owned()));
        }
        if let Some(s) = status {
            params.push(("status", s.to_owned()));
        }
        if let Some(c) = cursor {
            params.push(("cursor", c.to_owned()));
        }
        self.send(self.http.get(url).query(&params)).await
    }

    /// Sends a signal to a run.
    pub async fn signal_run(
        &self,
        namespace: &str,
        id: &str,
        signal: &str,
        payload: &Value,
    ) -> Result<Run, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/runs/{}/signals/{}",
            seg(namespace),
            seg(id),
            seg(signal)
        ));
        self.send(self.http.post(url).json(payload)).await
    }

    /// Counts by state, oldest ready age, rates and policy, as the server sends them.
    pub async fn queue_stats(
        &self,
        namespace: &str,
        queue: &str,
    ) -> Result<QueueAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}",
            seg(namespace),
            seg(queue)
        ));
        self.send(self.http.get(url)).await
    }

    /// Sets a queue's policy (retries, leases, concurrency, retention, push).
    pub async fn put_queue_policy(
        &self,
        namespace: &str,
        queue: &str,
        policy: &keel_core::QueuePolicy,
    ) -> Result<keel_core::QueuePolicy, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}",
            seg(namespace),
            seg(queue)
        ));
        self.send(self.http.put(url).json(policy)).await
    }

    /// Pauses a queue (nothing is leased from it) or resumes it.
    pub async fn set_paused(
        &self,
        namespace: &str,
        queue: &str,
        paused: bool,
    ) -> Result<PausedAnswer, ClientError> {
        let action = if paused { "pause" } else { "resume" };
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/{action}",
            seg(namespace),
            seg(queue)
        ));
        self.send(self.http.post(url)).await
    }

    /// Cancels a job that has not finished.
    pub async fn cancel_job(&self, namespace: &str, id: &str) -> Result<AckAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/jobs/{}/cancel",
            seg(namespace),
            seg(id)
        ));
        self.send(self.http.post(url)).await
    }

    /// Sends dead jobs of `queue` back to ready, attempts reset: `ids`, or
    /// every dead job when `None`; `payload` replaces theirs.
    pub async fn redrive(
        &self,
        namespace: &str,
        queue: &str,
        ids: Option<Vec<String>>,
        payload: Option<Value>,
    ) -> Result<RedriveAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/redrive",
            seg(namespace),
            seg(queue)
        ));
        let body = RedriveRequest {
            all: ids.is_none(),
            ids,
            payload: payload
                .map(|p| serde_json::value::to_raw_value(&p))
                .transpose()?,
        };
        self.send(self.http.post(url).json(&body)).await
    }

    /// Cancels a run; `compensate` undoes its completed steps first.
    pub async fn cancel_run(
        &self,
        namespace: &str,
        id: &str,
        compensate: bool,
    ) -> Result<Run, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/runs/{}/cancel",
            seg(namespace),
            seg(id)
        ));
        self.send(self.http.post(url).json(&CancelRequest { compensate }))
            .await
    }

    /// Leases up to `max_jobs`, waiting up to `wait_ms` for one to be ready.
    pub async fn lease(
        &self,
        namespace: &str,
        queue: &str,
        worker_id: &str,
        max_jobs: u32,
        wait_ms: u64,
        lease_ms: Option<u64>,
    ) -> Result<Vec<LeasedJob>, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/lease",
            seg(namespace),
            seg(queue)
        ));
        let body = LeaseRequest {
            worker_id: Some(worker_id.to_owned()),
            max_jobs: Some(max_jobs),
            wait_ms: Some(wait_ms),
            lease_ms,
        };
        let leased: Leased<Value> = self.send(self.http.post(url).json(&body)).await?;
        Ok(leased.jobs)
    }

    pub async fn complete(
        &self,
        namespace: &str,
        job: &LeasedJob,
        result: Value,
    ) -> Result<AckAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/jobs/{}/complete",
            seg(namespace),
            job.id
        ));
        let body = CompleteRequest {
            lease_token: job.lease_token.clone(),
            result: Some(serde_json::value::to_raw_value(&result)?),
        };
        self.send(self.http.post(url).json(&body)).await
    }

    pub async fn fail(
        &self,
        namespace: &str,
        job: &LeasedJob,
        error: &str,
        retry: bool,
    ) -> Result<AckAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/jobs/{}/fail",
            seg(namespace),
            job.id
        ));
        let body = FailRequest {
            lease_token: job.lease_token.clone(),
            error: Some(error.to_owned()),
            retry,
            retry_after_ms: None,
        };
        self.send(self.http.post(url).json(&body)).await
    }

    /// Extends a lease; returns the new expiry.
    pub async fn heartbeat(
        &self,
        namespace: &str,
        job: &LeasedJob,
        lease_ms: Option<u64>,
    ) -> Result<Timestamp, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/jobs/{}/heartbeat",
            seg(namespace),
            job.id
        ));
        let body = HeartbeatRequest {
            lease_token: job.lease_token.clone(),
            lease_ms,
        };
        let answer: HeartbeatAnswer = self.send(self.http.post(url).json(&body)).await?;
        Ok(answer.lease_expires_at)
    }

    /// Batch acknowledgement: `{"complete":[...],"fail":[...]}` → per-item status.
    pub async fn acks(
        &self,
        namespace: &str,
        complete: Vec<Value>,
        fail: Vec<Value>,
    ) -> Result<AcksAnswer, ClientError> {
        let url = self.url(&format!("/namespaces/{}/acks", seg(namespace)));
        let body = AcksRequest { complete, fail };
        self.send(self.http.post(url).json(&body)).await
    }
}
