//! Loss-free delivery to `sarm sink`, under faults, with real processes.
//!
//! The robot's end is `sarm link-check` (the node's spool and trainer link,
//! fed synthetic records so that 10,000 records take seconds, not a model's
//! hours); the trainer's end is `sarm sink`. They talk Zenoh over loopback
//! TCP through a proxy in this test, which can cut the link. While the
//! robot streams, the sink is killed (SIGKILL) and restarted three times,
//! the link is cut and restored, and the robot is killed once and
//! restarted on its spool. The sink's LeRobot parquet (read with pyarrow)
//! must then hold every progress record exactly once, in order. Each fault
//! is checked to have happened: the robot was still streaming at every
//! kill, the cut closed live connections, and records came from the spool.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, run_python};
use sarm_ros::trainer::log::read_log;
use sarm_ros::trainer::RecordKind;
use serde_json::Value;

const SARM: &str = env!("CARGO_BIN_EXE_sarm");
const EPISODE_FRAMES: u32 = 100;

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections open right now.
    open: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let open = Arc::new(AtomicUsize::new(0));
        let (c, cs, o) = (cut.clone(), conns.clone(), open.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let mut list = cs.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(dup) = s.try_clone() {
                        list.push(dup);
                    }
                }
                drop(list);
                o.fetch_add(1, Ordering::SeqCst);
                let a = pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                let b = pipe(server, client);
                let o = o.clone();
                thread::spawn(move || {
                    let _ = (a.join(), b.join());
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Proxy {
            port,
            cut,
            conns,
            open,
        }
    }

    /// Waits until a connection is open (the robot reached the sink).
    fn wait_open(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.open.load(Ordering::SeqCst) == 0 {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Cuts every connection; returns how many were open.
    fn cut(&self) -> usize {
        self.cut.store(true, Ordering::SeqCst);
        let n = self.open.load(Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        n
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    })
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct Proc(Option<Child>);

impl Proc {
    fn take(mut self) -> Child {
        self.0.take().expect("a running child")
    }

    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sarm-delivery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start_sink(out: &Path, port: u16) -> Proc {
    Proc(Some(
        Command::new(SARM)
            .args(["sink", "--out"])
            .arg(out)
            .args(["--zenoh-listen", &format!("tcp/127.0.0.1:{port}")])
            .args(["--zenoh-no-scouting", "--parquet-period", "1"])
            .env("SARM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sarm sink starts"),
    ))
}

fn start_robot(robot: &str, spool: &Path, port: u16, records: u64, rate: u32) -> Proc {
    Proc(Some(
        Command::new(SARM)
            .args(["link-check", "--robot-id", robot, "--spool"])
            .arg(spool)
            .args([
                "--records",
                &records.to_string(),
                "--rate",
                &rate.to_string(),
            ])
            .args(["--episode-frames", &EPISODE_FRAMES.to_string()])
            .args(["--wait-acked", "90"])
            .args(["--zenoh-connect", &format!("tcp/127.0.0.1:{port}")])
            .args(["--zenoh-listen", "tcp/127.0.0.1:0", "--zenoh-no-scouting"])
            .env("SARM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sarm link-check starts"),
    ))
}

/// Stops a sink with SIGINT (it writes its files) and returns its summary.
fn stop_sink(sink: Proc) -> Vec<Value> {
    let mut sink = sink.take();
    let status = Command::new("kill")
        .args(["-INT", &sink.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = sink.try_wait().unwrap() {
            assert!(st.success(), "sarm sink exited with {st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sarm sink did not stop on SIGINT"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    sink.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("sink summary {out:?}: {e}"))
}

/// Waits for a robot to finish (all acknowledged) and returns its report.
fn finish_robot(robot: Proc, timeout: Duration) -> Value {
    let mut robot = robot.take();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = robot.try_wait().unwrap() {
            let mut out = String::new();
            robot
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert!(st.success(), "sarm link-check exited with {st}: {out}");
            return serde_json::from_str(out.trim()).expect("link-check report");
        }
        if Instant::now() > deadline {
            let _ = robot.kill();
            panic!("sarm link-check did not finish in {timeout:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn kill9(p: Proc) {
    let mut c = p.take();
    c.kill().expect("SIGKILL");
    let _ = c.wait();
}

/// Reads a parquet file with pyarrow (the library LeRobot's RA-BC uses).
fn parquet(path: &Path) -> Value {
    let out = run_python("read_parquet.py", path);
    serde_json::from_str(&out).expect("read_parquet.py prints JSON")
}

fn column<'a>(p: &'a Value, name: &str) -> &'a Vec<Value> {
    p["data"][name]
        .as_array()
        .unwrap_or_else(|| panic!("column {name}"))
}

/// Every progress row once, in order, with the values the robot made.
fn check_robot_output(out: &Path, robot: &str, next_seq: u64) -> (usize, usize) {
    let dir = out.join(robot);
    // The store: each sequence number exactly once.
    let log = read_log(&dir.join("records.log")).expect("records.log reads");
    assert!(
        log.damaged_tail.is_none(),
        "{robot}: damaged store after a clean stop"
    );
    let mut seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (0..next_seq).collect();
    assert!(
        seqs == expected,
        "{robot}: store holds {} records, {} expected; first difference at {:?}",
        seqs.len(),
        next_seq,
        seqs.iter().zip(&expected).position(|(a, b)| a != b)
    );
    let progress_records = log
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Progress)
        .count();

    let p = parquet(&dir.join("sarm_progress.parquet"));
    let cols: Vec<&str> = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "index",
            "episode_index",
            "frame_index",
            "progress_sparse",
            "progress_dense"
        ]
    );
    let types: Vec<&str> = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_str().unwrap())
        .collect();
    assert_eq!(types, ["int64", "int64", "int64", "float", "float"]);
    assert!(p["metadata"]["reward_model_path"].as_str().is_some());
    let index = column(&p, "index");
    let ep = column(&p, "episode_index");
    let fr = column(&p, "frame_index");
    let sparse = column(&p, "progress_sparse");
    let dense = column(&p, "progress_dense");
    let rows = index.len();
    let mut prev: Option<(i64, i64)> = None;
    let mut one_head = 0;
    for i in 0..rows {
        assert_eq!(
            index[i].as_i64(),
            Some(i as i64),
            "{robot}: index of row {i}"
        );
        let (e, f) = (ep[i].as_i64().unwrap(), fr[i].as_i64().unwrap());
        if let Some((pe, pf)) = prev {
            // In order and contiguous within an episode.
            assert!(
                (e == pe && f == pf + 1) || (e > pe && f == 0),
                "{robot}: row {i} is ({e}, {f}) after ({pe}, {pf})"
            );
        } else {
            assert_eq!(f, 0);
        }
        prev = Some((e, f));
        let x = (f + 1) as f64 / EPISODE_FRAMES as f64;
        let s = sparse[i].as_f64().unwrap();
        assert!(
            (s - x).abs() < 1e-6,
            "{robot}: sparse progress of ({e}, {f}) is {s}"
        );
        match dense[i].as_f64() {
            Some(d) => assert!(
                (d - x * x).abs() < 1e-6,
                "{robot}: dense progress of ({e}, {f}) is {d}"
            ),
            // A robot killed between a frame's two heads: NaN, as LeRobot
            // writes a head it has no value for.
            None => one_head += 1,
        }
    }
    assert!(one_head <= 1, "{robot}: {one_head} frames with one head");
    // Two heads per frame: each progress record is in the file once.
    assert_eq!(
        rows * 2 - one_head,
        progress_records,
        "{robot}: rows vs progress records"
    );

    let w = parquet(&dir.join("sarm_weights.parquet"));
    assert_eq!(column(&w, "index").len(), rows, "{robot}: a weight per row");
    for v in column(&w, "weight") {
        let v = v.as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{robot}: weight {v}");
    }
    (rows, progress_records)
}

#[test]
fn every_record_arrives_once_through_sink_restarts_a_cut_link_and_a_killed_robot() {
    let out = tmp_dir("faults-sink");
    let spool = tmp_dir("faults-spool");
    let sink_port = free_port();
    let proxy = Proxy::start(sink_port);
    const RECORDS: u64 = 10_000;
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:5.1} s] {what}", started.elapsed().as_secs_f64());

    let mut sink = start_sink(&out, sink_port);
    thread::sleep(Duration::from_millis(500));
    step("robot starts");
    let mut robot = start_robot("arm-1", &spool, proxy.port, RECORDS, 700);
    let held = |out: &Path| read_log(&out.join("arm-1/records.log")).map_or(0, |c| c.records.len());
    for round in 1..=3 {
        thread::sleep(Duration::from_millis(1800));
        step(&format!("sink killed (SIGKILL {round} of 3)"));
        assert!(
            robot.running(),
            "the robot finished before sink kill {round}"
        );
        assert!(held(&out) > 0, "the sink held nothing before kill {round}");
        kill9(sink);
        thread::sleep(Duration::from_millis(1000));
        sink = start_sink(&out, sink_port);
        step("sink restarted");
        if round == 1 {
            thread::sleep(Duration::from_millis(1500));
            // The robot reconnects to the restarted sink with a backoff:
            // cut only once it has.
            assert!(
                proxy.wait_open(Duration::from_secs(20)),
                "the robot never reached the restarted sink"
            );
            step("link cut");
            let cut = proxy.cut();
            assert!(cut > 0, "the cut closed no connection");
            assert!(robot.running(), "the robot finished before the cut");
            thread::sleep(Duration::from_millis(2000));
            proxy.restore();
            step("link restored");
        }
    }
    thread::sleep(Duration::from_millis(500));
    step("robot killed (SIGKILL)");
    assert!(robot.running(), "the robot finished before it was killed");
    kill9(robot);
    thread::sleep(Duration::from_millis(500));
    let robot = start_robot("arm-1", &spool, proxy.port, RECORDS, 700);
    step("robot restarted on its spool");
    let report = finish_robot(robot, Duration::from_secs(180));
    step("robot done, all acknowledged");
    let summaries = stop_sink(sink);
    let next_seq = report["next_seq"].as_u64().unwrap();
    assert!(next_seq >= RECORDS, "the robot made {next_seq} records");
    // The restarted robot carried on from its spool.
    let made_after_restart = report["sent_this_run"].as_u64().unwrap();
    assert!(
        made_after_restart < next_seq,
        "the restarted robot started over: {report}"
    );
    assert_eq!(report["unacked"].as_u64(), Some(0));
    assert_eq!(report["spool_dropped"].as_u64(), Some(0));

    let s = summaries
        .iter()
        .find(|s| s["robot_id"] == "arm-1")
        .expect("the sink reports arm-1");
    let (rows, progress_records) = check_robot_output(&out, "arm-1", next_seq);
    // The last sink run's view (the store holds all runs' records).
    assert_eq!(s["records"].as_u64(), Some(next_seq), "{s}");
    assert_eq!(s["next_seq"].as_u64(), Some(next_seq), "{s}");
    assert_eq!(s["lost"].as_u64(), Some(0), "{s}");
    assert_eq!(s["invalid"].as_u64(), Some(0), "{s}");
    // Outages were bridged from the robot's spool.
    assert!(s["recovered"].as_u64().unwrap() > 0, "{s}");
    eprintln!(
        "delivery: {next_seq} records sent, {next_seq} held, 0 lost, 0 duplicated in the files \
         ({rows} progress rows from {progress_records} progress records); all sink runs: {} \
         duplicates dropped, {} recovered from the spool; last sink run, scoring -> synced at the \
         sink: live p50 {} ms, p99 {} ms, max {} ms; recovered after an outage p50 {} ms, p99 {} \
         ms, max {} ms",
        s["duplicates"],
        s["recovered"],
        s["this_run_delay_ms_p50"],
        s["this_run_delay_ms_p99"],
        s["this_run_delay_ms_max"],
        s["this_run_recovered_delay_ms_p50"],
        s["this_run_recovered_delay_ms_p99"],
        s["this_run_recovered_delay_ms_max"]
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn two_robots_into_one_sink_stay_apart() {
    let out = tmp_dir("two-sink");
    let port = free_port();
    let sink = start_sink(&out, port);
    thread::sleep(Duration::from_millis(500));
    let spools = [tmp_dir("two-a"), tmp_dir("two-b")];
    let a = start_robot("arm-a", &spools[0], port, 900, 1500);
    let b = start_robot("arm-b", &spools[1], port, 1300, 1500);
    let ra = finish_robot(a, Duration::from_secs(60));
    let rb = finish_robot(b, Duration::from_secs(60));
    let summaries = stop_sink(sink);
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    for (robot, report) in [("arm-a", &ra), ("arm-b", &rb)] {
        let n = report["next_seq"].as_u64().unwrap();
        let s = summaries.iter().find(|s| s["robot_id"] == robot).unwrap();
        assert_eq!(s["records"].as_u64(), Some(n), "{robot}: {s}");
        assert_eq!(s["invalid"].as_u64(), Some(0), "{robot}: {s}");
        // Without faults the spool is asked for nothing the sink also got
        // live (it used to re-send 50 and more).
        assert_eq!(s["duplicates"].as_u64(), Some(0), "{robot}: {s}");
        check_robot_output(&out, robot, n);
    }
    let _ = std::fs::remove_dir_all(&out);
    for s in spools {
        let _ = std::fs::remove_dir_all(&s);
    }
}

/// Fault found by testing: a robot restarted on a spool the sink had
/// already acknowledged in full counted every record as unacknowledged
/// (the acknowledgement was never sent again) and `link-check` exited 3.
#[test]
fn a_robot_restarted_on_an_acknowledged_spool_has_nothing_pending() {
    let out = tmp_dir("reack-sink");
    let spool = tmp_dir("reack-spool");
    let port = free_port();
    let sink = start_sink(&out, port);
    thread::sleep(Duration::from_millis(500));
    let first = finish_robot(
        start_robot("arm-r", &spool, port, 600, 2000),
        Duration::from_secs(60),
    );
    assert_eq!(first["unacked"].as_u64(), Some(0), "{first}");
    // Again, on the same spool: nothing new to make, nothing pending.
    let again = finish_robot(
        start_robot("arm-r", &spool, port, 600, 2000),
        Duration::from_secs(60),
    );
    assert_eq!(again["sent_this_run"].as_u64(), Some(0), "{again}");
    assert_eq!(again["unacked"].as_u64(), Some(0), "{again}");
    let summaries = stop_sink(sink);
    let s = summaries.iter().find(|s| s["robot_id"] == "arm-r").unwrap();
    assert_eq!(s["records"].as_u64(), Some(600), "{s}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&spool);
}

/// The README's Python example reads the link live (Zenoh Python API,
/// rosbags' CDR decoder): progress, weights and episode events decode.
#[test]
fn python_reads_the_trainer_link_live() {
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let reader = common::Peer::spawn("live_reader.py", &[&endpoint, "120"]);
    assert_eq!(
        reader.line(Duration::from_secs(30)).as_deref(),
        Some("ready")
    );
    let spool = tmp_dir("python-spool");
    // No sink: nothing acknowledges, so link-check reports unacknowledged
    // records and exits 3 after its wait.
    let robot = Command::new(SARM)
        .args(["link-check", "--robot-id", "py-1", "--spool"])
        .arg(&spool)
        .args([
            "--records",
            "400",
            "--rate",
            "400",
            "--episode-frames",
            "20",
        ])
        .args(["--chunk-size", "5", "--wait-acked", "0"])
        .args(["--zenoh-connect", &endpoint])
        .args(["--zenoh-listen", "tcp/127.0.0.1:0", "--zenoh-no-scouting"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("link-check runs");
    assert_eq!(robot.code(), Some(3), "nothing acknowledged without a sink");
    let mut rows = Vec::new();
    while let Some(line) = reader.line(Duration::from_secs(10)) {
        rows.push(serde_json::from_str::<Value>(&line).expect("a JSON line"));
        if rows.len() == 120 {
            break;
        }
    }
    assert_eq!(rows.len(), 120, "decoded samples: {rows:?}");
    let kinds: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    for key in [
        "sarm/py-1/progress",
        "sarm/py-1/weight",
        "sarm/py-1/episode",
    ] {
        assert!(kinds.contains(key), "{key} not seen: {kinds:?}");
    }
    for r in &rows {
        assert_eq!(r["robot_id"], "py-1");
        if let Some(w) = r["weight"].as_f64() {
            assert!((0.0..=1.0).contains(&w));
        }
    }
    let _ = std::fs::remove_dir_all(&spool);
}
