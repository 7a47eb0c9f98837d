//! Handlers: customers' code that Keel runs itself on jobs, events and
//! workflow steps (docs/design.md, "Handlers"). A handler is a named
//! sequence of immutable versions, each JavaScript (kept as source and as
//! the bytecode compiled at upload) or a WebAssembly module, with the
//! limits its invocations run within and the origins it may call. The
//! per-entity state its jobs read and write is in [`state`].

pub mod limits;
pub mod state;

use serde::{Deserialize, Serialize};

pub use limits::{Caps, HandlerLimits, Limit};
pub use state::ObjectRef;

use crate::{Error, HandlerName, Namespace, Timestamp};

/// Origins one handler may call, at most.
pub const MAX_ORIGINS: usize = 32;
/// A JavaScript handler's source, at most.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    Js,
    Wasm,
}

impl HandlerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Js => "js",
            HandlerKind::Wasm => "wasm",
        }
    }

    pub fn parse(text: &str) -> Result<HandlerKind, Error> {
        match text {
            "js" => Ok(HandlerKind::Js),
            "wasm" => Ok(HandlerKind::Wasm),
            other => Err(Error::internal(format!("unknown handler kind {other:?}"))),
        }
    }
}

/// An origin a handler may call: scheme, host and port, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `https://api.example.com` or `http://127.0.0.1:8080`: no path, query,
    /// user or fragment.
    pub fn parse(text: &str) -> Result<Origin, Error> {
        let bad = |why: &str| Error::invalid(format!("allow_http entry {text:?} {why}"));
        let url = url::Url::parse(text).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must be an origin: scheme, host and port only"));
        }
        let host = url.host_str().ok_or_else(|| bad("has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("has no port"))?;
        Ok(Origin {
            scheme: url.scheme().to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether `url` is on this origin.
    pub fn allows(&self, url: &url::Url) -> bool {
        url.scheme() == self.scheme
            && url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && url.port_or_known_default() == Some(self.port)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A version's settings beside its code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandlerSettings {
    #[serde(default)]
    pub limits: HandlerLimits,
    /// Origins (`scheme://host[:port]`) its `fetch` may reach, through the
    /// SSRF guard as well.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// Jobs of one object may run at once (readers), instead of one at a
    /// time; such a handler's state writes are refused.
    #[serde(default)]
    pub shared: bool,
}

impl HandlerSettings {
    /// The checked origins; the limits against the server's caps.
    pub fn check(&self, caps: &Caps) -> Result<Vec<Origin>, Error> {
        self.limits.check(caps).map_err(Error::invalid)?;
        if self.allow_http.len() > MAX_ORIGINS {
            return Err(Error::invalid(format!(
                "allow_http lists {} origins; at most {MAX_ORIGINS}",
                self.allow_http.len()
            )));
        }
        self.allow_http.iter().map(|o| Origin::parse(o)).collect()
    }
}

/// A version to store: the compiled artifact (JavaScript's bytecode, or the
/// module itself) and what it was made from.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub kind: HandlerKind,
    /// SHA-256 of the kind, the code and the settings, hex: an upload with
    /// the same hash as the current version makes no new one.
    pub hash: String,
    /// JavaScript's source (a module's bytes are the artifact).
    pub source: Option<String>,
    pub artifact: Vec<u8>,
    pub settings: HandlerSettings,
}

impl NewVersion {
    /// The version as stored under `version`.
    pub fn stored(
        self,
        namespace: &Namespace,
        name: &HandlerName,
        version: u32,
        now: Timestamp,
    ) -> HandlerVersion {
        HandlerVersion {
            namespace: namespace.clone(),
            name: name.clone(),
            version,
            kind: self.kind,
            hash: self.hash,
            source: self.source,
            artifact: self.artifact,
            settings: self.settings,
            created_at: now,
        }
    }
}

/// One immutable version of a handler.
#[derive(Clone, Debug)]
pub struct HandlerVersion {
    pub namespace: Namespace,
    pub name: HandlerName,
    pub version: u32,
    pub kind: HandlerKind,
    pub hash: String,
    pub source: Option<String>,
    pub artifact: Vec<u8>,
    pub settings: HandlerSettings,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        let o = Origin::parse("https://API.example.com").unwrap();
        assert_eq!(o.to_string(), "https://api.example.com:443");
        assert!(o.allows(&url::Url::parse("https://api.example.com/v1/x?y=1").unwrap()));
        assert!(o.allows(&url::Url::parse("https://api.example.com:443/").unwrap()));
        assert!(!o.allows(&url::Url::parse("http://api.example.com/").unwrap()));
        assert!(!o.allows(&url::Url::parse("https://api.example.com:8443/").unwrap()));
        assert!(!o.allows(&url::Url::parse("https://evil.example.com/").unwrap()));
        let local = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.allows(&url::Url::parse("http://127.0.0.1:8080/hook").unwrap()));
        for bad in [
            "ftp://x.example",
            "https://x.example/path",
            "https://u:p@x.example",
            "https://x.example/?q",
            "x.example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_check_their_limits_and_origins() {
        let caps = Caps::default();
        let ok = HandlerSettings {
            allow_http: vec!["https://api.example.com".into()],
            ..HandlerSettings::default()
        };
        assert_eq!(ok.check(&caps).unwrap().len(), 1);
        let bad = HandlerSettings {
            allow_http: vec!["https://api.example.com/x".into()],
            ..HandlerSettings::default()
        };
        assert!(bad.check(&caps).unwrap_err().message.contains("origin"));
    }
}
