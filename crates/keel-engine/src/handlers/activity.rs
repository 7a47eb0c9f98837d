//! What this node's invocations of each handler did: counts, guest CPU,
//! the memory high-water mark, and the last invocations with their logs,
//! for the dashboard (the metrics carry the same counts for Prometheus).
//! Kept in memory: each node shows its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use keel_core::{HandlerName, Namespace, Timestamp};
use keel_sandbox::Invocation;

/// Invocations kept per handler.
const RECENT: usize = 30;

/// One invocation as the dashboard shows it.
#[derive(Clone, Debug)]
pub struct Recent {
    pub at: Timestamp,
    /// The job's id (`invoke` for a test call).
    pub job: String,
    pub version: u32,
    /// None: it returned a result.
    pub error: Option<String>,
    pub cpu: Duration,
    pub wall: Duration,
    pub memory_bytes: usize,
    pub logs: Vec<String>,
}

/// A handler's totals on this node since it started.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    pub invocations: u64,
    pub errors: u64,
    pub cpu: Duration,
    pub memory_peak: usize,
    pub recent: VecDeque<Recent>,
}

#[derive(Default)]
pub(super) struct Activities(Mutex<HashMap<(Namespace, HandlerName), Activity>>);

impl Activities {
    /// Counts one invocation; answers the handler's new memory high-water
    /// mark when this invocation raised it.
    pub(super) fn record(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        recent: (Timestamp, String, u32),
        invocation: &Invocation,
    ) -> Option<usize> {
        let (at, job, version) = recent;
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let a = all.entry((namespace.clone(), name.clone())).or_default();
        a.invocations += 1;
        let error = invocation
            .outcome
            .as_ref()
            .err()
            .map(|f| f.message().to_owned());
        a.errors += u64::from(error.is_some());
        a.cpu += invocation.cpu;
        let raised = (invocation.memory_bytes > a.memory_peak).then_some(invocation.memory_bytes);
        a.memory_peak = a.memory_peak.max(invocation.memory_bytes);
        if a.recent.len() == RECENT {
            a.recent.pop_back();
        }
        a.recent.push_front(Recent {
            at,
            job,
            version,
            error,
            cpu: invocation.cpu,
            wall: invocation.wall,
            memory_bytes: invocation.memory_bytes,
            logs: invocation.logs.clone(),
        });
        raised
    }

    pub(super) fn get(&self, namespace: &Namespace, name: &HandlerName) -> Activity {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&(namespace.clone(), name.clone()))
            .cloned()
            .unwrap_or_default()
    }
}
