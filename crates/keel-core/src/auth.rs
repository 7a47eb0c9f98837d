//! Who may do what. An API token carries a [`Grant`]: a [`Role`], the
//! namespaces it reaches and, optionally, the resources inside them. Each
//! endpoint needs one kind of [`Access`]; [`Role::allows`] is the one table
//! joining the two, which the server enforces, docs/api.md shows and the
//! role × endpoint test checks. Token secrets and their hashing live in the
//! engine (this crate does no cryptography).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode, Namespace};

/// A token's role, from least to most powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every read in its namespaces.
    Reader,
    /// A reader that also enqueues, publishes, starts runs and signals them.
    Publisher,
    /// Leases and settles jobs, fetches and commits events, reads jobs.
    Worker,
    /// Everything in its namespaces except tokens, audit and quotas.
    Operator,
    /// Everything, in every namespace.
    Admin,
}

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Any read of a namespace (GET).
    Read,
    /// Reading jobs and queues: what a worker needs to see its work.
    ReadJobs,
    /// Enqueue, publish, start a run, signal a run.
    Publish,
    /// Lease, heartbeat, complete, fail, ack; fetch and commit.
    Work,
    /// Change how a namespace behaves: policies, pauses, cancels, redrives,
    /// definitions, schedules, subscriptions, endpoints, sources, topics.
    Operate,
    /// Tokens, the audit log, quotas, and what spans every namespace.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Reader,
        Role::Publisher,
        Role::Worker,
        Role::Operator,
        Role::Admin,
    ];

    /// The role table.
    pub const fn allows(self, access: Access) -> bool {
        use Access as A;
        match self {
            Role::Reader => matches!(access, A::Read | A::ReadJobs),
            Role::Publisher => matches!(access, A::Read | A::ReadJobs | A::Publish),
            Role::Worker => matches!(access, A::ReadJobs | A::Work),
            Role::Operator => !matches!(access, A::Admin),
            Role::Admin => true,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Publisher => "publisher",
            Role::Worker => "worker",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "role {text:?} is not one of reader, publisher, worker, operator, admin"
                ))
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Access {
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadJobs => "read jobs",
            Access::Publish => "publish",
            Access::Work => "work",
            Access::Operate => "operate",
            Access::Admin => "admin",
        }
    }
}

/// The kinds of resource a grant can name (`queue:emails*`).
pub const RESOURCE_KINDS: [&str; 15] = [
    "queue",
    "topic",
    "subscription",
    "workflow",
    "source",
    "endpoint",
    "schedule",
    "channel",
    "template",
    // A recipient's in-app inbox: `inbox:u1` is a token for one browser.
    "inbox",
    "monitor",
    "handler",
    // An object's state, by its type: `object:customer` reaches every
    // customer's.
    "object",
    // OAuth2: `connection:user-42` is a token that calls as one end user.
    "integration",
    "connection",
];

/// At most this many namespaces or resource patterns in one grant.
pub const MAX_GRANT_ENTRIES: usize = 100;

/// What a token may do: its role, the namespaces it reaches (`["*"]` for
/// all) and, when given, the only resources it reaches inside them
/// (`kind:name`, a trailing `*` matching any suffix).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
}

impl Grant {
    /// Checks the grant's shape: 400 naming the field for anything off.
    pub fn validate(&self) -> Result<(), Error> {
        if self.namespaces.is_empty() || self.namespaces.len() > MAX_GRANT_ENTRIES {
            return Err(Error::invalid(format!(
                "namespaces must list 1 to {MAX_GRANT_ENTRIES} namespaces, or [\"*\"] for all"
            )));
        }
        let all = self.namespaces.iter().any(|n| n == "*");
        if all && self.namespaces.len() > 1 {
            return Err(Error::invalid(
                "namespaces: \"*\" (every namespace) stands alone",
            ));
        }
        if !all {
            for ns in &self.namespaces {
                Namespace::new(ns)
                    .map_err(|e| Error::invalid(format!("namespaces: {}", e.message)))?;
            }
        }
        if self.role == Role::Admin && (!all || self.resources.is_some()) {
            return Err(Error::invalid(
                "an admin token reaches everything: namespaces must be [\"*\"] and resources absent",
            ));
        }
        if let Some(resources) = &self.resources {
            if resources.is_empty() || resources.len() > MAX_GRANT_ENTRIES {
                return Err(Error::invalid(format!(
                    "resources must list 1 to {MAX_GRANT_ENTRIES} patterns, or be absent for all"
                )));
            }
            for pattern in resources {
                check_pattern(pattern)?;
            }
        }
        Ok(())
    }

    pub fn reaches_every_namespace(&self) -> bool {
        self.namespaces.iter().any(|n| n == "*")
    }

    pub fn reaches_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// True when the grant names no resources (it reaches all of them).
    pub fn reaches_all_resources(&self) -> bool {
        self.resources.is_none()
    }

    /// Whether `kind:name` matches one of the grant's resource patterns.
    pub fn reaches_resource(&self, kind: &str, name: &str) -> bool {
        let Some(patterns) = &self.resources else {
            return true;
        };
        patterns.iter().any(|p| {
            let Some((pkind, pname)) = p.split_once(':') else {
                return false;
            };
            pkind == kind
                && match pname.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == pname,
                }
        })
    }
}

/// What a request reaches, as the route and its path say (before any
/// store access).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Spans every namespace (tokens, metrics).
    All,
    /// Spans a namespace: its lists, its jobs and runs by id.
    Namespace(&'a str),
    /// One named resource of a namespace.
    Resource {
        namespace: &'a str,
        kind: &'static str,
        name: &'a str,
    },
    /// A job the caller holds a lease on: the lease token it presents was
    /// handed out on a queue the caller reached.
    Leased(&'a str),
}

impl Grant {
    /// Whether this grant may make a request that needs `access` and
    /// reaches `reach`: 403 `forbidden` saying what is missing.
    pub fn permit(&self, access: Access, reach: Reach<'_>) -> Result<(), Error> {
        let forbidden = |why: String| Err(Error::new(ErrorCode::Forbidden, why));
        if !self.role.allows(access) {
            return forbidden(format!(
                "a {} token may not {} here",
                self.role,
                access.as_str()
            ));
        }
        let namespace = match reach {
            Reach::All => {
                if self.reaches_every_namespace() && self.reaches_all_resources() {
                    return Ok(());
                }
                return forbidden("this spans every namespace; the token does not".to_owned());
            }
            Reach::Namespace(ns) | Reach::Leased(ns) | Reach::Resource { namespace: ns, .. } => ns,
        };
        if !self.reaches_namespace(namespace) {
            return forbidden(format!("the token does not reach namespace {namespace}"));
        }
        match reach {
            Reach::Resource { kind, name, .. } if !self.reaches_resource(kind, name) => {
                forbidden(format!("the token does not reach {kind} {name}"))
            }
            Reach::Namespace(_) if !self.reaches_all_resources() => forbidden(
                "the token reaches only some resources; this spans the namespace".to_owned(),
            ),
            _ => Ok(()),
        }
    }
}

fn check_pattern(pattern: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("resources: {pattern:?} {why}"),
        )
    };
    let (kind, name) = pattern
        .split_once(':')
        .ok_or_else(|| bad("is not kind:name (queue:emails, topic:orders*)"))?;
    if !RESOURCE_KINDS.contains(&kind) {
        return Err(bad(&format!(
            "names no kind of resource; kinds are {}",
            RESOURCE_KINDS.join(", ")
        )));
    }
    let stem = name.strip_suffix('*').unwrap_or(name);
    if stem.contains('*') || (stem.is_empty() && name.is_empty()) {
        return Err(bad("may end with one * and has no other"));
    }
    if stem.len() > 128
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("has a name with characters no resource name has"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, namespaces: &[&str], resources: Option<&[&str]>) -> Grant {
        Grant {
            role,
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            resources: resources.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn each_role_reaches_exactly_its_row() {
        use Access as A;
        let all = [
            A::Read,
            A::ReadJobs,
            A::Publish,
            A::Work,
            A::Operate,
            A::Admin,
        ];
        let rows: [(Role, &[Access]); 5] = [
            (Role::Reader, &[A::Read, A::ReadJobs]),
            (Role::Publisher, &[A::Read, A::ReadJobs, A::Publish]),
            (Role::Worker, &[A::ReadJobs, A::Work]),
            (
                Role::Operator,
                &[A::Read, A::ReadJobs, A::Publish, A::Work, A::Operate],
            ),
            (Role::Admin, &all),
        ];
        for (role, allowed) in rows {
            for access in all {
                assert_eq!(
                    role.allows(access),
                    allowed.contains(&access),
                    "{role} / {access:?}"
                );
            }
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn patterns_match_by_kind_and_prefix() {
        let g = grant(
            Role::Worker,
            &["acme"],
            Some(&["queue:emails*", "topic:orders"]),
        );
        assert!(g.validate().is_ok());
        assert!(g.reaches_resource("queue", "emails"));
        assert!(g.reaches_resource("queue", "emails-eu"));
        assert!(!g.reaches_resource("queue", "email"));
        assert!(!g.reaches_resource("topic", "emails"));
        assert!(g.reaches_resource("topic", "orders"));
        assert!(!g.reaches_resource("topic", "orders2"));
        assert!(g.reaches_namespace("acme") && !g.reaches_namespace("globex"));
        let open = grant(Role::Reader, &["*"], None);
        assert!(open.reaches_resource("queue", "x") && open.reaches_namespace("any"));
    }

    #[test]
    fn permit_checks_role_then_namespace_then_resource() {
        let g = grant(Role::Worker, &["acme"], Some(&["queue:emails*"]));
        let queue = |ns, name| Reach::Resource {
            namespace: ns,
            kind: "queue",
            name,
        };
        assert!(g.permit(Access::Work, queue("acme", "emails-eu")).is_ok());
        assert!(g.permit(Access::Work, Reach::Leased("acme")).is_ok());
        for (access, reach, words) in [
            (
                Access::Operate,
                queue("acme", "emails"),
                "worker token may not operate",
            ),
            (Access::Work, queue("globex", "emails"), "namespace globex"),
            (Access::Work, queue("acme", "billing"), "queue billing"),
            (
                Access::ReadJobs,
                Reach::Namespace("acme"),
                "only some resources",
            ),
            (Access::Work, Reach::Leased("globex"), "namespace globex"),
            (Access::ReadJobs, Reach::All, "every namespace"),
        ] {
            let e = g.permit(access, reach).expect_err("refused");
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert!(e.message.contains(words), "{words}: {}", e.message);
        }
        let reader = grant(Role::Reader, &["*"], None);
        assert!(reader.permit(Access::Read, Reach::All).is_ok());
        assert!(reader.permit(Access::Read, Reach::Namespace("x")).is_ok());
    }

    #[test]
    fn bad_grants_are_refused_naming_the_field() {
        let cases: [(Grant, &str); 8] = [
            (grant(Role::Reader, &[], None), "namespaces"),
            (grant(Role::Reader, &["*", "acme"], None), "stands alone"),
            (grant(Role::Reader, &["no spaces"], None), "namespaces"),
            (grant(Role::Admin, &["acme"], None), "admin"),
            (grant(Role::Admin, &["*"], Some(&["queue:a"])), "admin"),
            (grant(Role::Reader, &["a"], Some(&["queues:a"])), "kind"),
            (grant(Role::Reader, &["a"], Some(&["queue:a*b*"])), "one *"),
            (grant(Role::Reader, &["a"], Some(&[])), "resources"),
        ];
        for (g, words) in cases {
            let e = g.validate().expect_err("refused");
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.message.contains(words), "{words}: {}", e.message);
        }
        assert!(
            grant(Role::Reader, &["a"], Some(&["queue:*"]))
                .validate()
                .is_ok()
        );
    }
}
