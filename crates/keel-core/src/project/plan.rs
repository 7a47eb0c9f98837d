//! Plans: what an apply does to each resource (create, update with the
//! fields that change, delete, release), decided by [`diff`] from the
//! project's definitions, the server's copies and what the project
//! manages; the plan the server answers; and where a version's apply
//! stands.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Kind, Resource, ResourceId};
use crate::{Error, Namespace};

/// Where a version's apply stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Written; its changes are being made (or were, by a node that died).
    Applying,
    /// Every change made: what the project owns now.
    Applied,
    /// A change failed and every change made before it was undone.
    Failed,
}

impl VersionState {
    pub const fn as_str(self) -> &'static str {
        match self {
            VersionState::Applying => "applying",
            VersionState::Applied => "applied",
            VersionState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Result<VersionState, Error> {
        match text {
            "applying" => Ok(VersionState::Applying),
            "applied" => Ok(VersionState::Applied),
            "failed" => Ok(VersionState::Failed),
            _ => Err(Error::internal(format!("corrupt version state {text:?}"))),
        }
    }
}

/// What an apply does to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Dropped from the project but kept, no longer managed: one the
    /// project did not create (it existed before), or a kind Keel cannot
    /// delete (a workflow).
    Release,
}

/// One line of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    #[schema(value_type = String)]
    pub namespace: Namespace,
    pub name: String,
    /// For an update: the fields that differ, as dotted paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Change {
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// What an apply would do, as the server computed it (`POST
/// /v1/projects/{project}/plans`). Applying it sends it back whole: the
/// server computes it again and refuses when anything it read changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[schema(value_type = String)]
    pub project: crate::ProjectName,
    /// The project's newest version when planned (0: none); the apply
    /// makes the next.
    pub base_version: u64,
    /// A digest of everything the plan read: the definitions, the server's
    /// copies, the base version.
    pub fingerprint: String,
    pub changes: Vec<Change>,
    /// The project's definitions, canonical.
    pub resources: Vec<Resource>,
}

/// What to do to make `current` what `desired` says. `desired` holds
/// canonical definitions; `current` the compared form of what the server
/// holds now, for every resource desired or managed (absent ones left out);
/// `managed` what the project's current version defines, each marked true
/// when the project created it (only those are ever deleted: one it
/// adopted, that existed before, is released when dropped). Creates and
/// updates come in apply order, then deletes and releases in reverse.
pub fn diff(
    desired: &[Resource],
    current: &BTreeMap<ResourceId, Value>,
    managed: &BTreeMap<ResourceId, bool>,
) -> Vec<Change> {
    let mut ahead: Vec<(ResourceId, Action, Vec<String>)> = Vec::new();
    let wanted: BTreeSet<ResourceId> = desired.iter().map(Resource::id).collect();
    for resource in desired {
        let id = resource.id();
        match current.get(&id) {
            None => ahead.push((id, Action::Create, Vec::new())),
            Some(now) => {
                let mut fields = Vec::new();
                changed_fields(
                    "",
                    now,
                    &resource.kind.compared(&resource.spec),
                    &mut fields,
                );
                if !fields.is_empty() {
                    ahead.push((id, Action::Update, fields));
                }
            }
        }
    }
    ahead.sort_by(|a, b| a.0.cmp(&b.0));
    let mut behind: Vec<(ResourceId, Action, Vec<String>)> = managed
        .iter()
        .filter(|(id, _)| !wanted.contains(id))
        .filter_map(|(id, &created)| {
            if !(created && id.kind.deletable()) {
                Some((id.clone(), Action::Release, Vec::new()))
            } else {
                current
                    .contains_key(id)
                    .then(|| (id.clone(), Action::Delete, Vec::new()))
            }
        })
        .collect();
    behind.sort_by(|a, b| b.0.cmp(&a.0));
    ahead
        .into_iter()
        .chain(behind)
        .map(|(id, action, fields)| Change {
            action,
            kind: id.kind,
            namespace: id.namespace,
            name: id.name,
            fields,
        })
        .collect()
}

/// The dotted paths where `before` and `after` differ; arrays and scalars
/// are compared whole.
fn changed_fields(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => changed_fields(&here, x, y, out),
                    (None, Some(Value::Null)) | (Some(Value::Null), None) => {}
                    _ => out.push(here),
                }
            }
        }
        _ if before != after => out.push(if path.is_empty() {
            "spec".to_owned()
        } else {
            path.to_owned()
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource(kind: Kind, name: &str, spec: Value) -> Resource {
        let spec = kind.canonical(name, &spec).unwrap();
        Resource {
            kind,
            namespace: Namespace::new("default").unwrap(),
            name: name.to_owned(),
            spec,
        }
    }

    #[test]
    fn a_plan_creates_updates_and_deletes_in_the_order_names_need() {
        let topic = resource(Kind::Topic, "orders", json!({"retention_ms": 1000}));
        let sub = resource(
            Kind::Subscription,
            "mail",
            json!({"topic": "orders", "start": "earliest"}),
        );
        let mut current = BTreeMap::new();
        current.insert(
            topic.id(),
            Kind::Topic.canonical("orders", &json!({})).unwrap(),
        );
        let gone = ResourceId {
            kind: Kind::Queue,
            namespace: topic.namespace.clone(),
            name: "old".into(),
        };
        let flow = ResourceId {
            kind: Kind::Workflow,
            namespace: topic.namespace.clone(),
            name: "flow".into(),
        };
        let adopted = ResourceId {
            kind: Kind::Topic,
            namespace: topic.namespace.clone(),
            name: "adopted".into(),
        };
        current.insert(gone.clone(), json!({}));
        current.insert(flow.clone(), json!({}));
        current.insert(adopted.clone(), json!({}));
        let managed = BTreeMap::from([
            (topic.id(), true),
            (gone, true),
            (flow, true),
            (adopted, false),
        ]);
        let changes = diff(&[sub, topic], &current, &managed);
        let shown: Vec<(Action, Kind, &str, Vec<String>)> = changes
            .iter()
            .map(|c| (c.action, c.kind, c.name.as_str(), c.fields.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    Action::Update,
                    Kind::Topic,
                    "orders",
                    vec!["retention_ms".to_owned()]
                ),
                (Action::Create, Kind::Subscription, "mail", vec![]),
                (Action::Release, Kind::Workflow, "flow", vec![]),
                (Action::Delete, Kind::Queue, "old", vec![]),
                (Action::Release, Kind::Topic, "adopted", vec![]),
            ]
        );
    }

    #[test]
    fn a_subscriptions_start_is_read_at_create_only() {
        let sub = resource(
            Kind::Subscription,
            "mail",
            json!({"topic": "orders", "start": "earliest"}),
        );
        let mut current = BTreeMap::new();
        current.insert(sub.id(), Kind::Subscription.compared(&sub.spec));
        assert!(diff(&[sub], &current, &BTreeMap::new()).is_empty());
        assert!(
            Kind::Subscription
                .canonical("s", &json!({"topic": "t", "start": "middle"}))
                .is_err()
        );
    }
}
