#!/bin/sh
# check_format.sh: fails when native code is not clang-formatted (.clang-format: Google base, 120
# columns) — the C/C++/CUDA sources of native/, the CUDA test harnesses and emulator, bench/native.
# `npm run format` rewrites them. Skips (exit 0, with a message) when clang-format is not installed.
#   sh scripts/check_format.sh [--fix]
cd "$(dirname "$0")/.." || exit 2
if ! command -v clang-format >/dev/null 2>&1; then
  echo "check_format: clang-format not installed: skipped"
  exit 0
fi
files=$(ls native/*/*.cc native/*/*.h native/include/crate/*.h native/cuda/*.cu native/cuda/*.cuh \
  test/cuda/*.cc test/cuda_emu/*.cc test/cuda_emu/*.cu test/cuda_emu/include/*.h test/native/*.cc \
  bench/native/*.cc 2>/dev/null)
if [ "${1:-}" = "--fix" ]; then
  clang-format -i $files
  exit $?
fi
clang-format --dry-run --Werror $files 2> /tmp/check_format.$$ 
rc=$?
if [ $rc -ne 0 ]; then
  grep -o '^[^:]*:' /tmp/check_format.$$ | sort | uniq -c | sed 's/^/check_format: not formatted: /'
  echo "check_format: run \`npm run format\` ($(clang-format --version))"
fi
rm -f /tmp/check_format.$$
exit $rc
