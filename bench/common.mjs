// common.mjs: what every bench script shares: the commit a report is for, the barrier that
// brackets a timed region on the device, the timer (warm-up, then median / min of the repeats) and
// the machine's peaks that % columns are taken against.
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The short commit of the checkout; CRATE_COMMIT where there is no git (a GPU box's copy). */
export function gitCommit() {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: here, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return process.env.CRATE_COMMIT ?? 'unknown';
  }
}

/** A function that waits for the device's queued work (a no-op on the CPU, whose ops are synchronous). */
export function deviceSync(C, device) {
  return device === 'cuda' ? () => C.synchronize() : () => {};
}

/**
 * fwd+bwd of fn on its inputs (made once, outside the timed loop), as a closure to time: the
 * output, its gradient seed and the inputs' gradients are freed each run (tidy keeps nothing: the
 * closure returns nothing).
 */
export function fwdBwd(C, fn, inputs) {
  return () =>
    C.tidy(() => {
      const out = fn(...inputs);
      out.backward(C.onesLike(out));
      for (const x of inputs) if (x.requiresGrad) x.zeroGrad();
    });
}

/** Warm-up runs, then `reps` timed runs each ended by `sync`: median and min in ms. */
export function timeIt(fn, sync, { warmup = 2, reps = 7 } = {}) {
  for (let i = 0; i < warmup; i++) fn();
  sync();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    sync();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], min: t[0], reps };
}

// Dense peaks from the vendor datasheets, TFLOP/s (f32 SIMT, TF32 and bf16 tensor cores) and HBM
// GB/s; an unknown GPU gets no % column.
const GPU_PEAKS = [
  [/H200/, { f32: 67, tf32: 494.7, bf16: 989.4, gbs: 4800 }],
  [/H100.*PCIe/, { f32: 51, tf32: 378, bf16: 756, gbs: 2000 }],
  [/H100.*NVL/, { f32: 60, tf32: 417.5, bf16: 835, gbs: 3900 }],
  [/H100/, { f32: 67, tf32: 494.7, bf16: 989.4, gbs: 3350 }],
  [/A100.*80GB/, { f32: 19.5, tf32: 156, bf16: 312, gbs: 2039 }],
  [/A100/, { f32: 19.5, tf32: 156, bf16: 312, gbs: 1555 }],
];

/**
 * The peaks of the machine a report is for. CPU: FLOP/cycle/core from the detected ISA = 2 FMA
 * pipes × lanes × 2 (AVX-512: 16 f32 lanes, AVX2+FMA: 8, else SSE: 4 without FMA → 8), × the
 * nominal clock Node reports (cpus()[0].speed; 3.0 GHz when it reports none) × threads; bandwidth
 * the measured 256 MiB copy rate of this machine class. GPU: the datasheet row of GPU_PEAKS.
 */
export function machinePeaks(info, device) {
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  let flags = [];
  try {
    flags = (/^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').split(/\s+/);
  } catch {}
  const isa = flags.includes('avx512f') ? 'AVX-512' : flags.includes('avx2') && flags.includes('fma') ? 'AVX2+FMA' : 'SSE';
  const flopPerCycle = isa === 'AVX-512' ? 64 : isa === 'AVX2+FMA' ? 32 : 8;
  const clockGHz = (cpus()[0]?.speed || 3000) / 1000;
  const cpuPeakGflops = flopPerCycle * clockGHz * info.threads;
  const cpuPeakGBs = 31.5;
  const onCuda = device === 'cuda';
  const gpuPeak = onCuda ? (GPU_PEAKS.find(([re]) => re.test(info.cuda?.name ?? ''))?.[1] ?? null) : null;
  /** GFLOP/s peak of a precision ('f32' unless a row says otherwise). */
  const peakOf = (precision = 'f32') =>
    onCuda ? (gpuPeak ? gpuPeak[precision] * 1000 : null) : precision === 'f32' ? cpuPeakGflops : null;
  const deviceName = onCuda
    ? `${info.cuda?.name} (cc ${info.cuda?.computeCapability}, ${info.cuda?.smCount} SMs, driver ${info.cuda?.driverVersion})`
    : `${cpuModel} (${info.threads} threads)`;
  const peakLine = onCuda
    ? gpuPeak
      ? `- peaks used for %: f32 ${gpuPeak.f32}, TF32 ${gpuPeak.tf32}, bf16 ${gpuPeak.bf16} TFLOP/s dense, HBM ${gpuPeak.gbs} GB/s (datasheet of the matched GPU)`
      : '- peaks: GPU not in the table of bench/common.mjs: no % column'
    : `- peak used for %: ${cpuPeakGflops.toFixed(0)} GFLOP/s (${isa}: ${flopPerCycle} FLOP/cycle/core × ${clockGHz.toFixed(2)} GHz × ${info.threads} threads); bandwidth reference ${cpuPeakGBs} GB/s`;
  return {
    isa: onCuda ? null : isa,
    clockGHz: onCuda ? null : clockGHz,
    flopPerCycle,
    gpuPeak,
    peakOf,
    peakGflops: peakOf('f32'),
    peakGBs: onCuda ? (gpuPeak?.gbs ?? null) : cpuPeakGBs,
    deviceName,
    peakLine,
  };
}
