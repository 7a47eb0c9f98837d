//! What one invocation of a handler may use, and the operator's caps on
//! what a handler may ask for.

use serde::{Deserialize, Serialize};

/// Per-handler limits; each is within the operator's [`Caps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HandlerLimits {
    /// Guest CPU time: counted while guest code runs, paused across host
    /// calls and the executor's turns.
    pub cpu_ms: u64,
    /// Wall time of the whole invocation, host calls included.
    pub wall_ms: u64,
    /// Linear memory; `memory.grow` past it fails (`-1`).
    pub memory_mb: u32,
    /// Outbound HTTP calls.
    pub http_calls: u32,
    /// Bytes of HTTP responses read, all calls together.
    pub response_bytes: u64,
}

impl Default for HandlerLimits {
    fn default() -> Self {
        HandlerLimits {
            cpu_ms: 50,
            wall_ms: 30_000,
            memory_mb: 64,
            http_calls: 50,
            response_bytes: 5 << 20,
        }
    }
}

/// The operator's ceilings (`keel serve --handler-*`); handlers' limits are
/// checked against them at upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub memory_mb: u32,
    pub http_calls: u32,
    pub response_bytes: u64,
    /// Invocations at once on this node (the pooling allocator's slots).
    pub instances: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            cpu_ms: 5_000,
            wall_ms: 300_000,
            memory_mb: 256,
            http_calls: 500,
            response_bytes: 64 << 20,
            instances: 256,
        }
    }
}

/// Which limit stopped an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Cpu,
    Wall,
    Memory,
    HttpCalls,
    ResponseBytes,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Cpu => "cpu_ms",
            Limit::Wall => "wall_ms",
            Limit::Memory => "memory_mb",
            Limit::HttpCalls => "http_calls",
            Limit::ResponseBytes => "response_bytes",
        }
    }
}

impl HandlerLimits {
    /// The first limit above its cap, named, or `Ok`.
    pub fn check(&self, caps: &Caps) -> Result<(), String> {
        let over = |name: &str, v: u64, cap: u64| -> Result<(), String> {
            match v {
                0 => Err(format!("limits.{name} must be at least 1")),
                v if v > cap => Err(format!(
                    "limits.{name} is {v}, above this server's cap of {cap}"
                )),
                _ => Ok(()),
            }
        };
        over("cpu_ms", self.cpu_ms, caps.cpu_ms)?;
        over("wall_ms", self.wall_ms, caps.wall_ms)?;
        over("memory_mb", self.memory_mb.into(), caps.memory_mb.into())?;
        over("http_calls", self.http_calls.into(), caps.http_calls.into())?;
        over("response_bytes", self.response_bytes, caps.response_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_above_their_caps_are_named() {
        let caps = Caps::default();
        assert_eq!(HandlerLimits::default().check(&caps), Ok(()));
        let big = HandlerLimits {
            memory_mb: 1024,
            ..HandlerLimits::default()
        };
        assert_eq!(
            big.check(&caps),
            Err("limits.memory_mb is 1024, above this server's cap of 256".into())
        );
        let zero = HandlerLimits {
            cpu_ms: 0,
            ..HandlerLimits::default()
        };
        assert_eq!(
            zero.check(&caps),
            Err("limits.cpu_ms must be at least 1".into())
        );
    }
}
