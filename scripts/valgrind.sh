#!/usr/bin/env bash
# valgrind.sh: memcheck (leaks and invalid accesses) over the native kernels through the C ABI:
# the C test programs in test/c are built against build/Release/libcrate.so and run under
# valgrind; any error or definite leak fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=build/Release
test -f "$lib/libcrate.so" || { echo "build first: npm run build:native"; exit 1; }
tmp=$(mktemp -d)
for src in test_rate_tssa test_mssa_ista; do
  gcc -std=c99 -O1 -g -Inative/include "test/c/$src.c" -L"$lib" -lcrate -lm -Wl,-rpath,"$PWD/$lib" -o "$tmp/$src"
  echo "[valgrind] $src"
  CRATE_NUM_THREADS=2 CRATE_TEST_QUICK=1 valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    "$tmp/$src" > "$tmp/$src.out"
  tail -2 "$tmp/$src.out"
done
echo "[valgrind] clean"
