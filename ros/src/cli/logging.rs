//! The log: `SARM_LOG` (an `EnvFilter`) or sarm's default, on stderr.
//!
//! Zenoh's orchestrator warns on every failed connect. While a robot's
//! trainer link retries a router that is down (every 2 s, possibly for
//! hours) that would be two lines per try, so each of its warning sites is
//! let through once a minute; sarm's own retry line says what is going on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{dynamic_filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets whose warnings repeat on every connection attempt.
const REPEATING: &str = "zenoh::net::runtime::orchestrator";
const REPEAT_EVERY: Duration = Duration::from_secs(60);

pub fn init() {
    let env = EnvFilter::try_from_env("SARM_LOG").unwrap_or_else(|_| {
        // The middleware libraries log discovery chatter at warn level
        // (Zenoh warns that gossip is off, which sarm's loopback configs do
        // on purpose); onnxruntime logs every graph transformation at info.
        // SARM_LOG=debug (or e.g. rustdds=warn, ort=info) shows it.
        EnvFilter::new(
            "info,rustdds=error,ros2_client=error,zenoh=warn,zenoh::net::routing::hat=error,ort=warn",
        )
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env.and(dynamic_filter_fn(|meta, _| not_repeated(meta))));
    tracing_subscriber::registry().with(layer).init();
}

/// False for a repeating middleware warning already shown in the last
/// minute. (A dynamic filter: asked on every event, its answer is not
/// cached per call site.)
fn not_repeated(meta: &Metadata<'_>) -> bool {
    if !meta.is_event() || *meta.level() != Level::WARN || !meta.target().starts_with(REPEATING) {
        return true;
    }
    static SHOWN: Mutex<Option<HashMap<Identifier, Instant>>> = Mutex::new(None);
    let mut shown = match SHOWN.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let shown = shown.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match shown.get(&meta.callsite()) {
        Some(at) if now.duration_since(*at) < REPEAT_EVERY => false,
        _ => {
            shown.insert(meta.callsite(), now);
            true
        }
    }
}
