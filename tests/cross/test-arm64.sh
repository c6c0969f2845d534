#!/usr/bin/env bash
# The goldens on ARM64 kernels: cross-built test binaries run under qemu-user with a NEON-only
# CPU model (cortex-a76: NEON, fp16, SDOT, no SVE, like the Cortex-A78AE of a Jetson Orin;
# qemu's default `-cpu max` has SVE and tract would pick kernels Orin does not run).
#
#   tests/cross/test-arm64.sh runtime   LeRobot parity (fp32, int8; tract and onnxruntime), the
#                                       encoder and smoother, and the kernels tract picked
#                                       (sarm-runtime tests)
#   tests/cross/test-arm64.sh all       runtime, then `sarm label` on the committed ALOHA
#                                       episodes against golden.json (sarm-ros aloha_bundle,
#                                       one process per backend side by side: over an hour
#                                       under qemu on 2 cores, too long for CI) and the sarm
#                                       binary's own tract kernel log
#   tests/cross/test-arm64.sh node      the ARM64 node: `sarm run` (the embedded default) to
#                                       its end, a stop by SIGTERM, and `sarm link-check`
#                                       delivering to an x86 `sarm sink` (loopback)
#
# SARM_ARM_TEST_FILTER=NAME passes a test-name filter to every test binary (libtest's own).
#
# Builds what it needs with build-arm64.sh (cached: a second run builds nothing new). The
# tolerances are the tests' own, the same as on x86. Timings under qemu say nothing about a
# real ARM core's speed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
. "$REPO/tests/cross/paths.sh"
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
# The test binaries run against the trixie root's aarch64 glibc (2.41), not the host's bookworm
# one (2.36): the test harness from Debian's prebuilt ARM64 std references pidfd_spawnp and
# pidfd_getpid at GLIBC_2.39 (weak symbols, but glibc's loader still requires the version).
# The shipped `sarm` binary has no such reference: build-arm64.sh checks its ceiling (<= 2.35)
# and node-arm64.sh runs it against bookworm's glibc.
export QEMU_LD_PREFIX=$CROSS_ROOT/usr/aarch64-linux-gnu
SCOPE=${1:-runtime}

build=(tests sarm-runtime:golden_parity,encoder_and_smoother,tract_kernels)
case $SCOPE in
    runtime) ;;
    all) build=(bin "${build[@]}" tests sarm-ros:aloha_bundle) ;;
    node) exec "$(dirname "$0")/node-arm64.sh" ;;
    *) echo "usage: $0 [runtime|all|node]" >&2; exit 2 ;;
esac
tests/cross/build-arm64.sh "${build[@]}"

# The onnxruntime backend's goldens on ARM64 load the ONNX Runtime library of the same pinned
# version as on x86 (tests/setup.sh), from the manylinux aarch64 wheel on PyPI: the library a
# Jetson user gets with `pip install onnxruntime` (CPU provider; CUDA/TensorRT builds come from
# NVIDIA's Jetson wheels). Unpacked once under $CROSS_DIR.
ORT_VERSION=$(sed -n 's/^ORT_VERSION=//p' tests/setup.sh)
ORT_ARM=$CROSS_DIR/onnxruntime-aarch64
if [ ! -f "$ORT_ARM/libonnxruntime.so.$ORT_VERSION" ]; then
    echo "== fetching libonnxruntime.so.$ORT_VERSION for aarch64 (onnxruntime==$ORT_VERSION manylinux aarch64 wheel)"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
        --platform manylinux2014_aarch64 --python-version 3.11 --dest "$tmp" "onnxruntime==$ORT_VERSION"
    mkdir -p "$ORT_ARM"
    python3 - "$tmp" "$ORT_ARM" <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = src.glob("onnxruntime-*aarch64*.whl")
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime")]
    if not names:
        sys.exit(f"{wheel.name} has no onnxruntime/capi/libonnxruntime*")
    for n in names:
        (dst / pathlib.Path(n).name).write_bytes(z.read(n))
print(wheel.name, "->", dst)
PY
    rm -rf "$tmp"
fi
export ORT_DYLIB_PATH=$ORT_ARM/libonnxruntime.so.$ORT_VERSION

echo "== onnxruntime for aarch64: $ORT_DYLIB_PATH"
echo "== qemu-aarch64 -cpu $QEMU_CPU (glibc from $QEMU_LD_PREFIX: $(chroot "$CROSS_ROOT" dpkg-query -W -f='${Version}' libc6-arm64-cross))"
# qemu-user passes /proc/cpuinfo through from the x86 host. onnxruntime's CPU detection
# (pytorch/cpuinfo) then finds no ARM core and dereferences NULL while loading; tract reads the
# same file for its core model. So the tests see the /proc/cpuinfo an ARM64 kernel writes for
# a Jetson Orin's cores (Cortex-A78AE, part 0xd42; the features cortex-a76 emulates), one
# entry per host CPU, bind-mounted in a private mount namespace for the test run only.
CPUINFO=$CROSS_DIR/cpuinfo-orin
: > "$CPUINFO"
for i in $(seq 0 $(($(nproc) - 1))); do
    printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' \
        "$i" "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" >> "$CPUINFO"
done
arm() {
    unshare --mount --propagation private -- /bin/sh -c 'mount --bind "$0" /proc/cpuinfo && exec qemu-aarch64 "$@"' \
        "$CPUINFO" "$@"
}

# run_suite SPLIT EXE [ARGS...]: a test binary of the conformance suite, both backends: in one
# process, or (SPLIT=1, what `all` uses for the slow ALOHA label goldens) one process per backend
# side by side (SARM_TEST_BACKEND, runtime/tests/common/backends.rs), lines prefixed with it.
run_suite() {
    local split=$1 exe=$2; shift 2
    if [ "$split" != 1 ]; then
        arm "$exe" --nocapture "$@"
        return
    fi
    local pids=() b rc=0
    for b in tract ort; do
        (SARM_TEST_BACKEND=$b arm "$exe" --nocapture "$@" 2>&1 | sed -u "s/^/[$b] /"; exit "${PIPESTATUS[0]}") &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return $rc
}

failed=0
while read -r dir exe; do
    echo "== $(basename "$exe") (in ${dir#"$REPO"/})"
    start=$(date +%s)
    split=0
    case $(basename "$exe") in aloha_bundle-*) split=1 ;; esac
    # --nocapture: the tests print their measured differences and the kernels tract picked.
    if (cd "$dir" && run_suite "$split" "$exe" ${SARM_ARM_TEST_FILTER:+"$SARM_ARM_TEST_FILTER"}); then
        echo "== $(basename "$exe"): ok in $(($(date +%s) - start)) s under qemu"
    else
        echo "== $(basename "$exe"): FAILED" >&2
        failed=1
    fi
done < "$CROSS_DIR/test-binaries.txt"

if [ "$SCOPE" = all ]; then
    # The binary's own log of tract's CPU detection (the `log` records tract-linalg writes
    # reach sarm's tracing subscriber), on a short label run of one committed episode.
    out=$(mktemp -d)
    echo "== sarm label (aarch64 binary) on the test bundle's fixture bag, tract's CPU log"
    SARM_LOG=info,tract_linalg=debug QEMU_LD_PREFIX=/usr/aarch64-linux-gnu arm target/cross/aarch64-unknown-linux-gnu/release/sarm \
        label ros/tests/fixtures/label/bag --bundle models/sarm-test --precision int8 \
        --out "$out/progress.parquet" 2>&1 | tail -n 20
    [ -s "$out/progress.parquet" ] || failed=1
    rm -rf "$out"
fi
exit $failed
