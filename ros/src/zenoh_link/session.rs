//! Opening a Zenoh session.
//!
//! The session config is a Zenoh JSON5 file (the format `zenohd` and
//! rmw_zenoh use), so routers, TLS and access control are configured the
//! way Zenoh documents them. Without a file the session is a peer with
//! Zenoh's defaults. The overrides cover what a launch file or a test needs
//! to change without writing a file.

use std::net::{IpAddr, SocketAddr};
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
    /// Multicast and gossip scouting: `None` = the file's or Zenoh's
    /// defaults (multicast on every multicast interface, gossip);
    /// `Some(false)` = off, for a closed setup; `Some(true)` = on, and when
    /// every listen endpoint names an IP address, only where the session
    /// listens: multicast scouting on those interfaces (off if they are all
    /// loopback, which carries no multicast) and no gossip (gossiped peers
    /// could be reachable only through other interfaces).
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

    /// A peer that listens and scouts only on the interfaces with these
    /// addresses (e.g. the DDS participant's `transport.interfaces`): a TCP
    /// listener bound to each address (ephemeral port), multicast scouting
    /// only on those interfaces (none on loopback), no gossip, and `connect`
    /// as given. Loopback only, it finds others only through `connect` (or
    /// being connected to). No addresses: a peer with Zenoh's defaults.
    ///
    /// What Zenoh does not let us restrict: a peer found by multicast
    /// scouting is connected to at the locators it advertises, which may lie
    /// on other interfaces of that peer.
    pub fn peer_on_interfaces(interfaces: &[IpAddr], connect: Vec<String>) -> Self {
        if interfaces.is_empty() {
            return ZenohSessionConfig {
                mode: Some("peer".into()),
                connect,
                ..Default::default()
            };
        }
        ZenohSessionConfig {
            file: None,
            mode: Some("peer".into()),
            listen: interfaces
                .iter()
                .map(|ip| format!("tcp/{}", SocketAddr::new(*ip, 0)))
                .collect(),
            connect,
            scouting: Some(true),
        }
    }

    /// The interfaces (by address) all listen endpoints are bound to, or
    /// `None` when one of them is not bound to an IP address (a wildcard, a
    /// host name, a file's endpoints).
    fn listen_addresses(&self) -> Option<Vec<IpAddr>> {
        if self.listen.is_empty() {
            return None;
        }
        self.listen
            .iter()
            .map(|endpoint| {
                // proto/address[?metadata][#config]
                let address = endpoint.split(['?', '#']).next()?.split_once('/')?.1;
                let ip = address.parse::<SocketAddr>().ok()?.ip();
                (!ip.is_unspecified()).then_some(ip)
            })
            .collect()
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
        match (self.scouting, self.listen_addresses()) {
            (Some(true), Some(bound)) => {
                let multicast: Vec<String> = bound
                    .iter()
                    .filter(|ip| !ip.is_loopback())
                    .map(IpAddr::to_string)
                    .collect();
                set(
                    "scouting/multicast/enabled",
                    (!multicast.is_empty()).to_string(),
                )?;
                if !multicast.is_empty() {
                    set(
                        "scouting/multicast/interface",
                        json_string(&multicast.join(",")),
                    )?;
                }
                set("scouting/gossip/enabled", "false".into())?;
            }
            (Some(on), _) => {
                set("scouting/multicast/enabled", on.to_string())?;
                set("scouting/gossip/enabled", on.to_string())?;
            }
            (None, _) => {}
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

    /// The keys that say where a session listens and scouts.
    fn scouting_keys(config: &Config) -> Vec<(&'static str, String)> {
        [
            "listen/endpoints",
            "scouting/multicast/enabled",
            "scouting/multicast/interface",
            "scouting/gossip/enabled",
        ]
        .into_iter()
        .map(|k| (k, config.get_json(k).unwrap_or_default()))
        .collect()
    }

    #[test]
    fn a_peer_on_interfaces_listens_and_scouts_only_there() {
        let lan: IpAddr = "192.0.2.2".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let config = ZenohSessionConfig::peer_on_interfaces(&[lo, lan], vec![])
            .to_config()
            .unwrap();
        assert_eq!(
            scouting_keys(&config),
            [
                (
                    "listen/endpoints",
                    r#"["tcp/127.0.0.1:0","tcp/192.0.2.2:0"]"#.into()
                ),
                ("scouting/multicast/enabled", "true".into()),
                ("scouting/multicast/interface", r#""192.0.2.2""#.into()),
                ("scouting/gossip/enabled", "false".into()),
            ]
        );
        // Loopback carries no multicast: no scouting at all.
        let config = ZenohSessionConfig::peer_on_interfaces(&[lo], vec![])
            .to_config()
            .unwrap();
        assert_eq!(
            scouting_keys(&config)[1],
            ("scouting/multicast/enabled", "false".into())
        );
        // No addresses: Zenoh's defaults, as before.
        let config = ZenohSessionConfig::peer_on_interfaces(&[], vec![])
            .to_config()
            .unwrap();
        assert_eq!(
            scouting_keys(&config),
            scouting_keys(&ZenohSessionConfig::default().to_config().unwrap())
        );
    }

    #[test]
    fn scouting_on_with_a_wildcard_listener_is_unrestricted() {
        let cfg = ZenohSessionConfig {
            listen: vec!["tcp/127.0.0.1:0".into(), "tcp/[::]:0".into()],
            scouting: Some(true),
            ..Default::default()
        };
        let keys = scouting_keys(&cfg.to_config().unwrap());
        assert_eq!(keys[1], ("scouting/multicast/enabled", "true".into()));
        assert_eq!(keys[3], ("scouting/gossip/enabled", "true".into()));
    }

    /// The sockets a loopback-restricted peer opens, seen by the OS. In a
    /// child process of this test binary, so that no other test's sockets
    /// are counted.
    #[test]
    fn a_peer_on_loopback_binds_only_loopback() {
        const CHILD: &str = "SARM_TEST_SOCKETS_CHILD";
        let name = "zenoh_link::session::tests::a_peer_on_loopback_binds_only_loopback";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("sockets checked:"),
                "child failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let before = inet_sockets();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let session = open_session(&ZenohSessionConfig::peer_on_interfaces(&[lo], vec![])).unwrap();
        let opened: Vec<_> = inet_sockets()
            .into_iter()
            .filter(|s| !before.contains(s))
            .collect();
        assert!(
            opened
                .iter()
                .any(|(proto, addr)| proto == "tcp" && addr.ip() == lo),
            "no TCP listener on 127.0.0.1: {opened:?}"
        );
        for (proto, addr) in &opened {
            assert!(addr.ip().is_loopback(), "{proto} socket bound to {addr}");
        }
        println!("sockets checked: {opened:?}");
        drop(session);
    }

    /// (protocol, local address) of this process's TCP and UDP sockets.
    fn inet_sockets() -> Vec<(String, SocketAddr)> {
        let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().to_string();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        let mut sockets = Vec::new();
        for proto in ["tcp", "tcp6", "udp", "udp6"] {
            let table = std::fs::read_to_string(format!("/proc/self/net/{proto}")).unwrap();
            for line in table.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 && inodes.contains(f[9]) {
                    sockets.push((proto.trim_end_matches('6').to_string(), proc_addr(f[1])));
                }
            }
        }
        sockets
    }

    /// `0100007F:1F90` (IPv4) or 32 hex digits:port (IPv6), as /proc/net shows them.
    fn proc_addr(s: &str) -> SocketAddr {
        let (ip, port) = s.split_once(':').unwrap();
        let port = u16::from_str_radix(port, 16).unwrap();
        let words: Vec<u32> = (0..ip.len() / 8)
            .map(|i| {
                u32::from_str_radix(&ip[8 * i..8 * i + 8], 16)
                    .unwrap()
                    .swap_bytes()
            })
            .collect();
        let ip: IpAddr = match words.as_slice() {
            [a] => std::net::Ipv4Addr::from(*a).into(),
            [a, b, c, d] => {
                let v6 = std::net::Ipv6Addr::from(
                    (u128::from(*a) << 96)
                        | (u128::from(*b) << 64)
                        | (u128::from(*c) << 32)
                        | u128::from(*d),
                );
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => panic!("unexpected /proc/net address {s}"),
        };
        SocketAddr::new(ip, port)
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
