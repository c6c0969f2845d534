//! Opening a Zenoh session.
//!
//! The session config is a Zenoh JSON5 file (the format `zenohd` and
//! rmw_zenoh use), so routers, TLS and access control are configured the
//! way Zenoh documents them. Without a file the session is a peer with
//! Zenoh's defaults. The overrides cover what a launch file or a test needs
//! to change without writing a file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zenoh::{Config, Session, Wait};

use super::ZenohError;

/// How to open the session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZenohSessionConfig {
    /// A Zenoh JSON5 config file; `None` = Zenoh's defaults in peer mode.
    pub file: Option<PathBuf>,
    /// `peer`, `client` or `router`; overrides the file.
    pub mode: Option<String>,
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7447`; override the file when non-empty.
    pub listen: Vec<String>,
    /// Endpoints to connect to; override the file when non-empty.
    pub connect: Vec<String>,
    /// Multicast and gossip scouting; `Some(false)` for a closed loopback setup.
    pub scouting: Option<bool>,
}

impl ZenohSessionConfig {
    /// A peer that only talks over the given loopback endpoints, with
    /// scouting off: what tests and the embedded default use. With no
    /// `listen` endpoint it listens on an ephemeral loopback port (Zenoh's
    /// default would be every interface).
    pub fn loopback(listen: Vec<String>, connect: Vec<String>) -> Self {
        let listen = if listen.is_empty() {
            vec!["tcp/127.0.0.1:0".to_string()]
        } else {
            listen
        };
        ZenohSessionConfig {
            file: None,
            mode: Some("peer".into()),
            listen,
            connect,
            scouting: Some(false),
        }
    }

    /// The Zenoh config this describes.
    pub fn to_config(&self) -> Result<Config, ZenohError> {
        let mut config = match &self.file {
            Some(path) => Config::from_file(path).map_err(|e| ZenohError::Config {
                what: path.display().to_string(),
                message: e.to_string(),
            })?,
            None => Config::default(),
        };
        let mut set = |key: &str, value: String| {
            config
                .insert_json5(key, &value)
                .map_err(|e| ZenohError::Config {
                    what: format!("key {key}"),
                    message: e.to_string(),
                })
        };
        match (&self.mode, &self.file) {
            (Some(mode), _) => set("mode", json_string(mode))?,
            (None, None) => set("mode", json_string("peer"))?,
            (None, Some(_)) => {}
        }
        if !self.listen.is_empty() {
            set("listen/endpoints", json_list(&self.listen))?;
        }
        if !self.connect.is_empty() {
            set("connect/endpoints", json_list(&self.connect))?;
        }
        if let Some(on) = self.scouting {
            set("scouting/multicast/enabled", on.to_string())?;
            set("scouting/gossip/enabled", on.to_string())?;
        }
        // Publication caches (and rmw_zenoh's transient-local topics) need
        // timestamps on samples.
        set("timestamping/enabled", "true".into())?;
        Ok(config)
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// Opens a session.
pub fn open_session(cfg: &ZenohSessionConfig) -> Result<Session, ZenohError> {
    let config = cfg.to_config()?;
    zenoh::open(config)
        .wait()
        .map_err(|e| ZenohError::Open(e.to_string()))
}

/// Opens a session, retrying every `retry` until it opens or `stop` is set
/// (`Ok(None)`). A client whose router is down fails to open at all (Zenoh's
/// client default); a robot must still start and keep its records, so the
/// trainer link and the sink wait for the router this way. A config that
/// does not parse is an error at once; other failures (router unreachable,
/// TLS handshake refused) are logged with Zenoh's reason and retried: the
/// first at WARN, then once a minute.
pub fn open_session_retrying(
    cfg: &ZenohSessionConfig,
    retry: Duration,
    stop: &AtomicBool,
    what: &str,
) -> Result<Option<Session>, ZenohError> {
    let config = cfg.to_config()?;
    let retry = retry.max(Duration::from_millis(10));
    let started = Instant::now();
    let mut failures = 0u64;
    let mut last_said: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match zenoh::open(config.clone()).wait() {
            Ok(session) => {
                if failures > 0 {
                    tracing::info!(
                        "{what}: Zenoh session open after {failures} failed tries ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(Some(session));
            }
            Err(e) => {
                failures += 1;
                if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_said = Some(Instant::now());
                    tracing::warn!(
                        "{what}: cannot open the Zenoh session yet ({e}); retrying every {:.1} s",
                        retry.as_secs_f64()
                    );
                }
            }
        }
        // Sleep in short steps so that `stop` is seen promptly.
        let until = Instant::now() + retry;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(retry));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_the_file() {
        let cfg = ZenohSessionConfig {
            file: Some("/nonexistent/zenoh.json5".into()),
            ..Default::default()
        };
        let err = cfg.to_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/zenoh.json5"), "{err}");
    }

    #[test]
    fn a_bad_endpoint_is_refused_with_its_key() {
        let cfg = ZenohSessionConfig::loopback(vec!["not an endpoint".into()], vec![]);
        let err = cfg.to_config().unwrap_err().to_string();
        assert!(err.contains("listen/endpoints"), "{err}");
    }

    #[test]
    fn a_client_without_a_router_retries_until_stopped() {
        // Port 9 (discard) on loopback: nothing listens, so the client
        // cannot open; the opener keeps trying and returns when stopped.
        let cfg = ZenohSessionConfig {
            mode: Some("client".into()),
            connect: vec!["tcp/127.0.0.1:9".into()],
            scouting: Some(false),
            ..Default::default()
        };
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let opened = std::thread::scope(|s| {
            let t =
                s.spawn(|| open_session_retrying(&cfg, Duration::from_millis(50), &stop, "test"));
            std::thread::sleep(Duration::from_millis(400));
            assert!(!t.is_finished(), "gave up instead of retrying");
            stop.store(true, Ordering::Relaxed);
            t.join().expect("opener thread")
        });
        assert!(matches!(opened, Ok(None)), "{opened:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_bad_config_is_not_retried() {
        let cfg = ZenohSessionConfig {
            connect: vec!["not an endpoint".into()],
            ..Default::default()
        };
        let stop = AtomicBool::new(false);
        let err = open_session_retrying(&cfg, Duration::from_millis(10), &stop, "test")
            .map(|s| s.is_some())
            .unwrap_err()
            .to_string();
        assert!(err.contains("connect/endpoints"), "{err}");
    }
}
