#!/usr/bin/env bash
# The ARM64 node under qemu-user (cortex-a76), on loopback:
#   1. `sarm run`, the embedded default (the ALOHA bundle scores the bundled episode replayed
#      in real time over Zenoh inside the process), from the repository root, to its end;
#   2. the same run stopped by SIGTERM after a few seconds, as systemd stops it: exit 0 and
#      its summary printed;
#   3. `sarm link-check` (ARM64) delivering synthetic records to an x86 `sarm sink` over
#      Zenoh TCP on 127.0.0.1: every record acknowledged and kept once.
# Needs the ARM64 binary (build-arm64.sh bin, built here when missing) and an x86 one
# (SARM_HOST_BIN, default target/debug/sarm, built with cargo when missing). Under emulation
# the model runs many times slower than on a real core, so the real-time replay drops camera
# frames (latest wins, counted in the summary): this checks that the node works, not its speed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
ARM=target/cross/aarch64-unknown-linux-gnu/release/sarm
HOST=${SARM_HOST_BIN:-target/debug/sarm}
[ -x "$ARM" ] || tests/cross/build-arm64.sh bin
[ -x "$HOST" ] || nice -n 10 cargo build -p sarm-ros --bin sarm
WORK=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK" sarm_out/arm64-check
}
trap cleanup EXIT
fail() { echo "node-arm64: $*" >&2; exit 1; }

echo "== 1. sarm run (embedded default) on ARM64 under qemu, to the end of the episode"
start=$(date +%s)
timeout 900 qemu-aarch64 "$ARM" run --output-dir sarm_out/arm64-check > "$WORK/run.out" 2> "$WORK/run.err" \
    || { cat "$WORK/run.err" >&2; fail "sarm run exited with $?"; }
cat "$WORK/run.out"
grep -q '^sarm run: done' "$WORK/run.out" || fail "no summary from sarm run"
grep -q 'episode .*: ended after [1-9][0-9]* frames' "$WORK/run.out" || fail "no scored episode"
ls sarm_out/arm64-check
echo "== 1: ok in $(($(date +%s) - start)) s"

echo "== 2. sarm run stopped by SIGTERM"
qemu-aarch64 "$ARM" run --output-dir "$WORK/stopped" > "$WORK/stop.out" 2> "$WORK/stop.err" &
pid=$!
pids+=("$pid")
# Mid-run: under qemu the bundled replay takes about 24 s to its end; 12 s is before it.
sleep 12
kill -TERM "$pid"
set +e
wait "$pid"
status=$?
set -e
cat "$WORK/stop.out"
[ "$status" -eq 0 ] || { tail -n 20 "$WORK/stop.err" >&2; fail "sarm run exited with $status on SIGTERM"; }
grep -q '^sarm run: done' "$WORK/stop.out" || fail "no summary after SIGTERM"
! grep -q 'end of the recorded episode' "$WORK/stop.out" ||
    fail "the replay had already ended: SIGTERM did not stop a running node (make the sleep shorter)"
echo "== 2: ok (exit 0 after SIGTERM)"

echo "== 3. ARM64 sarm link-check -> x86 sarm sink (tcp/127.0.0.1)"
port=$((17000 + RANDOM % 2000))
SARM_LOG=warn "$HOST" sink --out "$WORK/sink" --zenoh-listen "tcp/127.0.0.1:$port" \
    --zenoh-no-scouting --parquet-period 1 > "$WORK/sink.out" &
sink=$!
pids+=("$sink")
records=2000
SARM_LOG=warn qemu-aarch64 "$ARM" link-check --robot-id arm64-check --spool "$WORK/spool" \
    --records $records --rate 500 --episode-frames 100 --wait-acked 120 \
    --zenoh-connect "tcp/127.0.0.1:$port" --zenoh-listen tcp/127.0.0.1:0 --zenoh-no-scouting \
    > "$WORK/robot.out" || fail "link-check exited with $? ($(cat "$WORK/robot.out"))"
echo "robot: $(cat "$WORK/robot.out")"
kill -INT "$sink"
wait "$sink" || fail "sarm sink exited with $?"
echo "sink: $(cat "$WORK/sink.out")"
python3 - "$WORK/robot.out" "$WORK/sink.out" "$records" <<'EOF'
import json, sys
robot = json.loads(open(sys.argv[1]).read().strip())
sinks = json.loads(open(sys.argv[2]).read().strip())
n = int(sys.argv[3])
s = next((s for s in sinks if s["robot_id"] == "arm64-check"), None)
assert s is not None, f"the sink reports no arm64-check robot: {sinks}"
assert robot["next_seq"] >= n and robot["unacked"] == 0 and robot["spool_dropped"] == 0, robot
for key, want in (("records", robot["next_seq"]), ("next_seq", robot["next_seq"]), ("lost", 0), ("invalid", 0)):
    assert s[key] == want, f"sink {key} = {s[key]}, want {want}: {s}"
print(f"{robot['next_seq']} records made on ARM64, all acknowledged; the x86 sink kept {s['records']}, lost 0")
EOF
ls -R "$WORK/sink" | head -20
echo "== 3: ok"
