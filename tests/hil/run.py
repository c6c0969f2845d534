#!/usr/bin/env python
"""The HIL runner: the MuJoCo ALOHA sim (models/tools/sim/ros_robot.py) driven by `sarm run` over
Zenoh (or DDS: `--transport dds`, the sim an rclpy node on Fast DDS) on loopback, for N seeds and
each backend x precision, compared with LeRobot's own ACT on the same seeds; writes a report folder
people can look at.

    cargo build --release -p sarm-ros --bin sarm
    MUJOCO_GL=egl models/tools/.venv/bin/python tests/hil/run.py --sarm target/release/sarm \\
        --seeds 0:20 --precisions fp32,int8 --out sarm_out/hil_report

One sim process and one node per configuration (the node runs every episode: the sim arms it at
each episode's first tick and ends its episode and disarms it after the last, as a test bench
operator would; `ros_robot.py --sarm-control`). The report folder:

  report.md          the tables: success rate with a Wilson 95% interval per configuration beside
                     LeRobot's; per-seed first-chunk action agreement with LeRobot (through an
                     independent re-statement of the bundle's safety limits, tests/hil/closed_loop.py);
                     SARM final progress vs the sim's ground truth (AUROC) and the success rule's
                     confusion table; observation-to-command latency p50/p99 overall and per SARM
                     stage; dropped frames and safety trips by cause (the node's counters); faults
                     injected and the node's policy events
  progress.png       SARM progress per episode, green: the sim says success, red: failure
  latency.png        the latency histogram per configuration
  safety.png         the node's policy events (armed, fault, ...) and injected faults over sim time
  report.json        everything above as numbers
  <config>/          raw data: sim.json/.npz (per tick commands, rewards, latencies, progress,
                     events), sarm.log (the node's log and closing counters), sim.log, hil.toml

LeRobot's side is models/aloha-act/eval/lerobot_checkpoint_mode.{json,npz} (eval_act.py: LeRobot's
ACTPolicy in process, no ROS, on the same sim and seeds); seeds it does not hold are run by sarm
only and left out of the parity columns. Latency: in lockstep, /clock published -> the tick's
command received (both in the sim, wall time: the node's tick, inference included); in realtime,
observation published -> the command stamped with that tick received.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "models/tools/sim"
sys.path.insert(0, str(SIM))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import counters, limited, stop_node  # noqa: E402


def node_counters(log: str) -> dict:
    """The closing summary's counters, with its `dropped (name): n` lines as `dropped_<name>`."""
    c = counters(log)
    for m in re.finditer(r"^\s+dropped \(([a-z_0-9]+)\): (\d+)$", log, re.M):
        c[f"dropped_{m.group(1)}"] = int(m.group(2))
    return c

# episode.end_on_success's defaults (launch/default.toml): the rule the report evaluates on the
# node's progress.
SUCCESS_PROGRESS, SUCCESS_HOLD_S = 0.95, 1.0


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Probability that a success scores above a failure (ties count half); None without both."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def dump_toml(d: dict, prefix: str = "") -> str:
    """The config back as TOML (plain keys first, then tables; what launch files hold)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            lines += ["", f"[{name}]", dump_toml(v, name + ".")]
    return "\n".join(x for x in lines if x is not None)


def progress_head(ep: dict) -> str:
    heads = {p[1] for p in ep["progress"]}
    return "sparse" if "sparse" in heads or not heads else sorted(heads)[0]


def progress_trace(ep: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds from the episode's first tick, progress, stage) of the episode's frames, sorted."""
    head = progress_head(ep)
    rows = sorted((p for p in ep["progress"] if p[1] == head and ep["t_first_ns"] <= p[0] <= ep["t_last_ns"]))
    t = np.array([(p[0] - ep["t_first_ns"]) / 1e9 for p in rows])
    return t, np.array([p[3] for p in rows]), np.array([p[2] for p in rows], int)


def success_rule(t: np.ndarray, prog: np.ndarray) -> bool:
    """episode.end_on_success: progress >= SUCCESS_PROGRESS for SUCCESS_HOLD_S (frame times)."""
    since = None
    for ti, p in zip(t, prog):
        if p >= SUCCESS_PROGRESS:
            since = ti if since is None else since
            if ti - since >= SUCCESS_HOLD_S:
                return True
        else:
            since = None
    return False


def run_config(args, name: str, backend: str, precision: str, out: Path) -> dict:
    """One sim + one node for every seed; returns the sim's results and the node's counters."""
    cfg = tomllib.loads(args.config.read_text())
    if args.transport == "dds":
        # The node on DDS (ros2-client) in the sim's domain, loopback only; the sim an rclpy node.
        cfg["transport"] = {"kind": "dds", "domain_id": args.domain, "interfaces": ["127.0.0.1"]}
        sim_transport = ["--transport", "dds", "--domain", str(args.domain)]
    else:
        endpoint = f"tcp/127.0.0.1:{free_port()}"
        cfg["transport"]["zenoh_connect"] = [endpoint]
        sim_transport = ["--listen", endpoint]
    cfg["policy"]["precision"] = precision
    cfg.setdefault("backend", {})["kind"] = backend
    cfg["output_dir"] = str(out / "sarm")
    # The sim arms the node at each episode's first tick (--sarm-control), as a test bench operator
    # would; auto_arm would arm it at the pre-roll tick already.
    cfg["policy"].setdefault("safety", {})["auto_arm"] = False
    raw = args.camera != "compressed"
    if raw:
        cfg["inputs"]["camera"], cfg["inputs"]["camera_type"] = "/camera/top/image_raw", "raw"
    for k, v in (x.split("=", 1) for x in args.set):
        *tables, key = k.split(".")
        d = cfg
        for t in tables:
            d = d.setdefault(t, {})
        d[key] = tomllib.loads(f"v = {v}")["v"]
    out.mkdir(parents=True, exist_ok=True)
    config = out / "hil.toml"
    config.write_text(f"# {name}: {args.config} with the runner's changes (tests/hil/run.py)\n" + dump_toml(cfg) + "\n")
    sim_cmd = [sys.executable, str(SIM / "ros_robot.py"), *sim_transport, "--seeds", args.seeds,
               "--steps", str(args.steps), "--mode", args.mode, "--sarm-control",
               "--command-form", cfg["policy"].get("command", "float64_multi_array"),
               "--camera", args.camera, "--out", str(out / "sim.json")]
    for f in args.fault:
        sim_cmd += ["--fault", f]
    sim_cmd += args.sim_arg
    sarm_cmd = [str(args.sarm), "run", "--config", str(config)]
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    t0 = time.monotonic()
    print(f"hil: {name}: seeds {args.seeds}, {args.steps} ticks, {args.mode}", flush=True)
    with open(out / "sim.log", "w") as sim_log, open(out / "sarm.log", "w") as sarm_log, \
            open(out / "sarm-restarted.log", "w") as restart_log:
        sim = subprocess.Popen(sim_cmd, cwd=ROOT, env=env, stdout=sim_log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # the sim listens before the node connects
        node = subprocess.Popen(sarm_cmd, cwd=ROOT, stdout=sarm_log, stderr=subprocess.STDOUT)
        if args.kill_node_after_s is not None:
            # The node dies mid-episode (SIGKILL: no shutdown) and a new one starts in its place.
            while "node found" not in (out / "sim.log").read_text() and sim.poll() is None:
                time.sleep(0.05)
            time.sleep(args.kill_node_after_s)
            node.kill()
            node.wait()
            print(f"hil: {name}: node killed {args.kill_node_after_s} s after the sim found it; restarting", flush=True)
            node = subprocess.Popen(sarm_cmd, cwd=ROOT, stdout=restart_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + args.timeout_s
            rc = None
            while rc is None:
                rc = sim.poll()
                if rc is None and node.poll() is not None:  # the node failed (a bad config, a bundle error)
                    sim.kill()
                    rc = f"the node exited ({node.returncode})"
                elif rc is None and time.monotonic() > deadline:
                    sim.kill()
                    rc = "timeout"
                elif rc is None:
                    time.sleep(0.1)
        finally:
            stop_node(node)
    if rc != 0:
        sys.exit(f"hil: {name}: the sim failed ({rc}); see {out / 'sim.log'} and {out / 'sarm.log'}")
    return load_run(out, name, backend, precision, round(time.monotonic() - t0, 1),
                    {"sim": " ".join(sim_cmd), "sarm": " ".join(sarm_cmd)}, args.kill_node_after_s is not None)


def load_run(out: Path, name: str, backend: str, precision: str, wall_s: float, commands_run: dict,
             restarted: bool) -> dict:
    """A configuration's results from its folder (what run_config wrote)."""
    sim_res = json.loads((out / "sim.json").read_text())
    cmds = np.load(out / "sim.npz")
    return {"name": name, "backend": backend, "precision": precision, "results": sim_res["results"],
            "commands": {r["seed"]: cmds[f"commands_{r['seed']}"] for r in sim_res["results"]},
            "counters": node_counters((out / "sarm.log").read_text()), "wall_s": wall_s,
            "restarted_counters": node_counters((out / "sarm-restarted.log").read_text()) if restarted else None,
            "commands_run": commands_run}


def summarize(run: dict, ref: dict | None, ref_actions, lim: dict, compare: int, start_of) -> dict:
    eps = run["results"]
    n, k = len(eps), sum(e["success"] for e in eps)
    s = {"episodes": n, "successes": k, "success_rate": k / n if n else None, "wilson95": wilson(k, n),
         "final_successes": sum(e["final_success"] for e in eps), "wall_s": run["wall_s"]}
    # SARM vs ground truth
    finals, truth, truth_last, predicted, reach, lat_by_stage = [], [], [], [], [], {}
    for e in eps:
        t, prog, stage = progress_trace(e)
        finals.append(float(prog[-1]) if len(prog) else float("nan"))
        truth.append(bool(e["success"]))
        truth_last.append(bool(e["final_success"]))
        predicted.append(success_rule(t, prog))
        above = np.flatnonzero(prog >= SUCCESS_PROGRESS)
        if len(above):
            reach.append(float(t[above[0]]))
        # latency per SARM stage: the stage of the newest scored frame at or before the tick
        for tick, ms in enumerate(e["latencies_ms"]):
            tt = tick * 0.02
            i = np.searchsorted(t, tt, side="right") - 1
            key = f"stage {stage[i]}" if i >= 0 else "before the first score"
            lat_by_stage.setdefault(key, []).append(ms)
    ok = [i for i, f in enumerate(finals) if not math.isnan(f)]
    s["progress_scored_episodes"] = len(ok)
    s["final_progress_auroc"] = auroc([finals[i] for i in ok], [truth[i] for i in ok])
    # Against the outcome at the end (the cube still held on the last tick): what progress means.
    s["final_progress_auroc_last_tick"] = auroc([finals[i] for i in ok], [truth_last[i] for i in ok])
    s["progress_reaches_success_s"] = {"episodes": len(reach), "median": float(np.median(reach)) if reach else None}
    s["final_progress_mean_success"] = float(np.mean([finals[i] for i in ok if truth[i]])) if any(
        truth[i] for i in ok) else None
    s["final_progress_mean_failure"] = float(np.mean([finals[i] for i in ok if not truth[i]])) if any(
        not truth[i] for i in ok) else None
    s["success_rule_confusion"] = {
        "tp": sum(p and y for p, y in zip(predicted, truth)), "fp": sum(p and not y for p, y in zip(predicted, truth)),
        "fn": sum(y and not p for p, y in zip(predicted, truth)),
        "tn": sum(not p and not y for p, y in zip(predicted, truth))}
    lat = [x for e in eps for x in e["latencies_ms"]]
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 2) if xs else None  # noqa: E731
    s["latency_ms"] = {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": pct(lat, 100), "n": len(lat)}
    s["latency_ms_by_stage"] = {k: {"p50": pct(v, 50), "p99": pct(v, 99), "n": len(v)}
                                for k, v in sorted(lat_by_stage.items())}
    s["ticks"] = sum(e["ticks"] for e in eps)
    s["ticks_without_command"] = sum(e["ticks_without_command"] for e in eps)
    s["stale_commands"] = sum(e["stale_commands"] for e in eps)
    c = run["counters"]
    s["node_dropped"] = {k: v for k, v in c.items() if v and any(w in k for w in ("drop", "skipped", "late",
                                                                                   "undecodable", "jumped", "backwards", "error"))}
    s["safety_trips"] = {k[len("safety_trip_"):]: v for k, v in c.items() if k.startswith("safety_trip_") and v}
    s["faults_latched"] = sum(1 for e in eps for ev in e["policy_events"] if ev["event"] == "fault")
    s["fault_causes"] = sorted({ev["cause"] for e in eps for ev in e["policy_events"] if ev["event"] == "fault"})
    # parity with LeRobot on the seeds both ran
    per_seed = []
    if ref is not None:
        by_seed = {r["seed"]: r for r in ref["results"]}
        for e in eps:
            r = by_seed.get(e["seed"])
            if r is None or f"seed_{e['seed']}" not in ref_actions:
                continue
            a = ref_actions[f"seed_{e['seed']}"].astype(np.float64)
            cm = run["commands"][e["seed"]]
            m = min(compare, len(a), len(cm))
            lim_ref = limited(a, start_of(e["seed"]), lim["lower"], lim["upper"], lim["max_step"])[:m]
            d = np.abs(cm[:m] - lim_ref)
            per_seed.append({"seed": e["seed"], "sarm_success": e["success"], "lerobot_success": r["success"],
                             "first_chunk_max_abs": float(d.max()) if m else None, "compared_ticks": m})
    s["parity"] = per_seed
    return s


def figures(out: Path, runs: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs):
        for e in run["results"]:
            t, prog, _ = progress_trace(e)
            ax.plot(t, prog, color="tab:green" if e["success"] else "tab:red", alpha=0.6, lw=1)
        ax.set_title(f"{run['name']}: SARM progress", fontsize=9)
        ax.set_xlabel("episode time (s, sim)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("progress (green: success, red: failure)")
    fig.tight_layout()
    fig.savefig(out / "progress.png", dpi=110)
    plt.close(fig)
    made.append("progress.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for run in runs:
        lat = [x for e in run["results"] for x in e["latencies_ms"]]
        if lat:
            ax.hist(lat, bins=np.logspace(np.log10(max(min(lat), 0.1)), np.log10(max(lat) + 1), 50), alpha=0.5,
                    label=run["name"])
    ax.set_xscale("log")
    ax.set_xlabel("observation-to-command latency (ms, wall)")
    ax.set_ylabel("ticks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    made.append("latency.png")

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * max(1, sum(len(r["results"]) for r in runs))))
    marks = {"armed": ("^", "tab:green"), "disarmed": ("v", "tab:gray"), "fault": ("X", "tab:red"),
             "reset": ("o", "tab:blue"), "arm_refused": ("s", "tab:orange")}
    row, labels = 0, []
    for run in runs:
        for e in run["results"]:
            missing = np.asarray(e.get("missing_ticks", []), float) * 0.02  # the sim got no command
            if len(missing):
                ax.plot(missing, np.full(len(missing), row), marker="s", ms=2, ls="", color="0.75")
            for f in e["faults"]:
                ax.plot([(f["stamp_ns"] - e["t_first_ns"]) / 1e9], [row], marker="|", ms=18, color="black")
            for ev in e["policy_events"]:
                m, c = marks.get(ev["event"], ("o", "black"))
                ax.plot([(ev["stamp_ns"] - e["t_first_ns"]) / 1e9], [row], marker=m, color=c, ls="")
            labels.append(f"{run['name']} seed {e['seed']}")
            row += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("episode time (s, sim); |: fault injected; ^ armed, v disarmed, X fault latched, o reset; "
                  "grey: no command", fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "safety.png", dpi=110)
    plt.close(fig)
    made.append("safety.png")
    return made


def fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def markdown(args, runs, sums, ref, tol: dict, command: str) -> str:
    L = ["# HIL report", "",
         f"Sim: models/tools/sim/ros_robot.py over {'DDS (rclpy, Fast DDS)' if args.transport == 'dds' else 'Zenoh'}, "
         f"{args.mode}, seeds `{args.seeds}`, {args.steps} ticks at 50 Hz, "
         f"camera `{args.camera}`{', faults: ' + ', '.join(args.fault) if args.fault else ''}.",
         f"Command: `{command}`", "",
         "## Success", "",
         "| policy | episodes | successes | rate | Wilson 95% | final-tick successes |", "| --- | --- | --- | --- | --- | --- |"]
    if ref is not None:
        lo, hi = ref["success_rate_wilson95"]
        L.append(f"| LeRobot ACTPolicy (PyTorch fp32, in process; {Path(args.reference).name}) | {ref['episodes']} | "
                 f"{ref['successes']} | {ref['success_rate']:.2f} | [{lo:.2f}, {hi:.2f}] | {ref['final_successes']} |")
    for run, s in zip(runs, sums):
        lo, hi = s["wilson95"]
        L.append(f"| sarm {run['backend']} {run['precision']} | {s['episodes']} | {s['successes']} | "
                 f"{fmt(s['success_rate'], 2)} | [{lo:.2f}, {hi:.2f}] | {s['final_successes']} |")
    L += ["", "## Parity with LeRobot on the same seeds", "",
          f"First {args.compare} ticks (LeRobot's first action chunk, from the identical first observation): max |sarm "
          f"command - LeRobot action through the bundle's limits|, against the bundle's golden bound for the "
          f"precision (models/aloha-act/golden/golden.json: fp32 {tol['fp32']}, int8 {tol['int8']}; the model on "
          "LeRobot's input tensors, so a JPEG camera adds the decoders' difference, zune-jpeg vs PIL). "
          "Later ticks drift apart as the trajectories do.", ""]
    if any(s["parity"] for s in sums):
        L += ["| policy | seeds | first-chunk max abs (worst seed) | median over seeds | seeds within the bound "
              "| success agrees |",
              "| --- | --- | --- | --- | --- | --- |"]
        for run, s in zip(runs, sums):
            p = s["parity"]
            if p:
                worst = max(x["first_chunk_max_abs"] for x in p)
                within = sum(x["first_chunk_max_abs"] <= tol[run["precision"]] for x in p)
                median = float(np.median([x["first_chunk_max_abs"] for x in p]))
                agree = sum(x["sarm_success"] == x["lerobot_success"] for x in p)
                L.append(f"| sarm {run['backend']} {run['precision']} | {len(p)} | {worst:.2e} | {median:.2e} | "
                         f"{within}/{len(p)} | {agree}/{len(p)} |")
    else:
        L.append("No seed in common with the LeRobot reference.")
    L += ["", "## Reward model vs ground truth", "",
          f"Final progress: the last scored frame of the episode (the node's `/sarm/progress`, "
          f"head `{progress_head(runs[0]['results'][0]) if runs[0]['results'] else '-'}`). Success rule: "
          f"`episode.end_on_success` with its defaults (progress >= {SUCCESS_PROGRESS} for {SUCCESS_HOLD_S} s), "
          "applied to that progress; ground truth: the sim's contact reward reached 4.", "",
          "| policy | AUROC of final progress | AUROC vs reward 4 on the last tick | mean final progress, "
          f"success / failure | progress first >= {SUCCESS_PROGRESS}: episodes, median time (s) | rule TP | FP | FN | TN |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run, s in zip(runs, sums):
        c = s["success_rule_confusion"]
        r = s["progress_reaches_success_s"]
        L.append(f"| sarm {run['backend']} {run['precision']} | {fmt(s['final_progress_auroc'])} | "
                 f"{fmt(s['final_progress_auroc_last_tick'])} | "
                 f"{fmt(s['final_progress_mean_success'])} / {fmt(s['final_progress_mean_failure'])} | "
                 f"{r['episodes']}, {fmt(r['median'], 2)} | {c['tp']} | {c['fp']} | {c['fn']} | {c['tn']} |")
    L += ["", "## Latency, drops, safety", "",
          "Observation-to-command latency (ms, wall): " + (
              "`/clock` published -> the tick's command received (lockstep: the node's tick, inference included)."
              if args.mode == "lockstep" else "observation published -> the command stamped with its tick received."),
          "", "| policy | p50 | p99 | max | per SARM stage p50/p99 | ticks without command | dropped (node) | "
          "safety trips | faults latched |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run, s in zip(runs, sums):
        st = "; ".join(f"{k}: {fmt(v['p50'], 1)}/{fmt(v['p99'], 1)}" for k, v in s["latency_ms_by_stage"].items())
        drops = ", ".join(f"{k} {v}" for k, v in s["node_dropped"].items()) or "none"
        trips = ", ".join(f"{k} {v}" for k, v in s["safety_trips"].items()) or "none"
        L.append(f"| sarm {run['backend']} {run['precision']} | {fmt(s['latency_ms']['p50'], 1)} | "
                 f"{fmt(s['latency_ms']['p99'], 1)} | {fmt(s['latency_ms']['max'], 1)} | {st} | "
                 f"{s['ticks_without_command']}/{s['ticks']} | {drops} | {trips} | {s['faults_latched']} "
                 f"{'(' + ', '.join(s['fault_causes']) + ')' if s['fault_causes'] else ''} |")
    L += ["", "![progress](progress.png)", "", "![latency](latency.png)", "", "![safety](safety.png)", "",
          "Raw data per configuration in its folder (sim.json/.npz, sarm.log, hil.toml).", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index("\n\n"):])
    ap.add_argument("--sarm", type=Path, default=ROOT / "target/release/sarm", help="the sarm binary")
    ap.add_argument("--config", type=Path, default=ROOT / "launch/hil.toml")
    ap.add_argument("--seeds", default="0:20", help="A:B (range) or a,b,c")
    ap.add_argument("--steps", type=int, default=400, help="ticks per episode (eval_act.py: 400)")
    ap.add_argument("--mode", choices=["lockstep", "realtime"], default="lockstep")
    ap.add_argument("--transport", choices=["zenoh", "dds"], default="zenoh",
                    help="zenoh: rmw_zenoh keys, the sim a Zenoh peer (launch/hil.toml); dds: the node on DDS "
                         "(ros2-client), the sim an rclpy node on Fast DDS, loopback only")
    ap.add_argument("--domain", type=int, default=100 + os.getpid() % 100, help="dds: ROS_DOMAIN_ID")
    ap.add_argument("--backends", default="tract", help="comma-separated: tract, ort")
    ap.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, int8 (the policy's)")
    ap.add_argument("--camera", choices=["compressed", "raw", "raw-jpeg"], default="compressed",
                    help="the sim's camera (raw-jpeg: LeRobot's exact pixels as sensor_msgs/Image)")
    ap.add_argument("--fault", action="append", default=[], help="passed to ros_robot.py --fault (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=TOML",
                    help="a config override, e.g. policy.safety.hold_timeout_ms=300 (repeatable)")
    ap.add_argument("--sim-arg", action="append", default=[], metavar="ARG",
                    help="an extra ros_robot.py argument, e.g. --sim-arg=--command-timeout-s=0.5 (repeatable)")
    ap.add_argument("--kill-node-after-s", type=float, default=None,
                    help="fault: SIGKILL the node this long after the sim found it, then start a new one")
    ap.add_argument("--compare", type=int, default=50, help="ticks compared with LeRobot's actions per seed")
    ap.add_argument("--reference", type=Path, default=ROOT / "models/aloha-act/eval/lerobot_checkpoint_mode.json")
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="per configuration")
    ap.add_argument("--out", type=Path, required=True, help="the report folder")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: rebuild report.md, report.json and the figures from the raw data in --out "
                         "(a finished run with the same --backends/--precisions)")
    args = ap.parse_args(argv)
    if not args.sarm.exists() and not args.report_only:
        ap.error(f"no sarm binary at {args.sarm} (cargo build --release -p sarm-ros --bin sarm)")

    import joint_sim as js

    cfg = tomllib.loads(args.config.read_text())
    pdir = ROOT / cfg["policy"]["bundle"]
    bundle = tomllib.loads((pdir / "bundle.toml").read_text())
    lim = {k: np.asarray(bundle["action"]["limits"][k], np.float64) for k in ("lower", "upper", "max_step")}
    golden_tol = json.loads((pdir / "golden/golden.json").read_text())["tolerance"]
    tol = {"fp32": float(golden_tol["fp32_action_abs"]), "int8": float(golden_tol["int8_action_abs"])}
    ref = json.loads(args.reference.read_text()) if args.reference.exists() else None
    ref_actions = np.load(args.reference.with_suffix(".npz")) if ref is not None else {}
    starts: dict[int, np.ndarray] = {}
    sim = js.JointSim(width=64, height=48)

    def start_of(seed: int) -> np.ndarray:
        if seed not in starts:
            starts[seed] = sim.reset(seed=seed).joints
        return starts[seed]

    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(sys.argv)
    previous = None
    if args.report_only:
        # What the run was: its settings and command line from its report.
        previous = json.loads((args.out / "report.json").read_text())
        for k in ("seeds", "steps", "mode", "camera", "transport"):
            if k in previous:
                setattr(args, k, previous[k])
        args.fault = previous.get("faults", [])
        m = re.search(r"^Command: `(.*)`$", (args.out / "report.md").read_text(), re.M)
        command = previous.get("command") or (m.group(1) if m else "(unknown)")
    runs, sums = [], []
    for backend in [b for b in args.backends.split(",") if b]:
        for precision in [p for p in args.precisions.split(",") if p]:
            name = f"{backend}-{precision}"
            if args.report_only:
                (old,) = [c for c in previous["configs"] if c["name"] == name] or [None]
                if old is None:
                    ap.error(f"--report-only: {args.out / 'report.json'} has no configuration {name}")
                run = load_run(args.out / name, name, backend, precision, old["wall_s"], old["commands"],
                               old["restarted_node_counters"] is not None)
            else:
                run = run_config(args, name, backend, precision, args.out / name)
            s = summarize(run, ref, ref_actions, lim, args.compare, start_of)
            print(f"hil: {name}: {s['successes']}/{s['episodes']} successes, latency p50 {s['latency_ms']['p50']} ms "
                  f"p99 {s['latency_ms']['p99']} ms, {run['wall_s']} s", flush=True)
            runs.append(run)
            sums.append(s)
    made = figures(args.out, runs)
    (args.out / "report.md").write_text(markdown(args, runs, sums, ref, tol, command))
    (args.out / "report.json").write_text(json.dumps({
        "command": command, "seeds": args.seeds, "steps": args.steps, "mode": args.mode, "transport": args.transport, "camera": args.camera, "faults": args.fault,
        "lerobot": None if ref is None else {k: ref[k] for k in ("episodes", "successes", "success_rate",
                                                                 "success_rate_wilson95", "final_successes")},
        "tolerance_fp32_action_abs": tol["fp32"], "tolerance_action_abs": tol, "figures": made,
        "configs": [{"name": r["name"], "backend": r["backend"], "precision": r["precision"],
                     "commands": r["commands_run"], "node_counters": r["counters"],
                     "restarted_node_counters": r["restarted_counters"], **s} for r, s in zip(runs, sums)],
    }, indent=1) + "\n")
    print(f"hil: report in {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
