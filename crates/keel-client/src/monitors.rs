//! Monitors and incidents: monitors and their results, escalation
//! policies, maintenance windows and status pages; incidents, their events
//! (PagerDuty's shape) and acknowledgement; and heartbeats' pings.

use keel_api::monitors::{
    IncidentEventAnswer, IncidentEventRequest, IncidentList, MaintenanceAnswer, MonitorAnswer,
    MonitorList, MonitorRequest, PolicyAnswer, ResultList, StatusPageAnswer, StatusPageRequest,
};
use keel_core::monitor::{EscalationPolicy, Incident, MaintenanceSpec};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    /// Creates or replaces a monitor (and the schedule of its probes).
    pub async fn put_monitor(
        &self,
        namespace: &str,
        name: &str,
        monitor: &MonitorRequest,
    ) -> Result<MonitorAnswer, ClientError> {
        let url = self.setting_url(namespace, "monitors", name);
        self.send(self.http.put(url).json(monitor)).await
    }

    /// A monitor with its state and uptime.
    pub async fn get_monitor(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<MonitorAnswer, ClientError> {
        self.send(self.http.get(self.setting_url(namespace, "monitors", name)))
            .await
    }

    /// A page of monitors by name, after `after`.
    pub async fn list_monitors(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<MonitorList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/monitors", seg(namespace)));
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.send(self.http.get(url).query(&query)).await
    }

    pub async fn delete_monitor(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.setting_url(namespace, "monitors", name))
            .await
    }

    /// A monitor's results after `after` (a seq), or the last `limit`.
    pub async fn monitor_results(
        &self,
        namespace: &str,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<ResultList, ClientError> {
        let url = format!("{}/results", self.setting_url(namespace, "monitors", name));
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        self.send(self.http.get(url).query(&query)).await
    }

    pub async fn put_escalation_policy(
        &self,
        namespace: &str,
        name: &str,
        policy: &EscalationPolicy,
    ) -> Result<PolicyAnswer, ClientError> {
        let url = self.setting_url(namespace, "escalation-policies", name);
        self.send(self.http.put(url).json(policy)).await
    }

    pub async fn put_maintenance(
        &self,
        namespace: &str,
        name: &str,
        window: &MaintenanceSpec,
    ) -> Result<MaintenanceAnswer, ClientError> {
        let url = self.setting_url(namespace, "maintenance", name);
        self.send(self.http.put(url).json(window)).await
    }

    pub async fn put_status_page(
        &self,
        namespace: &str,
        slug: &str,
        page: &StatusPageRequest,
    ) -> Result<StatusPageAnswer, ClientError> {
        let url = self.setting_url(namespace, "status-pages", slug);
        self.send(self.http.put(url).json(page)).await
    }

    /// A setting's `PUT` (`kind` is its path: `monitors`, `channels`,
    /// `escalation-policies`, …) with a body as JSON, as `keel monitor
    /// apply` sends them; the answer as JSON.
    pub async fn put_json(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.setting_url(namespace, kind, name);
        self.send(self.http.put(url).json(body)).await
    }

    /// Triggers, acknowledges or resolves an incident by its dedup key.
    pub async fn incident_event(
        &self,
        namespace: &str,
        event: &IncidentEventRequest,
    ) -> Result<IncidentEventAnswer, ClientError> {
        let url = self.url(&format!("/namespaces/{}/incidents/events", seg(namespace)));
        self.send(self.http.post(url).json(event)).await
    }

    /// Incidents, newest first; `status` is `open`, `acknowledged` or `resolved`.
    pub async fn list_incidents(
        &self,
        namespace: &str,
        status: Option<&str>,
    ) -> Result<IncidentList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/incidents", seg(namespace)));
        let query: Vec<(&str, &str)> = status.map(|s| ("status", s)).into_iter().collect();
        self.send(self.http.get(url).query(&query)).await
    }

    pub async fn get_incident(&self, namespace: &str, id: &str) -> Result<Incident, ClientError> {
        self.send(self.http.get(self.setting_url(namespace, "incidents", id)))
            .await
    }

    /// `acknowledge` or `resolve` an incident.
    pub async fn act_on_incident(
        &self,
        namespace: &str,
        id: &str,
        action: &str,
    ) -> Result<Incident, ClientError> {
        let url = format!(
            "{}/{}",
            self.setting_url(namespace, "incidents", id),
            seg(action)
        );
        self.send(self.http.post(url).json(&serde_json::json!({})))
            .await
    }

    /// A heartbeat's ping (`signal`: `None`, `start`, `fail` or an exit
    /// status), answered once it is durable.
    pub async fn ping(
        &self,
        token: &str,
        signal: Option<&str>,
        body: &str,
    ) -> Result<(), ClientError> {
        let url = match signal {
            Some(signal) => self.url(&format!("/ping/{}/{}", seg(token), seg(signal))),
            None => self.url(&format!("/ping/{}", seg(token))),
        };
        let resp = self
            .authorized(self.http.post(url).body(body.to_owned()))
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(Client::error_of(resp).await)
    }
}
