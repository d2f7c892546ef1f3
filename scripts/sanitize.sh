#!/usr/bin/env bash
# sanitize.sh: builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ and runs the test suite (or the vitest filter given as arguments) under it.
# Fails on any ASan report or UBSan "runtime error". Leak detection is off for the node process
# (V8 keeps memory until exit); scripts/valgrind.sh checks the kernels for leaks.
#   npm run test:asan            # whole suite
#   npm run test:asan -- ops     # a vitest filter
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile --out build-asan --CDCRATE_SANITIZE="address;undefined" --CDCRATE_CUDA=OFF >/dev/null
ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
log=$(mktemp)
set +e
LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1 CRATE_ADDON_PATH="$PWD/build-asan/Release/crate.node" \
  npx vitest run "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|runtime error:" "$log"; then
  echo "[sanitize] sanitizer findings above"
  exit 1
fi
echo "[sanitize] clean (vitest exit $status)"
exit "$status"
