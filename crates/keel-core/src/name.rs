//! Namespace, queue, workflow, topic, subscription, source, endpoint, schedule,
//! channel, template, monitor, handler, project, integration and connection names, checked once at the edge so that every layer below
//! can trust them (they end up in SQL parameters, metric labels and log lines).

use std::fmt;
use std::sync::Arc;

use crate::{Error, ErrorCode};

const MAX_NAME_LEN: usize = 128;

fn check(kind: &str, name: &str) -> Result<(), Error> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid_char) {
        return Err(Error::new(
            ErrorCode::InvalidName,
            format!(
                "{kind} name {name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, A-Z, 0-9, '-', '_' or '.'"
            ),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($ty:ident, $kind:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(Arc<str>);

        impl $ty {
            pub fn new(name: &str) -> Result<Self, Error> {
                check($kind, name)?;
                Ok($ty(name.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Checked like any name at the edge: a stored or sent name that
        /// breaks the rules does not deserialize.
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                $ty::new(&text).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

name_type!(Namespace, "namespace");
name_type!(QueueName, "queue");
name_type!(WorkflowName, "workflow");
name_type!(TopicName, "topic");
name_type!(SubscriptionName, "subscription");
name_type!(SourceName, "source");
name_type!(EndpointName, "endpoint");
name_type!(ScheduleName, "schedule");
name_type!(ChannelName, "channel");
name_type!(TemplateName, "template");
name_type!(MonitorName, "monitor");
name_type!(HandlerName, "handler");
name_type!(ProjectName, "project");
name_type!(IntegrationName, "integration");
name_type!(ConnectionName, "connection");

/// A queue in its namespace: the unit of leasing, policy and statistics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueRef {
    pub namespace: Namespace,
    pub queue: QueueName,
}

impl fmt::Display for QueueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(QueueName::new("emails.v2-high_prio").is_ok());
        assert!(Namespace::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_invalid_name() {
        for bad in ["", "a b", "a/b", "ü", &"a".repeat(129)] {
            assert_eq!(
                QueueName::new(bad).unwrap_err().code,
                ErrorCode::InvalidName,
                "{bad:?}"
            );
        }
    }
}
