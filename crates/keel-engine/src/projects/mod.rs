//! Projects: plan what a directory of definitions would change, apply
//! exactly that, keep every apply as an immutable version.
//!
//! An apply is all or nothing, also across kill -9, by a redo log: the new
//! version (its definitions, its changes, and what the changed resources
//! were before) is written first, in the state `applying`; then each change
//! goes through its domain's service; then the version is settled. A change
//! that fails undoes the ones before it, and the version is `failed`. A
//! node that starts finishes any version left applying before it serves a
//! request (on PostgreSQL, one left applying for [`STALE_APPLY_MS`], since
//! another node may be applying it now), and so does a plan or an apply of
//! that project: a reader after a crash sees the old definitions or the
//! new ones, never a mix.

mod kinds;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keel_core::project::{
    self, Action, Change, MAX_RESOURCES, Plan, Resource, ResourceId, VersionState,
};
use keel_core::{Clock, Error, ErrorCode, ProjectName};
use keel_store::{ProjectStore, ProjectVersion, VersionBody};
use serde_json::Value;

pub(crate) use kinds::Kinds;

/// How long a version may stay applying before another node takes it for
/// abandoned and finishes it.
pub const STALE_APPLY_MS: i64 = 60_000;

/// Most versions one listing shows.
pub const MAX_VERSIONS_LISTED: u32 = 1_000;

pub struct ProjectService {
    store: Arc<dyn ProjectStore>,
    kinds: Kinds,
    clock: Arc<dyn Clock>,
    /// The embedded store: no other node can be applying.
    sole_writer: bool,
    /// One plan or apply at a time on this node, so that one never reads
    /// the half-made changes of another.
    busy: tokio::sync::Mutex<()>,
}

/// What an apply did.
pub struct Applied {
    pub version: ProjectVersion,
    /// False when the plan changed nothing (the version is the current one).
    pub changed: bool,
}

impl ProjectService {
    pub(crate) fn new(
        store: Arc<dyn ProjectStore>,
        kinds: Kinds,
        clock: Arc<dyn Clock>,
        sole_writer: bool,
    ) -> Self {
        ProjectService {
            store,
            kinds,
            clock,
            sole_writer,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// What applying `resources` as the whole of `project` would change.
    pub async fn plan(
        &self,
        project: &ProjectName,
        resources: Vec<Resource>,
    ) -> Result<Plan, Error> {
        let _busy = self.busy.lock().await;
        self.finish_abandoned(project, false).await?;
        Ok(self.compute(project, resources).await?.plan)
    }

    /// Applies `plan` if the server is still as it was when it was made;
    /// else 409 `version_mismatch`.
    pub async fn apply(&self, plan: Plan, note: String) -> Result<Applied, Error> {
        let _busy = self.busy.lock().await;
        let project = plan.project.clone();
        let head = self.store.project_versions(&project, 1).await?.pop();
        if head.map_or(0, |h| h.version) != plan.base_version {
            return Err(stale(&project));
        }
        self.finish_abandoned(&project, false).await?;
        let Computed {
            plan: fresh,
            created: created_before,
            current,
        } = self.compute(&project, plan.resources).await?;
        if fresh.fingerprint != plan.fingerprint {
            return Err(stale(&project));
        }
        let head = self.store.project_versions(&project, 1).await?.pop();
        if fresh.changes.is_empty()
            && let Some(head) = head
        {
            return Ok(Applied {
                version: head,
                changed: false,
            });
        }
        // What the changed resources are now, as the plan read them (its
        // fingerprint says nothing moved since): the undo's definitions.
        let previous = fresh
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Update | Action::Delete))
            .filter_map(|c| {
                current.get(&c.id()).map(|spec| Resource {
                    kind: c.kind,
                    namespace: c.namespace.clone(),
                    name: c.name.clone(),
                    spec: spec.clone(),
                })
            })
            .collect();
        let wanted: BTreeSet<ResourceId> = fresh.resources.iter().map(Resource::id).collect();
        let created = created_before
            .into_iter()
            .filter(|id| wanted.contains(id))
            .chain(
                fresh
                    .changes
                    .iter()
                    .filter(|c| c.action == Action::Create)
                    .map(Change::id),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let version = ProjectVersion {
            project: project.clone(),
            version: fresh.base_version + 1,
            state: VersionState::Applying,
            body: VersionBody {
                resources: fresh.resources,
                changes: fresh.changes,
                created,
                previous,
                note,
                error: None,
            },
            created_at: self.clock.now(),
            finished_at: None,
        };
        self.store.project_begin(&version).await?;
        let outcome = self.run(&version).await;
        let settled = self
            .store
            .project_version(&project, version.version)
            .await?;
        outcome.map(|()| Applied {
            version: settled,
            changed: true,
        })
    }

    /// At start, before any request: finishes every version a node left
    /// applying (on PostgreSQL, those abandoned for [`STALE_APPLY_MS`]).
    pub async fn recover(&self) -> Result<(), Error> {
        let _busy = self.busy.lock().await;
        for head in self.store.project_heads().await? {
            if head.state == VersionState::Applying {
                self.finish_abandoned(&head.project, true).await?;
            }
        }
        Ok(())
    }

    pub async fn version(
        &self,
        project: &ProjectName,
        version: u64,
    ) -> Result<ProjectVersion, Error> {
        self.store.project_version(project, version).await
    }

    /// A project's versions, newest first; 404 for a project with none.
    pub async fn versions(
        &self,
        project: &ProjectName,
        limit: u32,
    ) -> Result<Vec<ProjectVersion>, Error> {
        let limit = limit.clamp(1, MAX_VERSIONS_LISTED);
        let versions = self.store.project_versions(project, limit).await?;
        if versions.is_empty() {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("project {project} not found"),
            ));
        }
        Ok(versions)
    }

    /// Every project, at its newest version.
    pub async fn list(&self) -> Result<Vec<ProjectVersion>, Error> {
        self.store.project_heads().await
    }

    /// Finishes the project's version left applying, if any. `starting`:
    /// this node has served nothing yet, so on the embedded store the
    /// version is surely abandoned.
    async fn finish_abandoned(&self, project: &ProjectName, starting: bool) -> Result<(), Error> {
        let Some(head) = self.store.project_versions(project, 1).await?.pop() else {
            return Ok(());
        };
        if head.state != VersionState::Applying {
            return Ok(());
        }
        let age = self.clock.now().as_millis() - head.created_at.as_millis();
        if !(self.sole_writer || age >= STALE_APPLY_MS) {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "version {} of project {project} is being applied; try again shortly",
                    head.version
                ),
            ));
        }
        tracing::warn!(
            project = %project,
            version = head.version,
            starting,
            "finishing a version left applying"
        );
        match self.run(&head).await {
            // Undone and settled failed: the project is as it was before.
            Ok(()) | Err(_) => Ok(()),
        }
    }

    /// Makes a written version's changes in order, then settles it; on the
    /// first that fails, undoes the ones made and settles it failed.
    async fn run(&self, version: &ProjectVersion) -> Result<(), Error> {
        let desired: BTreeMap<ResourceId, &Resource> =
            version.body.resources.iter().map(|r| (r.id(), r)).collect();
        let mut made: Vec<&Change> = Vec::new();
        for change in &version.body.changes {
            match self.make(change, &desired).await {
                Ok(()) => made.push(change),
                Err(e) => {
                    let undone = self.undo(&made, &version.body.previous).await;
                    let message = format!(
                        "{} {}/{}: {}{}",
                        change.kind.as_str(),
                        change.namespace,
                        change.name,
                        e.message,
                        if undone {
                            ""
                        } else {
                            " (and undoing the changes before it failed: see the server's log)"
                        }
                    );
                    self.settle(version, VersionState::Failed, Some(message.clone()))
                        .await?;
                    return Err(Error::new(
                        e.code,
                        format!(
                            "version {} of project {} failed and was undone: {message}",
                            version.version, version.project
                        ),
                    ));
                }
            }
        }
        self.settle(version, VersionState::Applied, None).await
    }

    async fn settle(
        &self,
        version: &ProjectVersion,
        state: VersionState,
        error: Option<String>,
    ) -> Result<(), Error> {
        let settled = self
            .store
            .project_settle(
                &version.project,
                version.version,
                state,
                error,
                self.clock.now(),
            )
            .await;
        match settled {
            // Another node finished it first.
            Err(e) if e.code == ErrorCode::Conflict => Ok(()),
            other => other,
        }
    }

    async fn make(
        &self,
        change: &Change,
        desired: &BTreeMap<ResourceId, &Resource>,
    ) -> Result<(), Error> {
        match change.action {
            Action::Create | Action::Update => {
                let resource = desired.get(&change.id()).ok_or_else(|| {
                    Error::internal(format!("{} changes but is not defined", change.id()))
                })?;
                self.kinds.put(resource).await
            }
            Action::Delete => self.kinds.delete(&change.id()).await,
            Action::Release => Ok(()),
        }
    }

    /// Undoes `made`, last first: what was created is deleted, what was
    /// changed or deleted is put back as it was. False when a step failed.
    async fn undo(&self, made: &[&Change], previous: &[Resource]) -> bool {
        let before: BTreeMap<ResourceId, &Resource> =
            previous.iter().map(|r| (r.id(), r)).collect();
        let mut clean = true;
        for change in made.iter().rev() {
            let id = change.id();
            let undone = match (change.action, before.get(&id)) {
                (Action::Create, _) => self.kinds.delete(&id).await,
                (Action::Update | Action::Delete, Some(old)) => self.kinds.put(old).await,
                (Action::Update | Action::Delete, None) | (Action::Release, _) => Ok(()),
            };
            if let Err(e) = undone {
                tracing::error!(resource = %id, error = %e.message, "cannot undo a change of a failed apply");
                clean = false;
            }
        }
        clean
    }

    /// The plan: every definition checked, the owners and the server's
    /// copies read, the diff and its fingerprint.
    async fn compute(
        &self,
        project: &ProjectName,
        resources: Vec<Resource>,
    ) -> Result<Computed, Error> {
        if resources.len() > MAX_RESOURCES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("a project holds at most {MAX_RESOURCES} resources"),
            ));
        }
        let mut desired = Vec::with_capacity(resources.len());
        let mut seen = BTreeSet::new();
        for resource in resources {
            let id = resource.id();
            let spec = resource
                .kind
                .canonical(&resource.name, &resource.spec)
                .map_err(|e| Error::new(e.code, format!("{id}: {}", e.message)))?;
            if !seen.insert(id.clone()) {
                return Err(Error::invalid(format!("{id} is defined twice")));
            }
            desired.push(Resource { spec, ..resource });
        }
        desired.sort_by_key(Resource::id);

        let mut managed = BTreeMap::new();
        let mut created = BTreeSet::new();
        for owner in self.store.project_owners().await? {
            if owner.project == *project {
                created = owner.body.created.iter().cloned().collect();
            }
            for resource in &owner.body.resources {
                let id = resource.id();
                if owner.project == *project {
                    let made = owner.body.created.contains(&id);
                    managed.insert(id, made);
                } else if seen.contains(&id) {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("{id} belongs to project {}", owner.project),
                    ));
                }
            }
        }
        let base_version = self
            .store
            .project_versions(project, 1)
            .await?
            .pop()
            .map_or(0, |v| v.version);

        let policies = self.kinds.policies().await?;
        let mut current = BTreeMap::new();
        for id in seen.iter().chain(managed.keys()) {
            if current.contains_key(id) {
                continue;
            }
            if let Some(value) = self.kinds.current(id, &policies).await? {
                current.insert(id.clone(), value);
            }
        }
        let changes = project::diff(&desired, &current, &managed);
        let fingerprint = fingerprint(project, base_version, &desired, &current)?;
        let plan = Plan {
            project: project.clone(),
            base_version,
            fingerprint,
            changes,
            resources: desired,
        };
        Ok(Computed {
            plan,
            created,
            current,
        })
    }
}

/// A plan and what it was computed from that an apply needs again.
struct Computed {
    plan: Plan,
    /// What the project's current version says it created.
    created: BTreeSet<ResourceId>,
    /// The server's copies the plan read (compared form), by resource.
    current: BTreeMap<ResourceId, Value>,
}

/// 412: the plan was made before the server changed.
fn stale(project: &ProjectName) -> Error {
    Error::new(
        ErrorCode::VersionMismatch,
        format!(
            "project {project} changed on the server since this plan was made \
             (a version applied, or a resource it reads changed): plan again"
        ),
    )
}

/// SHA-256 over what a plan read, as hex.
fn fingerprint(
    project: &ProjectName,
    base_version: u64,
    desired: &[Resource],
    current: &BTreeMap<ResourceId, Value>,
) -> Result<String, Error> {
    let current: Vec<(&ResourceId, &Value)> = current.iter().collect();
    let read = serde_json::to_vec(&(project, base_version, desired, current))
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(crate::handlers::sha256_hex(&[&read]))
}
