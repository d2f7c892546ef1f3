#!/bin/sh
# gpu_check.sh: the one command that proves the CUDA backend on a GPU machine. No Node.js needed:
# cmake, a C++17 compiler and nvcc build libcrate.so, libcrate_cuda.so and crate_cuda_test; then
#   test        crate_cuda_test: every crate_cuda.h entry vs the CPU kernels (f32 and f64 truth)
#   sticky      crate_cuda_test --sticky in its own process (an illegal address poisons the context)
#   memcheck    compute-sanitizer --tool memcheck  on crate_cuda_test --small
#   racecheck   compute-sanitizer --tool racecheck on crate_cuda_test --small
#   synccheck   compute-sanitizer --tool synccheck on crate_cuda_test --small
#   initcheck   compute-sanitizer --tool initcheck on crate_cuda_test --small
#   bench       bench/peers/cuda_torch.py: correctness vs torch references + fwd+bwd timings vs torch
# Everything (logs, counts, nvidia-smi -q, driver, commit, the bench report) goes to the output
# dir ($OUT if set, else bench/results/gpu-<date>/), summarised in REPORT.md there.
#
#   sh scripts/gpu_check.sh [--quick] [--steps build,test,...] [--out DIR]
#
#   --steps    comma list from: info build test sticky memcheck racecheck synccheck initcheck bench
#              (default: all). build runs whenever a later step needs a missing binary.
#   --quick    bench with small shapes (correctness still full), sanitizers unchanged
# Environment: OUT (output dir), CRATE_CUDA_ARCHS (e.g. 90a-real; default: CMakeLists' 80/90a/90
#   list), CRATE_GPU_BUILD_DIR (default build-gpu), PYTHON (default python3), JOBS (build jobs),
#   CRATE_COMMIT (commit id when this copy has no .git), CRATE_STEP_TIMEOUT (seconds per test or
#   sanitizer step, default 300; the bench gets twice that).
# Exit: 0 all run steps passed; 3 no usable GPU (build checked, everything else skipped);
#       1 a step failed; 2 usage or build error.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
steps="info,build,test,sticky,memcheck,racecheck,synccheck,initcheck,bench"
quick=""
out="${OUT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --steps=*) steps="${1#--steps=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --quick) quick="--quick"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
stamp=$(date -u +%Y%m%d-%H%M%S)
[ -n "$out" ] || out="$here/bench/results/gpu-$stamp"
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
build="${CRATE_GPU_BUILD_DIR:-build-gpu}"
python="${PYTHON:-python3}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
step_timeout="${CRATE_STEP_TIMEOUT:-300}"
report="$out/REPORT.md"
summary="$out/.summary"
: > "$summary"
t_start=$(date +%s)

has_step() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
log() { echo "gpu_check: $*"; }
# record STEP STATUS DETAIL LOGFILE SECONDS
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$summary"; log "$1: $2 $3"; }
# (sh has no local variables: each function's variables carry its prefix)
with_timeout() {  # with_timeout SECONDS cmd...
  wt_t=$1; shift
  if command -v timeout >/dev/null 2>&1; then timeout -k 10 "$wt_t" "$@"; else "$@"; fi
}
# run_logged LOGFILE SECONDS cmd... -> exit status of cmd; output to the log and the console
run_logged() {
  rl_lf=$1; rl_t=$2; shift 2
  echo "\$ $*" > "$rl_lf"
  { with_timeout "$rl_t" "$@" 2>&1; echo "$?" > "$rl_lf.rc"; } | tee -a "$rl_lf"
  rl_rc=$(cat "$rl_lf.rc"); rm -f "$rl_lf.rc"
  return "$rl_rc"
}
counts() {  # the summary line of crate_cuda_test in a log
  grep -E '^cuda tests:' "$1" | tail -n 1 | sed 's/^cuda tests: //'
}

# ------------------------------------------------------------------------------------ info
commit=$(git -C "$here" rev-parse HEAD 2>/dev/null || true)
if [ -n "$commit" ]; then
  git -C "$here" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && commit="$commit (+ uncommitted changes)"
else
  commit="${CRATE_COMMIT:-unknown (no .git here; set CRATE_COMMIT)}"
fi
CRATE_COMMIT="${CRATE_COMMIT:-$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
export CRATE_COMMIT

gpu="none"
driver="none"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -q > "$out/nvidia-smi-q.txt" 2>&1 || true
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
  if nvidia-smi -L > "$out/nvidia-smi-L.txt" 2>&1 && grep -q '^GPU ' "$out/nvidia-smi-L.txt"; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
  fi
else
  echo "nvidia-smi not found" > "$out/nvidia-smi-q.txt"
fi
nvcc_bin=$(command -v nvcc 2>/dev/null || true)
[ -n "$nvcc_bin" ] || for d in "${CUDA_HOME:-}" /usr/local/cuda; do
  [ -n "$d" ] && [ -x "$d/bin/nvcc" ] && nvcc_bin="$d/bin/nvcc" && break
done
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -n) ($(uname -srm))"
  echo "commit: $commit"
  echo "gpu: $gpu"
  echo "driver: $driver"
  echo "nvcc: ${nvcc_bin:-not found} $( [ -n "$nvcc_bin" ] && "$nvcc_bin" --version | tail -n 2 | tr '\n' ' ')"
  echo "cmake: $(cmake --version 2>/dev/null | head -n 1)"
  echo "c++: $(c++ --version 2>/dev/null | head -n 1)"
  echo "python: $($python --version 2>&1) torch: $($python -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1)"
  echo "CRATE_CUDA_ARCHS: ${CRATE_CUDA_ARCHS:-<unset: CMakeLists default>}"
  echo "cpus: $(nproc 2>/dev/null)  memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)"
} > "$out/env.txt"
cat "$out/env.txt"
[ "$gpu" = "none" ] && log "no GPU visible to nvidia-smi: the build is checked, GPU steps will report skipped"

# ----------------------------------------------------------------------------------- build
test_bin="$here/$build/Release/crate_cuda_test"
[ "${build#/}" != "$build" ] && test_bin="$build/Release/crate_cuda_test"
cuda_lib="$(dirname "$test_bin")/libcrate_cuda.so"
need_build=""
if has_step build; then need_build=1; fi
for s in test sticky memcheck racecheck synccheck initcheck bench; do
  if has_step "$s" && [ ! -x "$test_bin" ]; then need_build=1; fi
done
build_ok=1
if [ -n "$need_build" ]; then
  if [ -z "$nvcc_bin" ]; then
    record build FAIL "nvcc not found (PATH, CUDA_HOME, /usr/local/cuda)" "" 0
    build_ok=""
  else
    t0=$(date +%s)
    gen=""
    if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then gen="-G Ninja"; fi
    # shellcheck disable=SC2086
    if run_logged "$out/build.log" 3600 cmake -S . -B "$build" $gen -DCMAKE_BUILD_TYPE=Release -DCRATE_CUDA=ON \
         -DCMAKE_CUDA_COMPILER="$nvcc_bin" &&
       run_logged "$out/build.log.2" 3600 cmake --build "$build" --target crate crate_cuda crate_cuda_test -j "$jobs"; then
      cat "$out/build.log.2" >> "$out/build.log"; rm -f "$out/build.log.2"
      archs=$(grep -E '^CMAKE_CUDA_ARCHITECTURES' "$build/CMakeCache.txt" 2>/dev/null | cut -d= -f2)
      record build PASS "libcrate.so, libcrate_cuda.so, crate_cuda_test (archs ${CRATE_CUDA_ARCHS:-${archs:-default}})" build.log $(( $(date +%s) - t0 ))
    else
      [ -f "$out/build.log.2" ] && { cat "$out/build.log.2" >> "$out/build.log"; rm -f "$out/build.log.2"; }
      record build FAIL "see build.log ($(grep -m 1 -iE 'error' "$out/build.log" | cut -c1-160))" build.log $(( $(date +%s) - t0 ))
      build_ok=""
    fi
  fi
fi

# ------------------------------------------------------------------------------ GPU steps
no_gpu=""
skip_reason=""
run_test_step() {  # run_test_step NAME LOG cmd...
  ts_name=$1; ts_lf=$2; shift 2
  ts_t0=$(date +%s)
  run_logged "$out/$ts_lf" "$step_timeout" "$@"
  ts_rc=$?
  ts_secs=$(( $(date +%s) - ts_t0 ))
  ts_c=$(counts "$out/$ts_lf")
  case "$ts_c" in
    skipped*) no_gpu=1; skip_reason="$ts_c"; record "$ts_name" SKIP "$ts_c" "$ts_lf" "$ts_secs"; return ;;
  esac
  if [ "$ts_rc" -eq 124 ] || [ "$ts_rc" -eq 137 ]; then
    record "$ts_name" TIMEOUT "after ${step_timeout}s; ${ts_c:-no summary}" "$ts_lf" "$ts_secs"
  elif [ "$ts_rc" -eq 0 ]; then record "$ts_name" PASS "${ts_c:-rc 0}" "$ts_lf" "$ts_secs"
  else record "$ts_name" FAIL "rc $ts_rc; ${ts_c:-no summary line (crash?)}" "$ts_lf" "$ts_secs"
  fi
}

if [ -n "$build_ok" ] && [ -x "$test_bin" ]; then
  if has_step test; then
    run_test_step test cuda_test.log "$test_bin"
  fi
  if has_step sticky; then
    if [ -n "$no_gpu" ]; then record sticky SKIP "no GPU" "" 0
    else run_test_step sticky cuda_sticky.log "$test_bin" --sticky
    fi
  fi
  sanitizer=$(command -v compute-sanitizer 2>/dev/null || true)
  if [ -z "$sanitizer" ]; then
    nvcc_real=$(readlink -f "${nvcc_bin:-/nonexistent}" 2>/dev/null || echo "${nvcc_bin:-/nonexistent}")
    for d in "${CUDA_HOME:-}" "$(dirname "$nvcc_real")/.." "$(dirname "${nvcc_bin:-/nonexistent}")/.." /usr/local/cuda; do
      [ -n "$d" ] && [ -x "$d/bin/compute-sanitizer" ] && sanitizer="$d/bin/compute-sanitizer" && break
      [ -n "$d" ] && [ -x "$d/compute-sanitizer/compute-sanitizer" ] && sanitizer="$d/compute-sanitizer/compute-sanitizer" && break
    done
  fi
  for tool in memcheck racecheck synccheck initcheck; do
    has_step "$tool" || continue
    if [ -n "$no_gpu" ]; then record "$tool" SKIP "no GPU" "" 0; continue; fi
    if [ -z "$sanitizer" ]; then record "$tool" FAIL "compute-sanitizer not found (PATH, CUDA_HOME, next to nvcc)" "" 0; continue; fi
    # The intentional API errors (1 PiB cudaMalloc, bad frees) are left out; racecheck, synccheck
    # and initcheck look at our kernels, not cuBLAS's.
    t0=$(date +%s)
    lf="sanitizer_$tool.log"
    # shellcheck disable=SC2086
    if [ "$tool" = memcheck ]; then
      run_logged "$out/$lf" "$step_timeout" "$sanitizer" --tool memcheck --leak-check no --error-exitcode 86 \
        --print-limit 50 "$test_bin" --small --exclude "1 PiB" --exclude "bad pointer"
    else
      run_logged "$out/$lf" "$step_timeout" "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 50 \
        "$test_bin" --small --exclude "1 PiB" --exclude "bad pointer" --exclude "gemm cublas"
    fi
    rc=$?
    secs=$(( $(date +%s) - t0 ))
    errs=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$lf" | tail -n 1 | sed 's/^=*[ ]*//')
    c=$(counts "$out/$lf")
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then record "$tool" TIMEOUT "after ${step_timeout}s; ${errs:-}" "$lf" "$secs"
    elif [ "$rc" -eq 0 ]; then record "$tool" PASS "${errs:-no summary}; tests: ${c:-?}" "$lf" "$secs"
    elif [ "$rc" -eq 86 ]; then record "$tool" FAIL "${errs:-sanitizer errors}; tests: ${c:-?}" "$lf" "$secs"
    else record "$tool" FAIL "rc $rc; ${errs:-}; tests: ${c:-no summary line}" "$lf" "$secs"
    fi
  done
  if has_step bench; then
    if [ -n "$no_gpu" ]; then
      record bench SKIP "no GPU" "" 0
    else
      t0=$(date +%s)
      run_logged "$out/bench.log" $(( step_timeout * 2 )) "$python" bench/peers/cuda_torch.py --strict $quick \
        --lib "$cuda_lib" --outdir "$out" --name cuda-ops-vs-torch
      rc=$?
      secs=$(( $(date +%s) - t0 ))
      line=$(grep -E '^cuda_torch: ' "$out/bench.log" | tail -n 1 | sed 's/^cuda_torch: //')
      if [ "$rc" -eq 0 ]; then record bench PASS "$line" bench.log "$secs"
      elif [ "$rc" -eq 2 ]; then record bench FAIL "$line" bench.log "$secs"
      elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then record bench TIMEOUT "after $(( step_timeout * 2 ))s" bench.log "$secs"
      else record bench FAIL "rc $rc; $line" bench.log "$secs"
      fi
    fi
  fi
elif has_step test || has_step bench; then
  log "no crate_cuda_test binary: GPU steps not run"
fi

# ---------------------------------------------------------------------------------- report
total=$(( $(date +%s) - t_start ))
npass=$(awk -F'\t' '$2 == "PASS"' "$summary" | wc -l | tr -d ' ')
nfail=$(awk -F'\t' '$2 == "FAIL" || $2 == "TIMEOUT"' "$summary" | wc -l | tr -d ' ')
nskip=$(awk -F'\t' '$2 == "SKIP"' "$summary" | wc -l | tr -d ' ')
if [ "$nfail" -gt 0 ]; then verdict="FAILED ($nfail step(s) failed)"; code=1
elif [ -n "$no_gpu" ]; then verdict="no GPU: $skip_reason"; code=3
elif [ "$npass" -eq 0 ]; then verdict="nothing run"; code=2
else verdict="PASSED"; code=0
fi
{
  echo "# CUDA backend check: $verdict"
  echo
  echo "- command: \`sh scripts/gpu_check.sh$( [ -n "$quick" ] && echo " --quick") --steps $steps\` (output: $out)"
  sed 's/^/- /' "$out/env.txt"
  echo "- total time: ${total}s"
  echo
  echo "| step | result | detail | log | seconds |"
  echo "|---|---|---|---|---:|"
  awk -F'\t' '{ gsub(/\|/, "/", $3); printf "| %s | %s | %s | %s | %s |\n", $1, ($2 == "PASS" ? $2 : "**" $2 "**"), $3, $4, $5 }' "$summary"
  echo
  if [ -f "$out/cuda_test.log" ]; then
    nf=$(grep -c '^FAIL' "$out/cuda_test.log" 2>/dev/null || true)
    if [ "${nf:-0}" -gt 0 ]; then
      echo "## Failed cases (crate_cuda_test)"
      echo
      echo '```'
      grep '^FAIL' "$out/cuda_test.log" | cut -c1-600 | head -n 60
      echo '```'
      echo
    fi
  fi
  if [ -f "$out/cuda-ops-vs-torch.md" ]; then
    echo "## Bench (bench/peers/cuda_torch.py): see cuda-ops-vs-torch.md"
    echo
    grep -E '^## Correctness' "$out/cuda-ops-vs-torch.md" || true
    echo
  fi
  if [ -s "$out/nvidia-smi-q.txt" ]; then
    echo "## nvidia-smi -q (excerpt; full text in nvidia-smi-q.txt)"
    echo
    echo '```'
    head -n 3 "$out/nvidia-smi-q.txt" | grep -v '^\s*$' | grep -qv '=====' && ! grep -q 'Driver Version' "$out/nvidia-smi-q.txt" &&
      head -n 5 "$out/nvidia-smi-q.txt"
    grep -E '^\s*(Driver Version|CUDA Version|Product Name|Product Architecture|Persistence Mode|Current|Pending|Compute Mode|Bus Id|Total|Graphics|SM|Memory|Max Clocks|Power Limit|Current Power Limit|Performance State|GPU Current Temp|Volatile|Clocks Event Reasons Active|Clocks Throttle Reasons Active|MIG Mode|Serial Number|VBIOS Version)\b' \
      "$out/nvidia-smi-q.txt" | head -n 60
    echo '```'
  fi
} > "$report"
rm -f "$summary"
echo
echo "gpu_check: $verdict -> $report"
exit $code
