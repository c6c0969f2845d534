//! The robot's end of the trainer link.
//!
//! Every record gets the robot's next sequence number, is appended to the
//! spool, then published on `sarm/<robot_id>/<kind>` (CDR payload, the
//! rmw_zenoh-style attachment whose sequence number is the record's). The
//! put never blocks (congestion drops it; the sink recovers it from the
//! spool). A queryable on `sarm/<robot_id>/spool` replays spooled records;
//! acknowledgements on `sarm/<robot_id>/ack` trim the spool; a heartbeat on
//! `sarm/<robot_id>/head` tells the sink how far the robot has got.
//!
//! The link starts with its spool: records are numbered and kept from the
//! first one, whether or not its Zenoh session is open yet. On a session of
//! its own ([`LinkSession::Connect`]) it opens in the background, retrying
//! while the trainer is unreachable, and the sink then fetches what was
//! made meanwhile from the spool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::query::Queryable;
use zenoh::{Session, Wait};

use super::protocol::{Ack, Heartbeat, SpoolQuery};
use super::record::{Record, RecordKind};
use super::spool::{Appended, Recovered, Spool, SpoolConfig};
use super::TrainerError;
use crate::msg::{EpisodeEvent, Progress, RosMessage, SampleWeight};
use crate::zenoh_link::rmw::{gid, Attachment};
use crate::zenoh_link::{now_ns, open_session_retrying, TrainerKeys, ZenohSessionConfig};

/// Settings of the robot's end.
#[derive(Debug, Clone)]
pub struct RobotLinkConfig {
    pub robot_id: String,
    pub spool: SpoolConfig,
    /// Heartbeat period (also how often the spool is synced to disk).
    pub heartbeat: Duration,
    /// The reward model (its bundle path), for the sink's parquet metadata.
    pub model: String,
}

/// Messages that carry the record's sequence number.
pub trait Sequenced: RosMessage {
    const KIND: RecordKind;
    fn set_seq(&mut self, seq: u64);
    fn episode(&self) -> i64;
}

impl Sequenced for Progress {
    const KIND: RecordKind = RecordKind::Progress;
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
    fn episode(&self) -> i64 {
        self.episode_index
    }
}

impl Sequenced for SampleWeight {
    const KIND: RecordKind = RecordKind::Weight;
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
    fn episode(&self) -> i64 {
        self.episode_index
    }
}

impl Sequenced for crate::msg::PolicyEvent {
    const KIND: RecordKind = RecordKind::Policy;
    fn set_seq(&mut self, _seq: u64) {}
    fn episode(&self) -> i64 {
        self.episode_index
    }
}

impl Sequenced for EpisodeEvent {
    const KIND: RecordKind = RecordKind::Episode;
    fn set_seq(&mut self, _seq: u64) {}
    fn episode(&self) -> i64 {
        self.episode_index
    }
}

/// Counters of the robot's end.
#[derive(Debug, Default)]
pub struct RobotLinkStats {
    pub sent: AtomicU64,
    pub publish_errors: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub spool_rejected: AtomicU64,
    pub acked_through: AtomicU64,
    /// Set by the node: outputs dropped before they reached the link
    /// (reported to the sink in the heartbeat).
    pub unrecorded: AtomicU64,
    /// Routers and peers the session is connected to (see `zenoh_links`).
    pub zenoh_links: AtomicU64,
}

/// The Zenoh session the link runs on.
pub enum LinkSession {
    /// An open session shared with others (the node's ROS 2 session on
    /// Zenoh); the link declares its keys on it now.
    Shared(Session),
    /// A session of the link's own, opened in the background and retried
    /// every `retry` until it opens: a robot whose trainer (router) is not
    /// up yet starts anyway, spools its records, and delivers them when
    /// the session opens. The link closes this session when dropped.
    Connect {
        config: ZenohSessionConfig,
        retry: Duration,
    },
}

struct Shared {
    spool: Mutex<Spool>,
    next_seq: AtomicU64,
    stats: RobotLinkStats,
    model: String,
    /// The link's Zenoh side, once its session is open.
    wire: OnceLock<Wire>,
    stop: AtomicBool,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        match self.spool.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// The link's declarations on an open session.
struct Wire {
    session: Session,
    /// Opened by the link (closed with it), not shared.
    owned: bool,
    publishers: Vec<(RecordKind, Publisher<'static>)>,
    gid: [u8; 16],
    _queryable: Queryable<()>,
    _acks: Subscriber<()>,
}

pub struct RobotLink {
    keys: TrainerKeys,
    shared: Arc<Shared>,
    recovered: Recovered,
    heartbeat: Option<JoinHandle<()>>,
    connector: Option<JoinHandle<()>>,
}

impl RobotLink {
    /// Opens the spool (where this run carries on) and starts the link on
    /// `session`: a shared session's declarations are made now (their
    /// errors returned); an own session opens in the background. Records
    /// are spooled from now on whether or not the session is open yet.
    pub fn start(session: LinkSession, cfg: RobotLinkConfig) -> Result<Self, TrainerError> {
        let keys = TrainerKeys::new(&cfg.robot_id)?;
        let (spool, recovered) = Spool::open(cfg.spool.clone())?;
        if recovered.next_seq > 0 {
            tracing::info!(
                "trainer link: carrying on at seq {}, episode {}; {} records of an earlier run not acknowledged yet",
                recovered.next_seq,
                recovered.next_episode,
                recovered.records,
            );
        }
        let stats = RobotLinkStats::default();
        stats.acked_through.store(
            recovered.acked_through.map_or(0, |a| a + 1),
            Ordering::Relaxed,
        );
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            next_seq: AtomicU64::new(recovered.next_seq),
            stats,
            model: cfg.model.clone(),
            wire: OnceLock::new(),
            stop: AtomicBool::new(false),
        });
        let mut connector = None;
        match session {
            LinkSession::Shared(session) => {
                let wire = Wire::declare(session, false, &keys, &shared)?;
                let _ = shared.wire.set(wire);
            }
            LinkSession::Connect { config, retry } => {
                let (keys, shared) = (keys.clone(), shared.clone());
                // Fails now on a config that cannot work (not retried).
                config.to_config()?;
                connector = Some(
                    std::thread::Builder::new()
                        .name("sarm-trainer-connect".into())
                        .spawn(move || connect_loop(&config, retry, &keys, &shared))
                        .map_err(|e| TrainerError::Io(e.to_string()))?,
                );
            }
        }
        let heartbeat = {
            let (hb_shared, key) = (shared.clone(), keys.head());
            let period = cfg.heartbeat;
            std::thread::Builder::new()
                .name("sarm-trainer-hb".into())
                .spawn(move || heartbeat_loop(&key, &hb_shared, period))
                .map_err(|e| {
                    // The connector, if any, gives up too.
                    shared.stop.store(true, Ordering::Relaxed);
                    TrainerError::Io(e.to_string())
                })?
        };
        Ok(RobotLink {
            keys,
            shared,
            recovered,
            heartbeat: Some(heartbeat),
            connector,
        })
    }

    /// Where this run carries on (sequence number, episode index).
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    pub fn robot_id(&self) -> &str {
        self.keys.robot_id()
    }

    pub fn stats(&self) -> &RobotLinkStats {
        &self.shared.stats
    }

    /// Whether the link's session is open (records are spooled either way).
    pub fn session_open(&self) -> bool {
        self.shared.wire.get().is_some()
    }

    /// Zenoh routers and peers the link's session is connected to, as of
    /// the last heartbeat (0: nothing reachable; records wait in the spool).
    pub fn zenoh_links(&self) -> u64 {
        self.shared.stats.zenoh_links.load(Ordering::Relaxed)
    }

    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Relaxed)
    }

    /// Records not acknowledged by the sink yet.
    pub fn unacked(&self) -> u64 {
        self.next_seq()
            .saturating_sub(self.shared.stats.acked_through.load(Ordering::Relaxed))
    }

    /// Numbers, spools and publishes a message (publishing only once the
    /// session is open; until then the spool keeps it for the sink).
    /// `Ok(false)`: the spool was full and its policy rejected the record
    /// (counted and reported).
    pub fn send<T: Sequenced>(&mut self, msg: &mut T) -> Result<bool, TrainerError> {
        let seq = self.shared.next_seq.load(Ordering::Relaxed);
        msg.set_seq(seq);
        let source_ns = now_ns();
        let record = Record::new(seq, T::KIND, msg.episode(), source_ns, msg)
            .map_err(|e| TrainerError::Encode(e.to_string()))?;
        match self.shared.spool().append(&record)? {
            Appended::Stored => {}
            Appended::StoredDroppingOldest(n) => {
                self.shared
                    .stats
                    .spool_dropped
                    .fetch_add(n, Ordering::Relaxed);
                tracing::error!(
                    "trainer link: spool full, {n} unacknowledged records dropped (trainer.spool.when_full = drop_oldest)"
                );
            }
            Appended::Rejected => {
                let n = self
                    .shared
                    .stats
                    .spool_rejected
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        "trainer link: spool full, {n} new records not kept (trainer.spool.when_full = drop_newest)"
                    );
                }
                return Ok(false);
            }
        }
        self.shared.next_seq.store(seq + 1, Ordering::Relaxed);
        if let Some(wire) = self.shared.wire.get() {
            let attachment = Attachment {
                sequence_number: seq as i64,
                source_timestamp_ns: source_ns,
                gid: wire.gid,
            };
            if let Some((_, p)) = wire.publishers.iter().find(|(k, _)| *k == T::KIND) {
                if let Err(e) = p.put(record.cdr).attachment(attachment.to_bytes()).wait() {
                    // Spooled: the sink gets it from there.
                    self.shared
                        .stats
                        .publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("trainer link: put failed: {e}");
                }
            }
        }
        self.shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Syncs the spool to disk now.
    pub fn sync(&self) -> Result<(), TrainerError> {
        Ok(self.shared.spool().sync()?)
    }
}

impl Drop for RobotLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        // A connector still inside Zenoh's open (a config with an endless
        // connect timeout) is left to finish on its own: it sees `stop`
        // and closes what it opened.
        if let Some(h) = self.connector.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if let Err(e) = self.shared.spool().sync() {
            tracing::error!("trainer link: syncing the spool: {e}");
        }
        if let Some(wire) = self.shared.wire.get() {
            if wire.owned {
                let _ = wire.session.close().wait();
            }
        }
    }
}

impl Wire {
    /// Declares the link's publishers, spool queryable and ack subscriber.
    fn declare(
        session: Session,
        owned: bool,
        keys: &TrainerKeys,
        shared: &Arc<Shared>,
    ) -> Result<Wire, TrainerError> {
        let mut publishers = Vec::new();
        for kind in RecordKind::ALL {
            let key = keys.key(kind);
            let p = session
                .declare_publisher(key.clone())
                .congestion_control(CongestionControl::Drop)
                .wait()
                .map_err(|e| TrainerError::zenoh("publisher", &key, e))?;
            publishers.push((kind, p));
        }
        let gid = gid(&format!("{}/{}", session.zid(), keys.spool()));

        // The callbacks hold the link weakly: the declarations live in
        // `Shared`, and a strong reference would keep it alive for ever.
        let q_shared = Arc::downgrade(shared);
        let spool_key = keys.spool();
        let queryable = session
            .declare_queryable(spool_key.clone())
            .callback(move |query| {
                let Some(q_shared) = q_shared.upgrade() else {
                    return;
                };
                let asked = SpoolQuery::parse(query.parameters().as_str());
                let records = match asked {
                    Ok(q) => q_shared.spool().read_range(q.from, q.until, q.limit),
                    Err(e) => {
                        tracing::warn!("trainer link: bad spool query: {e}");
                        return;
                    }
                };
                match records {
                    Ok(records) => {
                        for r in records {
                            let key = query.key_expr().clone();
                            if query.reply(key, r.to_frame()).wait().is_ok() {
                                q_shared.stats.replayed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => tracing::error!("trainer link: reading the spool: {e}"),
                }
            })
            .wait()
            .map_err(|e| TrainerError::zenoh("queryable", &spool_key, e))?;

        let a_shared = Arc::downgrade(shared);
        let ack_key = keys.ack();
        let acks = session
            .declare_subscriber(ack_key.clone())
            .callback(move |sample| {
                let Some(a_shared) = a_shared.upgrade() else {
                    return;
                };
                match Ack::from_bytes(&sample.payload().to_bytes()) {
                    Ok(ack) => {
                        a_shared.spool().ack(ack.through);
                        a_shared
                            .stats
                            .acked_through
                            .fetch_max(ack.through + 1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!("trainer link: bad acknowledgement: {e}"),
                }
            })
            .wait()
            .map_err(|e| TrainerError::zenoh("subscriber", &ack_key, e))?;
        Ok(Wire {
            session,
            owned,
            publishers,
            gid,
            _queryable: queryable,
            _acks: acks,
        })
    }
}

/// Opens the link's own session (retrying) and declares the link on it.
fn connect_loop(
    config: &ZenohSessionConfig,
    retry: Duration,
    keys: &TrainerKeys,
    shared: &Arc<Shared>,
) {
    let session = match open_session_retrying(config, retry, &shared.stop, "trainer link") {
        Ok(Some(session)) => session,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("trainer link: {e}; records are spooled but not sent");
            return;
        }
    };
    if shared.stop.load(Ordering::Relaxed) {
        let _ = session.close().wait();
        return;
    }
    match Wire::declare(session.clone(), true, keys, shared) {
        Ok(wire) => {
            tracing::info!(
                "trainer link: session open; what was made before (seq < {}) reaches the sink from the spool",
                shared.next_seq.load(Ordering::Relaxed)
            );
            let _ = shared.wire.set(wire);
        }
        Err(e) => {
            tracing::error!("trainer link: {e}; records are spooled but not sent");
            let _ = session.close().wait();
        }
    }
}

/// Counts the routers and peers the session reaches, and says when that
/// drops to none or comes back (a client's session stays open while its
/// router is gone, and reconnects by itself).
fn note_links(wire: &Wire, shared: &Shared) {
    let info = wire.session.info();
    let n = (info.routers_zid().wait().count() + info.peers_zid().wait().count()) as u64;
    let before = shared.stats.zenoh_links.swap(n, Ordering::Relaxed);
    if n == 0 && before > 0 {
        tracing::warn!(
            "trainer link: no Zenoh router or peer reachable; records are spooled until one is"
        );
    } else if n > 0 && before == 0 {
        tracing::info!("trainer link: {n} Zenoh router(s)/peer(s) reachable");
    }
}

fn heartbeat_loop(key: &str, shared: &Shared, period: Duration) {
    let tick = Duration::from_millis(20).min(period);
    let mut waited = period;
    while !shared.stop.load(Ordering::Relaxed) {
        if waited >= period {
            waited = Duration::ZERO;
            // The spool is synced whether or not the session is open.
            let next_seq = shared.next_seq.load(Ordering::Relaxed);
            let (first_seq, acked_through, spool_bytes) = {
                let mut s = shared.spool();
                if let Err(e) = s.sync() {
                    tracing::error!("trainer link: syncing the spool: {e}");
                }
                // An empty spool can replay nothing before `next_seq`.
                let first = s.first_seq().or((next_seq > 0).then_some(next_seq));
                (first, s.acked_through(), s.bytes())
            };
            if let Some(wire) = shared.wire.get() {
                note_links(wire, shared);
                let hb = Heartbeat {
                    next_seq,
                    first_seq,
                    acked_through,
                    dropped: shared.stats.spool_dropped.load(Ordering::Relaxed),
                    rejected: shared.stats.spool_rejected.load(Ordering::Relaxed),
                    unrecorded: shared.stats.unrecorded.load(Ordering::Relaxed),
                    spool_bytes,
                    model: shared.model.clone(),
                };
                let _ = wire
                    .session
                    .put(key, hb.to_bytes())
                    .congestion_control(CongestionControl::Drop)
                    .wait();
            }
        }
        std::thread::sleep(tick);
        waited += tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::WhenFull;
    use crate::zenoh_link::open_session;

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_link_counts_the_peers_it_reaches_as_they_come_and_go() {
        let dir = std::env::temp_dir().join(format!("sarm-robot-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A listener on an ephemeral loopback port, and the robot's client of it.
        let trainer = open_session(&ZenohSessionConfig::loopback(vec![], vec![])).unwrap();
        let endpoint = trainer
            .info()
            .locators()
            .wait()
            .first()
            .map(|l| l.to_string())
            .expect("the trainer listens");
        let robot = open_session(&ZenohSessionConfig {
            mode: Some("client".into()),
            connect: vec![endpoint],
            scouting: Some(false),
            ..Default::default()
        })
        .unwrap();
        let link = RobotLink::start(
            LinkSession::Shared(robot.clone()),
            RobotLinkConfig {
                robot_id: "r".into(),
                spool: SpoolConfig {
                    dir: dir.clone(),
                    max_bytes: 1 << 20,
                    when_full: WhenFull::DropOldest,
                },
                heartbeat: Duration::from_millis(50),
                model: "m".into(),
            },
        )
        .unwrap();
        assert!(link.session_open());
        wait_for("the trainer is counted", || link.zenoh_links() == 1);
        trainer.close().wait().unwrap();
        wait_for("the trainer's going is seen", || link.zenoh_links() == 0);
        drop(link);
        robot.close().wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
