//! The trainer link's TLS and access control, checked with the committed
//! configs (launch/zenoh/trainer-{router,sink,robot}.json5): the test only
//! replaces their certificate paths (placeholders under /etc/sarm/tls/) and
//! their endpoints (loopback, a free port), and makes the certificates
//! itself with rcgen in a temporary folder. In-process: a router, the sink
//! (CN `sarm-sink`) subscribed to `sarm/**`, robots with their own
//! certificates. One more test runs launch/zenoh/make-trainer-certs.sh
//! (where openssl is installed) and uses what it makes.
//!
//! Negative checks are made deterministic with a marker: the denied message
//! is sent first, then an allowed one from the same session; Zenoh keeps a
//! session's messages in order, so when the marker has arrived a message
//! that was let through would have arrived before it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sarm_ros::msg::{Progress, RosMessage};
use sarm_ros::zenoh_link::{NativePublisher, TrainerKeys, ZenohSessionConfig};
use zenoh::{Config, Session, Wait};

/// How long a message that should arrive may take.
const ARRIVE: Duration = Duration::from_secs(10);
/// How long to keep listening for a message that must not arrive, from
/// another session than the marker's (no ordering between sessions).
const GRACE: Duration = Duration::from_millis(500);
/// Where the committed configs keep their certificates.
const PLACEHOLDER_DIR: &str = "/etc/sarm/tls/";

fn zenoh_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("launch")
        .join("zenoh")
}

// ---------------------------------------------------------------- certificates

/// A CA and the leaf certificates of one test, in a temporary folder that
/// is removed when this is dropped.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn new_ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name = distinguished_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

impl Pki {
    /// A new, empty temporary folder.
    fn new_empty(what: &str) -> Pki {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sarm-trainer-tls-{what}-{}-{:?}-{nanos}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temporary certificate folder");
        Pki { dir }
    }

    /// `ca.pem`; `router` (server, SAN 127.0.0.1 and localhost); client
    /// certificates `sink` (CN sarm-sink), `aloha-01`, `aloha-02`,
    /// `intruder` (CN not in the ACL); and `rogue-aloha-01`: CN aloha-01,
    /// signed by another CA.
    fn new() -> Pki {
        let pki = Pki::new_empty("rcgen");

        let (ca_pem, ca) = new_ca("sarm test CA");
        pki.write("ca.pem", &ca_pem);
        pki.leaf(&ca, "router", "trainer-host", true);
        pki.leaf(&ca, "sink", "sarm-sink", false);
        pki.leaf(&ca, "aloha-01", "aloha-01", false);
        pki.leaf(&ca, "aloha-02", "aloha-02", false);
        pki.leaf(&ca, "intruder", "intruder", false);
        let (_, rogue) = new_ca("rogue CA");
        pki.leaf(&rogue, "rogue-aloha-01", "aloha-01", false);
        pki
    }

    /// The certificates launch/zenoh/make-trainer-certs.sh makes (router
    /// for 127.0.0.1, robots aloha-01 and aloha-02), under the names `new`
    /// uses; `None` when openssl is not installed.
    fn from_script() -> Option<Pki> {
        let openssl = std::process::Command::new("openssl")
            .arg("version")
            .output();
        if !openssl.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let pki = Pki::new_empty("script");
        let out = pki.dir.join("out");
        let run = std::process::Command::new("sh")
            .arg(zenoh_dir().join("make-trainer-certs.sh"))
            .arg(&out)
            .args(["127.0.0.1", "aloha-01", "aloha-02"])
            .output()
            .expect("running make-trainer-certs.sh");
        assert!(
            run.status.success(),
            "make-trainer-certs.sh failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        for (from, to) in [
            ("trainer/ca.pem", "ca.pem"),
            ("trainer/router.pem", "router.pem"),
            ("trainer/router.key", "router.key"),
            ("trainer/sink.pem", "sink.pem"),
            ("trainer/sink.key", "sink.key"),
            ("aloha-01/robot.pem", "aloha-01.pem"),
            ("aloha-01/robot.key", "aloha-01.key"),
            ("aloha-02/robot.pem", "aloha-02.pem"),
            ("aloha-02/robot.key", "aloha-02.key"),
        ] {
            std::fs::copy(out.join(from), pki.dir.join(to))
                .unwrap_or_else(|e| panic!("make-trainer-certs.sh made no {from}: {e}"));
        }
        Some(pki)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("writing a test certificate");
    }

    fn leaf(&self, issuer: &Issuer<'static, KeyPair>, name: &str, cn: &str, server: bool) {
        let sans = if server {
            vec!["127.0.0.1".to_string(), "localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).expect("leaf parameters");
        params.distinguished_name = distinguished_name(cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, issuer).expect("signing a leaf");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

// --------------------------------------------------------------------- configs

/// A committed config with its endpoints replaced; its TLS paths are
/// checked to be the documented placeholders, then pointed at `tls`.
fn config(file: &str, listen: Vec<String>, connect: Vec<String>, tls: &[(&str, String)]) -> Config {
    let mut config = ZenohSessionConfig {
        file: Some(zenoh_dir().join(file)),
        listen,
        connect,
        ..Default::default()
    }
    .to_config()
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    for (key, value) in tls {
        let key = format!("transport/link/tls/{key}");
        let committed = config
            .get_json(&key)
            .unwrap_or_else(|e| panic!("{file}: {key}: {e}"));
        assert!(
            committed.starts_with(&format!("\"{PLACEHOLDER_DIR}")),
            "{file}: {key} is {committed}, expected a path under {PLACEHOLDER_DIR}"
        );
        let value = serde_json::Value::String(value.clone()).to_string();
        config
            .insert_json5(&key, &value)
            .unwrap_or_else(|e| panic!("{file}: setting {key}: {e}"));
    }
    config
}

fn set(config: &mut Config, key: &str, json5: &str) {
    config
        .insert_json5(key, json5)
        .unwrap_or_else(|e| panic!("setting {key} to {json5}: {e}"));
}

fn open(what: &str, config: Config) -> Session {
    zenoh::open(config)
        .wait()
        .unwrap_or_else(|e| panic!("{what}: cannot open the session: {e}"))
}

/// The router (trainer-router.json5) listening on `endpoint`.
fn router(pki: &Pki, endpoint: &str) -> Session {
    open(
        "the router (trainer-router.json5)",
        config(
            "trainer-router.json5",
            vec![endpoint.to_string()],
            vec![],
            &[
                ("root_ca_certificate", pki.path("ca.pem")),
                ("listen_certificate", pki.path("router.pem")),
                ("listen_private_key", pki.path("router.key")),
            ],
        ),
    )
}

/// A robot's config (trainer-robot.json5) with the certificate `cert`.
fn robot_config(pki: &Pki, endpoint: &str, cert: &str) -> Config {
    config(
        "trainer-robot.json5",
        vec![],
        vec![endpoint.to_string()],
        &[
            ("root_ca_certificate", pki.path("ca.pem")),
            ("connect_certificate", pki.path(&format!("{cert}.pem"))),
            ("connect_private_key", pki.path(&format!("{cert}.key"))),
        ],
    )
}

// --------------------------------------------------------------------- fixture

/// What a subscriber received: (key, payload).
struct Inbox {
    rx: Receiver<(String, Vec<u8>)>,
}

impl Inbox {
    fn subscribe(session: &Session, key: &str) -> (zenoh::pubsub::Subscriber<()>, Inbox) {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let subscriber = session
            .declare_subscriber(key)
            .callback(move |sample| {
                let item = (
                    sample.key_expr().as_str().to_string(),
                    sample.payload().to_bytes().into_owned(),
                );
                if let Ok(tx) = tx.lock() {
                    let _ = tx.send(item);
                }
            })
            .wait()
            .unwrap_or_else(|e| panic!("declaring a subscriber on {key}: {e}"));
        (subscriber, Inbox { rx })
    }

    /// Everything received until a sample with `payload` (included), or
    /// `None` if it did not come within `within`.
    fn until(&self, payload: &str, within: Duration) -> Option<Vec<(String, Vec<u8>)>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(item) => {
                    let done = item.1 == payload.as_bytes();
                    seen.push(item);
                    if done {
                        return Some(seen);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Everything received within `within`.
    fn drain(&self, within: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Ok(item) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(item);
        }
        seen
    }
}

fn show(seen: &[(String, Vec<u8>)]) -> Vec<String> {
    seen.iter()
        .map(|(k, p)| format!("{k}: {}", String::from_utf8_lossy(p)))
        .collect()
}

/// Certificates, the router and the sink on a free loopback port.
struct Trainer {
    inbox: Inbox,
    endpoint: String,
    // Dropped in this order: the sink before the router, the certificates last.
    _subscriber: zenoh::pubsub::Subscriber<()>,
    sink: Session,
    _router: Session,
    pki: Pki,
}

impl Trainer {
    fn start() -> Trainer {
        Trainer::start_with(Pki::new())
    }

    fn start_with(pki: Pki) -> Trainer {
        let endpoint = format!("tls/127.0.0.1:{}", common::free_port());
        let router = router(&pki, &endpoint);
        let sink = open(
            "the sink (trainer-sink.json5)",
            config(
                "trainer-sink.json5",
                vec![],
                vec![endpoint.clone()],
                &[
                    ("root_ca_certificate", pki.path("ca.pem")),
                    ("connect_certificate", pki.path("sink.pem")),
                    ("connect_private_key", pki.path("sink.key")),
                ],
            ),
        );
        let (subscriber, inbox) = Inbox::subscribe(&sink, "sarm/**");
        Trainer {
            inbox,
            endpoint,
            _subscriber: subscriber,
            sink,
            _router: router,
            pki,
        }
    }

    fn robot(&self, cert: &str) -> Session {
        open(
            &format!("robot with certificate {cert}"),
            robot_config(&self.pki, &self.endpoint, cert),
        )
    }

    /// Puts `payload` on `key` from `robot` until the sink has it (the
    /// robot learns of the sink's subscription shortly after connecting).
    fn put_until_received(&self, robot: &Session, key: &str, payload: &str) {
        put_until_heard(robot, key, payload, &self.inbox, "the sink");
    }

    /// The marker `payload` on `key` reaches the sink; returns what came
    /// with it and up to `grace` after it.
    fn marker(&self, robot: &Session, key: &str, payload: &str, grace: Duration) -> Vec<String> {
        put(robot, key, payload);
        let mut seen = self.inbox.until(payload, ARRIVE).unwrap_or_else(|| {
            panic!("the allowed marker {payload:?} on {key} did not reach the sink in {ARRIVE:?}")
        });
        seen.extend(self.inbox.drain(grace));
        show(&seen)
    }
}

/// Puts `payload` on `key` from `from` until `inbox` (`whose`) has it.
fn put_until_heard(from: &Session, key: &str, payload: &str, inbox: &Inbox, whose: &str) {
    let deadline = Instant::now() + ARRIVE;
    loop {
        put(from, key, payload);
        if inbox.until(payload, Duration::from_millis(100)).is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{payload:?} on {key} did not reach {whose} in {ARRIVE:?}"
        );
    }
}

fn put(session: &Session, key: &str, payload: &str) {
    session
        .put(key, payload)
        .wait()
        .unwrap_or_else(|e| panic!("put on {key}: {e}"));
}

// ----------------------------------------------------------------------- tests

#[test]
fn a_robot_publishes_on_its_own_keys_only() {
    let trainer = Trainer::start();
    let robot = trainer.robot("aloha-01");

    // (a) Its own key space reaches the sink, with the real trainer-link
    // publisher (CDR Progress with attachment) and with plain puts.
    let keys = TrainerKeys::new("aloha-01").expect("robot id");
    trainer.put_until_received(&robot, &keys.progress(), "aloha-01 is heard");
    let mut publisher =
        NativePublisher::<Progress>::new(&robot, keys.progress()).expect("trainer publisher");
    let msg = Progress {
        robot_id: "aloha-01".into(),
        episode_index: 7,
        frame_index: 42,
        seq: 1234,
        progress: 0.5,
        ..Default::default()
    };
    // (A declared publisher drops samples while it knows of no matching
    // subscriber, so it needs the router to tell robots of the sink's.)
    let deadline = Instant::now() + ARRIVE;
    let got = 'got: loop {
        assert!(
            Instant::now() < deadline,
            "no Progress from the trainer-link publisher reached the sink in {ARRIVE:?}"
        );
        publisher.publish(&msg).expect("publishing Progress");
        let until = Instant::now() + Duration::from_millis(100);
        while let Ok((key, payload)) = trainer
            .inbox
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if let Ok(p) = Progress::from_cdr(&payload) {
                assert_eq!(key, keys.progress());
                break 'got p;
            }
        }
    };
    assert_eq!(got, msg, "the sink decodes what the robot sent");
    for key in [keys.weight(), keys.episode(), keys.head()] {
        let seen = trainer.marker(&robot, &key, &format!("on {key}"), Duration::ZERO);
        assert!(seen.iter().any(|s| s.starts_with(&key)), "{seen:?}");
    }

    // (b) Another robot's key space, a wildcard that spans other robots,
    // and a look-alike prefix are dropped by the router, while
    // the same session's next allowed put arrives.
    let foreign = TrainerKeys::new("aloha-02").expect("robot id");
    let denied = [
        foreign.progress(),
        foreign.episode(),
        "sarm/*/progress".to_string(),
        "sarm/aloha-01-impostor/progress".to_string(),
    ];
    for (i, key) in denied.iter().enumerate() {
        put(&robot, key, &format!("denied {i}"));
    }
    let seen = trainer.marker(&robot, &keys.progress(), "marker", GRACE);
    assert!(
        seen.iter().all(|s| !s.contains(": denied")),
        "aloha-01 published outside sarm/aloha-01/**: the sink got {seen:?}"
    );
}

/// Every reply to a query, as `key: payload`, once the query is done.
fn replies(rx: zenoh::handlers::FifoChannelHandler<zenoh::query::Reply>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(reply) = rx.recv() {
        if let Ok(sample) = reply.result() {
            out.push(format!(
                "{}: {}",
                sample.key_expr(),
                String::from_utf8_lossy(&sample.payload().to_bytes())
            ));
        }
    }
    out
}

#[test]
fn a_robot_answers_queries_and_shows_liveliness_on_its_own_keys_only() {
    // The sink asks a robot's spool for missed records (a queryable), and
    // may watch robots' liveliness tokens.
    let trainer = Trainer::start();
    // The sink watches robots come and go.
    let (tx, watched) = channel();
    let tx = Mutex::new(tx);
    let _watcher = trainer
        .sink
        .liveliness()
        .declare_subscriber("sarm/**")
        .callback(move |sample| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(sample.key_expr().as_str().to_string());
            }
        })
        .wait()
        .expect("the sink's liveliness subscriber");
    let robot = trainer.robot("aloha-01");
    let queryable = |key: &str, payload: &'static str| {
        robot
            .declare_queryable(key)
            .callback(move |query| {
                let _ = query.reply(query.key_expr().clone(), payload).wait();
            })
            .wait()
            .unwrap_or_else(|e| panic!("declaring a queryable on {key}: {e}"))
    };
    let token = |key: &str| {
        robot
            .liveliness()
            .declare_token(key)
            .wait()
            .unwrap_or_else(|e| panic!("declaring a liveliness token on {key}: {e}"))
    };
    // The forged ones first: the same session's later declarations arrive
    // after them, so once the genuine ones are seen these would have been.
    let _forged_queryable = queryable("sarm/aloha-02/spool", "forged");
    let _forged_token = token("sarm/aloha-02/alive");
    let _queryable = queryable("sarm/aloha-01/spool", "genuine");
    let _token = token("sarm/aloha-01/alive");

    // The sink queries one robot at a time: the router checks a reply
    // against the query's key expression, so a reply to `sarm/*/spool`
    // would be denied at the robot's ingress (rule `sarm/aloha-01/**`).
    let sink = &trainer.sink;
    let query = |key: &str| {
        replies(
            sink.get(key)
                .timeout(Duration::from_secs(2))
                .wait()
                .unwrap_or_else(|e| panic!("the sink's query on {key}: {e}")),
        )
    };
    let alive = || {
        replies(
            sink.liveliness()
                .get("sarm/*/alive")
                .timeout(Duration::from_secs(2))
                .wait()
                .expect("the sink's liveliness query"),
        )
    };
    let deadline = Instant::now() + ARRIVE;
    loop {
        let (answers, tokens) = (query("sarm/aloha-01/spool"), alive());
        if !answers.is_empty() && tokens.iter().any(|t| t.starts_with("sarm/aloha-01/")) {
            assert_eq!(
                answers,
                ["sarm/aloha-01/spool: genuine"],
                "replies to the sink"
            );
            let keys: Vec<_> = tokens
                .iter()
                .map(|t| t.split(':').next().unwrap_or(""))
                .collect();
            assert_eq!(
                keys,
                ["sarm/aloha-01/alive"],
                "liveliness tokens the sink sees"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not see aloha-01's queryable and token in {ARRIVE:?}: {answers:?} {tokens:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let forged = query("sarm/aloha-02/spool");
    assert!(
        forged.is_empty(),
        "aloha-01 answered for aloha-02: {forged:?}"
    );
    let first = watched
        .recv_timeout(ARRIVE)
        .expect("the sink's liveliness subscriber saw no token");
    let rest: Vec<String> = watched.try_iter().collect();
    assert_eq!(
        (first.as_str(), rest),
        ("sarm/aloha-01/alive", vec![]),
        "liveliness tokens the sink's subscriber saw"
    );
}

#[test]
fn acknowledgements_reach_their_robot_only() {
    let trainer = Trainer::start();
    let sink = &trainer.sink;
    let (k1, k2) = (
        TrainerKeys::new("aloha-01").expect("robot id"),
        TrainerKeys::new("aloha-02").expect("robot id"),
    );
    let aloha01 = trainer.robot("aloha-01");
    let aloha02 = trainer.robot("aloha-02");
    let (_s1, acks01) = Inbox::subscribe(&aloha01, &k1.ack());
    // aloha-02 tries to follow aloha-01's acknowledgements too.
    let (_s2, snooped) = Inbox::subscribe(&aloha02, &k1.ack());
    let (_s3, acks02) = Inbox::subscribe(&aloha02, &k2.ack());

    put_until_heard(sink, &k1.ack(), "ack 1", &acks01, "aloha-01");
    // A declared publisher works too (it has to learn of the robot's
    // subscription first: the `sink-acks` egress rule).
    let ack02 = sink
        .declare_publisher(k2.ack())
        .wait()
        .expect("the sink's ack publisher");
    let deadline = Instant::now() + ARRIVE;
    loop {
        ack02.put("ack 2").wait().expect("publishing an ack");
        if acks02.until("ack 2", Duration::from_millis(100)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink's declared ack publisher did not reach aloha-02 in {ARRIVE:?}"
        );
    }
    // aloha-01 forges an acknowledgement for aloha-02 (denied: not its
    // prefix), then the sink acknowledges both; aloha-02 gets only its own.
    put(&aloha01, &k2.ack(), "forged ack");
    put(sink, &k1.ack(), "ack 1 again");
    put(sink, &k2.ack(), "ack 2 marker");
    let mut got = acks02.until("ack 2 marker", ARRIVE).unwrap_or_else(|| {
        panic!(
            "the sink's acknowledgement on {} did not reach aloha-02",
            k2.ack()
        )
    });
    got.extend(acks02.drain(GRACE));
    got.extend(snooped.drain(Duration::ZERO));
    let got = show(&got);
    assert!(
        got.iter()
            .all(|s| !s.contains("forged") && !s.contains("ack 1")),
        "aloha-02 received what was not its own: {got:?}"
    );
}

#[test]
fn a_robot_cannot_listen_to_the_trainer_link() {
    let trainer = Trainer::start();
    let aloha01 = trainer.robot("aloha-01");
    let aloha02 = trainer.robot("aloha-02");
    let (_sub, eavesdropper) = Inbox::subscribe(&aloha02, "sarm/**");
    trainer.put_until_received(&aloha01, "sarm/aloha-01/progress", "for the sink only");
    // aloha-02 is a known robot that may publish, not receive.
    trainer.put_until_received(&aloha02, "sarm/aloha-02/progress", "aloha-02 is heard");
    trainer.marker(
        &aloha01,
        "sarm/aloha-01/progress",
        "again for the sink",
        GRACE,
    );
    // (Its own puts are delivered to it locally, without the router.)
    let heard: Vec<_> = eavesdropper
        .drain(GRACE)
        .into_iter()
        .filter(|(key, _)| !key.starts_with("sarm/aloha-02/"))
        .collect();
    assert!(
        heard.is_empty(),
        "aloha-02 received trainer-link traffic: {:?}",
        show(&heard)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let trainer = Trainer::start();
    // CN aloha-01, but signed by a CA the router does not trust: the TLS
    // handshake fails, and a client gives up opening.
    let result = zenoh::open(robot_config(
        &trainer.pki,
        &trainer.endpoint,
        "rogue-aloha-01",
    ))
    .wait();
    let Err(e) = result else {
        panic!("a robot with a certificate from another CA opened a session to the router");
    };
    eprintln!("refused as expected: {e}");
    // The same config with the real certificate connects (the refusal is
    // about the certificate, not the config).
    let robot = trainer.robot("aloha-01");
    trainer.put_until_received(&robot, "sarm/aloha-01/progress", "the real aloha-01");
}

#[test]
fn a_session_without_a_client_certificate_is_refused() {
    let trainer = Trainer::start();
    // It trusts the router's CA but shows no certificate of its own.
    let mut cfg = robot_config(&trainer.pki, &trainer.endpoint, "aloha-01");
    set(&mut cfg, "transport/link/tls/enable_mtls", "false");
    set(&mut cfg, "transport/link/tls/connect_certificate", "null");
    set(&mut cfg, "transport/link/tls/connect_private_key", "null");
    let result = zenoh::open(cfg).wait();
    let Err(e) = result else {
        panic!("a session without a client certificate opened a session to the router");
    };
    eprintln!("refused as expected: {e}");
}

#[test]
fn a_certificate_not_named_in_the_acl_may_do_nothing() {
    let trainer = Trainer::start();
    // Signed by the right CA, so it connects; its CN is in no ACL subject.
    let intruder = trainer.robot("intruder");
    let (_sub, intruder_inbox) = Inbox::subscribe(&intruder, "sarm/**");
    // Once aloha-01, connected after the intruder, is heard, a session the
    // router did not restrict would know of the sink's subscription too.
    let robot = trainer.robot("aloha-01");
    trainer.put_until_received(&robot, "sarm/aloha-01/progress", "aloha-01 is heard");
    for (i, key) in [
        "sarm/intruder/progress",
        "sarm/aloha-01/progress",
        "sarm/aloha-02/episode",
    ]
    .iter()
    .enumerate()
    {
        put(&intruder, key, &format!("denied {i}"));
    }
    let seen = trainer.marker(&robot, "sarm/aloha-01/progress", "marker", GRACE);
    assert!(
        seen.iter().all(|s| !s.contains(": denied")),
        "a certificate with an unknown CN published: the sink got {seen:?}"
    );
    // Nor does it receive anything (its own puts come back to it locally).
    let heard: Vec<_> = intruder_inbox
        .drain(GRACE)
        .into_iter()
        .filter(|(_, payload)| !payload.starts_with(b"denied"))
        .collect();
    assert!(
        heard.is_empty(),
        "a certificate with an unknown CN received: {:?}",
        show(&heard)
    );
}

#[test]
fn make_trainer_certs_sh_makes_certificates_that_work() {
    let Some(pki) = Pki::from_script() else {
        eprintln!("openssl is not installed: launch/zenoh/make-trainer-certs.sh not checked");
        return;
    };
    let trainer = Trainer::start_with(pki);
    let robot = trainer.robot("aloha-01");
    trainer.put_until_received(&robot, "sarm/aloha-01/progress", "aloha-01 is heard");
    put(&robot, "sarm/aloha-02/progress", "denied");
    let seen = trainer.marker(&robot, "sarm/aloha-01/progress", "marker", GRACE);
    assert!(
        seen.iter().all(|s| !s.contains(": denied")),
        "aloha-01 published on aloha-02's keys: {seen:?}"
    );
}

#[test]
fn trainer_configs_keep_every_node_behind_the_router() {
    // What the tests above rely on, in the committed files: TLS only, mTLS
    // on, and robots and sink as clients without a listener (a peer could
    // be reached directly, bypassing the router's access control).
    let load = |file: &str| {
        ZenohSessionConfig {
            file: Some(zenoh_dir().join(file)),
            ..Default::default()
        }
        .to_config()
        .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let get = |cfg: &Config, file: &str, key: &str| {
        cfg.get_json(key)
            .unwrap_or_else(|e| panic!("{file}: {key}: {e}"))
            .replace(char::is_whitespace, "")
    };
    for file in [
        "trainer-router.json5",
        "trainer-robot.json5",
        "trainer-sink.json5",
    ] {
        let cfg = load(file);
        assert_eq!(
            get(&cfg, file, "transport/link/protocols"),
            r#"["tls"]"#,
            "{file}"
        );
        assert_eq!(
            get(&cfg, file, "transport/link/tls/enable_mtls"),
            "true",
            "{file}"
        );
        assert_eq!(
            get(&cfg, file, "transport/link/tls/verify_name_on_connect"),
            "true",
            "{file}"
        );
        assert_eq!(
            get(&cfg, file, "scouting/multicast/enabled"),
            "false",
            "{file}"
        );
        assert_eq!(
            get(&cfg, file, "scouting/gossip/enabled"),
            "false",
            "{file}"
        );
        if file == "trainer-router.json5" {
            assert_eq!(get(&cfg, file, "mode"), r#""router""#);
            assert_eq!(get(&cfg, file, "access_control/enabled"), "true");
            assert_eq!(
                get(&cfg, file, "access_control/default_permission"),
                r#""deny""#
            );
            let listen = get(&cfg, file, "listen/endpoints");
            assert!(listen.contains("tls/"), "{file}: {listen}");
        } else {
            assert_eq!(get(&cfg, file, "mode"), r#""client""#, "{file}");
            let listen = get(&cfg, file, "listen/endpoints");
            assert!(
                listen == "[]" || listen == "{}" || listen.contains("\"client\":[]"),
                "{file}: a client must not listen, found {listen}"
            );
        }
    }
}

// ------------------------------------------------- the real processes, router last

/// A copy of the committed `file` in `pki`'s folder, its certificate
/// placeholders (`/etc/sarm/tls/<name>`) pointed at `pki`'s files.
fn config_file(pki: &Pki, file: &str, certs: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(zenoh_dir().join(file))
        .unwrap_or_else(|e| panic!("reading {file}: {e}"));
    for (placeholder, ours) in certs {
        let committed = format!("\"{PLACEHOLDER_DIR}{placeholder}\"");
        assert!(text.contains(&committed), "{file} has no {committed}");
        let ours = serde_json::Value::String(pki.path(ours)).to_string();
        text = text.replace(&committed, &ours);
    }
    let path = pki.dir.join(file);
    std::fs::write(&path, text).expect("writing a config copy");
    path
}

/// Bytes in a folder's files (the robot's spool).
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `sarm link-check` (a robot) and `sarm sink`, each started with its
/// committed config (trainer-robot.json5, trainer-sink.json5: clients of
/// the router, mutual TLS), before the router exists. The robot makes and
/// spools records while nothing is reachable; once the router
/// (trainer-router.json5, access control) comes up, both connect by
/// themselves and every record reaches the sink, the early ones from the
/// robot's spool.
#[test]
fn sarm_processes_deliver_through_the_tls_router_even_when_it_starts_last() {
    const SARM: &str = env!("CARGO_BIN_EXE_sarm");
    const RECORDS: u64 = 600;
    let pki = Pki::new();
    let endpoint = format!("tls/127.0.0.1:{}", common::free_port());
    let robot_config = config_file(
        &pki,
        "trainer-robot.json5",
        &[
            ("ca.pem", "ca.pem"),
            ("robot.pem", "aloha-01.pem"),
            ("robot.key", "aloha-01.key"),
        ],
    );
    let sink_config = config_file(
        &pki,
        "trainer-sink.json5",
        &[
            ("ca.pem", "ca.pem"),
            ("sink.pem", "sink.pem"),
            ("sink.key", "sink.key"),
        ],
    );
    let spool = pki.dir.join("spool");
    let out = pki.dir.join("sink-out");
    let mut robot = std::process::Command::new(SARM)
        .args(["link-check", "--robot-id", "aloha-01", "--spool"])
        .arg(&spool)
        .args(["--records", &RECORDS.to_string(), "--rate", "300"])
        .args(["--episode-frames", "50", "--wait-acked", "90"])
        .args(["--connect-retry", "0.3", "--zenoh-config"])
        .arg(&robot_config)
        .args(["--zenoh-connect", &endpoint])
        .env("SARM_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sarm link-check starts");
    let sink = std::process::Command::new(SARM)
        .args(["sink", "--out"])
        .arg(&out)
        .arg("--zenoh-config")
        .arg(&sink_config)
        .args(["--zenoh-connect", &endpoint, "--parquet-period", "1"])
        .env("SARM_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sarm sink starts");

    // The robot has spooled records with nowhere to send them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while bytes_in(&spool) == 0 {
        assert!(Instant::now() < deadline, "link-check spooled nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let router = router(&pki, &endpoint);

    // The robot exits 0 once the sink has acknowledged everything.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = robot.try_wait().expect("waiting for link-check") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = robot.kill();
            panic!("link-check did not finish: the sink did not acknowledge everything");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut report = String::new();
    std::io::Read::read_to_string(&mut robot.stdout.take().expect("stdout"), &mut report)
        .expect("link-check report");
    assert!(
        status.success(),
        "link-check exited with {status}: {report}"
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("report JSON");
    assert_eq!(report["next_seq"], RECORDS, "{report}");
    assert_eq!(report["unacked"], 0, "{report}");

    let killed = std::process::Command::new("kill")
        .args(["-INT", &sink.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let summary = sink.wait_with_output().expect("sink output");
    assert!(
        summary.status.success(),
        "sarm sink exited with {}",
        summary.status
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&summary.stdout).expect("sink summary JSON");
    let robot = summary
        .as_array()
        .and_then(|robots| robots.iter().find(|r| r["robot_id"] == "aloha-01"))
        .unwrap_or_else(|| panic!("the sink heard nothing from aloha-01: {summary}"));
    eprintln!("link-check: {report}\nsink: {robot}");
    assert_eq!(robot["records"], RECORDS, "{robot}");
    assert_eq!(robot["next_seq"], RECORDS, "{robot}");
    assert_eq!(robot["lost"], 0, "{robot}");
    assert!(
        robot["recovered"].as_u64().is_some_and(|n| n > 0),
        "records made before the router existed came from the spool: {robot}"
    );
    drop(router);
}
