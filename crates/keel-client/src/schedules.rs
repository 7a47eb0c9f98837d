//! Schedules: the client's calls to configure them, read their slots, and
//! fire them by hand.

use keel_api::schedules::{
    BackfillAnswer, BackfillRequest, ScheduleAnswer, ScheduleList, ScheduleRequest, SlotAnswer,
};
use keel_core::Timestamp;

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    fn schedule_url(&self, namespace: &str, name: &str, action: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/schedules/{}{action}",
            seg(namespace),
            seg(name)
        ))
    }

    /// Creates or updates a schedule (identical content changes nothing).
    pub async fn put_schedule(
        &self,
        namespace: &str,
        name: &str,
        schedule: &ScheduleRequest,
    ) -> Result<ScheduleAnswer, ClientError> {
        let url = self.schedule_url(namespace, name, "");
        self.send(self.http.put(url).json(schedule)).await
    }

    /// A schedule with its next slots and its ledger.
    pub async fn get_schedule(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ScheduleAnswer, ClientError> {
        self.send(self.http.get(self.schedule_url(namespace, name, "")))
            .await
    }

    pub async fn list_schedules(&self, namespace: &str) -> Result<ScheduleList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/schedules", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    /// Pauses (`true`) or resumes a schedule.
    pub async fn pause_schedule(
        &self,
        namespace: &str,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleAnswer, ClientError> {
        let action = if paused { "/pause" } else { "/resume" };
        let url = self.schedule_url(namespace, name, action);
        self.send(self.http.post(url)).await
    }

    /// Fires a schedule now, outside its cron.
    pub async fn trigger_schedule(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SlotAnswer, ClientError> {
        let url = self.schedule_url(namespace, name, "/trigger");
        self.send(self.http.post(url)).await
    }

    /// Fires every slot of `from..=to` under the overlap policy.
    pub async fn backfill_schedule(
        &self,
        namespace: &str,
        name: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BackfillAnswer, ClientError> {
        let url = self.schedule_url(namespace, name, "/backfill");
        self.send(self.http.post(url).json(&BackfillRequest { from, to }))
            .await
    }
}
