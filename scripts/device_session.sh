#!/bin/sh
# device_session.sh: the Node-side GPU checks, on a GPU machine with no Node.js and no network,
# from the archive scripts/device_pack.mjs made (.device/crate-device.tar.xz, carried next to the
# working tree). The no-Node checks (crate_cuda_test, compute-sanitizer, the ctypes kernel
# benchmarks vs PyTorch) are scripts/gpu_check.sh; this script covers what needs Node:
#   setup   unpack node, lib/, node_modules/ and build/Release/ into the working tree; `crate info`
#   suite   the whole vitest suite with CRATE_TEST_DEVICE=cuda (the registry runs on the GPU against
#           the CPU, FlashAttention's 2x criterion; CPU-only files run as usual) -> cuda-suite.{json,log}
#   train   bench/train_step.mjs on cuda: CRATE-B (224, patch 16, batch 64) f32 and bf16 autocast,
#           CRATE-T (32, patch 4) f32, each vs the PyTorch peer (eager, SDPA, torch.compile)
#   scaling bench/scaling.mjs --device cuda (TSSA vs MSSA time and memory as N grows)
# Results go to $OUT (the device tool brings it back) or bench/results/gpu-node-<date>/, with
# REPORT.md summarising each step (status, seconds, counts).
#
#   sh scripts/device_session.sh setup,suite        # first call
#   sh scripts/device_session.sh train,scaling      # second call (the unpacked tree is kept)
# Exit: 0 every step passed, 1 a step failed, 2 usage / setup error, 3 no GPU usable by the addon.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
steps="${1:-setup,suite,train}"
stamp=$(date -u +%Y%m%d-%H%M%S)
out="${OUT:-$here/bench/results/gpu-node-$stamp}"
mkdir -p "$out" || exit 2
report="$out/REPORT.md"
node="$here/.device/node"
rc_all=0
has() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
note() { echo "device_session: $*"; echo "- $*" >> "$report"; }
timed() { # timed NAME LOG CMD...: runs CMD with output in LOG, records status and seconds
  t_name=$1; t_log=$2; shift 2
  t0=$(date +%s)
  "$@" > "$out/$t_log" 2>&1
  t_rc=$?
  t_secs=$(( $(date +%s) - t0 ))
  if [ $t_rc -eq 0 ]; then note "$t_name: PASS (${t_secs}s, log $t_log)"
  else note "$t_name: FAIL rc=$t_rc (${t_secs}s, log $t_log)"; tail -20 "$out/$t_log"; rc_all=1; fi
  return $t_rc
}
{
  echo "# Node-side GPU checks"
  echo ""
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: ${CRATE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
  echo "- command: \`sh scripts/device_session.sh $steps\`"
} >> "$report"

if has setup; then
  [ -f .device/crate-device.tar.xz ] || { note "setup: .device/crate-device.tar.xz missing (run scripts/device_pack.mjs and carry .device)"; exit 2; }
  tar -xJf .device/crate-device.tar.xz -C "$here" || { note "setup: unpacking failed"; exit 2; }
  chmod +x "$node"
fi
[ -x "$node" ] || { note "no Node binary at $node (run the setup step)"; exit 2; }
export PATH="$here/.device:$PATH"
"$node" -e "import('./lib/index.js').then(m => { const i = m.info(); console.log(JSON.stringify(i)); process.exit(i.cudaAvailable ? 0 : 3); })" > "$out/info.json" 2>&1
info_rc=$?
note "crate info: $(cat "$out/info.json" | head -c 600)"
[ $info_rc -eq 0 ] || { note "CUDA is not usable by the addon (exit $info_rc): see info.json"; exit 3; }

if has suite; then
  timed "vitest suite, CRATE_TEST_DEVICE=cuda" cuda-suite.log \
    env CRATE_TEST_DEVICE=cuda CRATE_JSON_REPORT="$out/cuda-suite.json" "$node" node_modules/vitest/vitest.mjs run
  "$node" -e "const r = require('$out/cuda-suite.json'); console.log('tests: ' + r.numPassedTests + ' passed, ' + r.numFailedTests + ' failed, ' + r.numPendingTests + ' skipped')" > "$out/cuda-suite.counts" 2>&1
  note "suite counts: $(cat "$out/cuda-suite.counts")"
fi
if has train; then
  timed "train step CRATE-B f32" train-b224-f32.log "$node" bench/train_step.mjs --preset crate-b224 --device cuda --outdir "$out" --python python3
  timed "train step CRATE-B bf16 autocast" train-b224-amp.log "$node" bench/train_step.mjs --preset crate-b224 --device cuda --amp --outdir "$out" --python python3
  timed "train step CRATE-T f32" train-t32-f32.log "$node" bench/train_step.mjs --preset crate-t32 --device cuda --outdir "$out" --python python3
fi
if has scaling; then
  timed "TSSA vs MSSA scaling on cuda" scaling.log "$node" bench/scaling.mjs --device cuda --outdir "$out"
fi
exit $rc_all
