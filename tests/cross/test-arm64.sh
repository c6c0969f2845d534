#!/usr/bin/env bash
# The goldens on ARM64 kernels: cross-built test binaries run under qemu-user with a NEON-only
# CPU model (cortex-a76: NEON, fp16, SDOT, no SVE, like the Cortex-A78AE of a Jetson Orin;
# qemu's default `-cpu max` has SVE and tract would pick kernels Orin does not run).
#
#   tests/cross/test-arm64.sh runtime   LeRobot parity (fp32, int8), the encoder and smoother,
#                                       and the kernels tract picked (sarm-runtime tests)
#   tests/cross/test-arm64.sh all       runtime, then `sarm label` on the committed ALOHA
#                                       episodes against golden.json (sarm-tests aloha_bundle)
#                                       and the sarm binary's own tract kernel log
#   tests/cross/test-arm64.sh node      the ARM64 node: `sarm run` (the embedded default) to
#                                       its end, a stop by SIGTERM, and `sarm link-check`
#                                       delivering to an x86 `sarm sink` (loopback)
#
# Builds what it needs with build-arm64.sh (cached: a second run builds nothing new). The
# tolerances are the tests' own, the same as on x86. Timings under qemu say nothing about a
# real ARM core's speed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CROSS_DIR=${SARM_CROSS_DIR:-$REPO/.cross}
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
SCOPE=${1:-runtime}

build=(tests sarm-runtime:golden_parity,encoder_and_smoother,tract_kernels)
case $SCOPE in
    runtime) ;;
    all) build=(bin "${build[@]}" tests sarm-tests:aloha_bundle) ;;
    node) exec "$(dirname "$0")/node-arm64.sh" ;;
    *) echo "usage: $0 [runtime|all|node]" >&2; exit 2 ;;
esac
tests/cross/build-arm64.sh "${build[@]}"

echo "== qemu-aarch64 -cpu $QEMU_CPU (glibc from $QEMU_LD_PREFIX: $(ls $QEMU_LD_PREFIX/lib/libc.so.6 >/dev/null && dpkg-query -W -f='${Version}' libc6-arm64-cross))"
failed=0
while read -r dir exe; do
    echo "== $(basename "$exe") (in ${dir#"$REPO"/})"
    start=$(date +%s)
    # --nocapture: the tests print their measured differences and the kernels tract picked.
    if (cd "$dir" && qemu-aarch64 "$exe" --nocapture); then
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
    SARM_LOG=info,tract_linalg=debug qemu-aarch64 target/cross/aarch64-unknown-linux-gnu/release/sarm \
        label ros/tests/fixtures/label/bag --bundle models/sarm-test --precision int8 \
        --out "$out/progress.parquet" 2>&1 | tail -n 20
    [ -s "$out/progress.parquet" ] || failed=1
    rm -rf "$out"
fi
exit $failed
