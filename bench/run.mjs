#!/usr/bin/env node
// run.mjs: the benchmark harness (`npm run bench`, `crate bench`). Times the fused CRATE ops
// against their composite (unfused) path, the primitive hot ops, and MSSA's peak memory vs the
// composite's N×N, on the CPU or (--device cuda) on the GPU. Warm-up runs are separate from timed
// runs; each case reports the median and min of the repeats, napkin-math FLOP and byte counts,
// GFLOP/s, GB/s and % of the machine's peak. On CUDA every timed run is bracketed by synchronize()
// (the time a training step sees, launch overhead and the tape included; the kernel-only timings
// with CUDA events and L2 flushes are bench/peers/cuda_torch.py's), GEMMs run f32, TF32 and bf16
// (autocast), peaks come from a table of known GPUs, and memory is the allocator's peak.
// Output: JSON lines (<outdir>/<name>.jsonl) and a markdown table (.md).
//   node bench/run.mjs [--filter mssa] [--quick] [--name cpu-ops|cuda-ops] [--threads n] [--device cpu|cuda]
//        [--outdir bench/results]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceSync, fwdBwd as fwdBwdOf, gitCommit, machinePeaks, timeIt as timeCase } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { values: args } = parseArgs({
  options: {
    filter: { type: 'string' },
    quick: { type: 'boolean' },
    name: { type: 'string' },
    threads: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    outdir: { type: 'string' },
    'memory-child': { type: 'string' },
  },
});

// ---------------------------------------------------------------- memory child mode
// Runs one MSSA variant in a fresh process and prints the peak RSS growth (VmHWM) in bytes.
if (args['memory-child']) {
  const [variant, N] = args['memory-child'].split(':');
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
  const P = C.randn([1, Number(N), 64], { seed: 1, requiresGrad: true, device: args.device });
  const onCuda = args.device === 'cuda';
  const before = onCuda ? C.memory().cuda.bytes : hwm();
  const f = variant === 'fused' ? C.mssa : C.composite.mssaComposite;
  const O = f(P, { heads: 1 });
  O.backward(C.onesLike(O));
  if (onCuda) C.synchronize();
  console.log(JSON.stringify({ peakGrowth: (onCuda ? C.memory().cuda.peakBytes : hwm()) - before }));
  process.exit(0);
}

if (args.threads) C.setNumThreads(Number(args.threads));
const info = C.info();
const quick = !!args.quick;
const commit = gitCommit();
const device = args.device;
if (device !== 'cpu' && device !== 'cuda') throw new Error(`--device must be cpu or cuda, got ${device}`);
if (device === 'cuda' && !info.cudaAvailable) {
  console.error(`bench: --device cuda but CUDA is not available: ${info.cudaReason}`);
  process.exit(3);
}
const machine = machinePeaks(info, device);
const { isa, clockGHz, gpuPeak, peakOf, peakGflops, peakGBs } = machine;
const sync = deviceSync(C, device);

const timeIt = (fn, { warmup = 2, reps = quick ? 3 : 7 } = {}) => timeCase(fn, sync, { warmup, reps });
const fwdBwd = (fn, inputs) => fwdBwdOf(C, fn, inputs);


const rows = [];
function record(row) {
  const r = {
    ...row,
    gflops: row.flops ? row.flops / (row.median * 1e6) : null,
    gbs: row.bytes ? row.bytes / (row.median * 1e6) : null,
  };
  const peak = peakOf(row.precision);
  r.pctPeak = r.gflops && peak ? (100 * r.gflops) / peak : null;
  rows.push(r);
  const f = (x, d = 1) => (x === null || x === undefined ? '' : x.toFixed(d));
  console.log(
    `${r.op.padEnd(26)} ${r.shape.padEnd(30)} ${r.path.padEnd(10)} ${f(r.median, 2).padStart(9)} ms  ${f(r.gflops).padStart(7)} GFLOP/s ${f(r.gbs).padStart(7)} GB/s${r.speedup ? `  ×${r.speedup.toFixed(2)} vs composite` : ''}`,
  );
}

const want = (name) => !args.filter || name.includes(args.filter);

// ---------------------------------------------------------------- CRATE ops: fused vs composite
function cratePair(op, shape, make, fused, composite, flops, bytes) {
  if (!want(op)) return;
  const inputs = make();
  const tf = timeIt(fwdBwd(fused, inputs));
  const tc = timeIt(fwdBwd(composite, inputs));
  record({ op, shape, path: 'fused', ...tf, flops, bytes, speedup: tc.median / tf.median });
  record({ op, shape, path: 'composite', ...tc, flops, bytes });
  for (const x of inputs) x.dispose();
}

const g = (shape, seed, extra = {}) => C.randn(shape, { seed, requiresGrad: true, device, ...extra });
const mssaShapes = quick
  ? [[8, 65, 6, 64]]
  : [
      [8, 65, 6, 64], // CRATE-T on 32×32 / patch 4 (B=8)
      [4, 197, 6, 64], // CRATE-T at 224/16
      [1, 1024, 6, 64],
    ];
for (const [B, N, H, p] of mssaShapes) {
  // fwd 4N²p + bwd 8N²p (with the Q=K=V sharing) per head; bytes: P, O, dO, dP
  cratePair(
    'mssa fwd+bwd',
    `B${B} N${N} H${H} p${p}`,
    () => [g([B, N, H * p], 1)],
    (P) => C.mssa(P, { heads: H }),
    (P) => C.composite.mssaComposite(P, { heads: H }),
    B * H * 12 * N * N * p,
    4 * 4 * B * N * H * p,
  );
}
for (const [T, d] of quick ? [[2080, 384]] : [[2080, 384], [8 * 197, 384]]) {
  // fused: M = W − WᵀW (2d³) + one GEMM 2Td² fwd; bwd 2 GEMMs 4Td² + 2d³
  cratePair(
    'ista fwd+bwd',
    `T${T} d${d}`,
    () => [g([T, d], 2), g([d, d], 3, { std: 0.05 })],
    (Y, W) => C.ista(Y, W, 0.1, 0.1),
    (Y, W) => C.composite.istaComposite(Y, W, 0.1, 0.1),
    6 * T * d * d + 4 * d * d * d,
    4 * 4 * T * d,
  );
}
for (const [B, N, H, p] of quick ? [[8, 1024, 6, 64]] : [[8, 1024, 6, 64], [8, 4096, 6, 64]]) {
  cratePair(
    'tssa fwd+bwd',
    `B${B} N${N} H${H} p${p}`,
    () => [g([B, N, H * p], 4), C.ones([H], { requiresGrad: true, device })],
    (W, t) => C.tssa(W, t, H),
    (W, t) => C.composite.tssaComposite(W, t, H),
    B * N * H * p * 30,
    4 * 4 * B * N * H * p,
  );
}
if (want('codingRate')) {
  for (const [b, m, n] of quick ? [[384, 64, 197]] : [[384, 64, 197], [64, 256, 256]]) {
    const Z = g([b, m, n], 5);
    const k = Math.min(m, n);
    const t = timeIt(fwdBwd((z) => C.logdetGram(z, 0.05), [Z]));
    // Gram 2k²max + Cholesky k³/3 + solves 2k²·max (fwd+bwd, Gram once each)
    record({ op: 'codingRate fwd+bwd', shape: `batch${b} ${m}x${n}`, path: 'fused', ...t, flops: b * (4 * k * k * Math.max(m, n) + (k * k * k) / 3 + 2 * k * k * Math.max(m, n)), bytes: 4 * 2 * b * m * n });
    Z.dispose();
  }
}
if (want('layerNorm')) {
  // fused row kernel vs the same math from primitives: (x − mean)/√(var + eps)·w + b
  const lnComposite = (x, w, b) => {
    const m = C.mean(x, -1, true);
    const d = C.sub(x, m);
    const v = C.mean(C.mul(d, d), -1, true);
    return C.add(C.mul(C.div(d, C.sqrt(C.add(v, 1e-5))), w), b);
  };
  cratePair(
    'layerNorm fwd+bwd',
    '8192x384',
    () => [g([8192, 384], 6), C.ones([384], { requiresGrad: true, device }), C.zeros([384], { requiresGrad: true, device })],
    (x, w, b) => C.layerNorm(x, w, b),
    lnComposite,
    8192 * 384 * 16,
    4 * 8192 * 384 * 5,
  );
}
if (want('matmul')) {
  // square sizes, then the CRATE-T token GEMMs (B·N = 2080 tokens at 32×32/patch 4, batch 32):
  // x·W (384→384), x·W (384→1536), x·W (1536→384), and the Linear layout x·Wᵀ. CPU: the own GEMM
  // vs OpenBLAS; CUDA: the loaded GEMM (cuBLASLt/cuBLAS or own) in f32, TF32 and bf16 (autocast).
  const cases = quick
    ? [[1024, 1024, 1024, false]]
    : [[256, 256, 256, false], [1024, 1024, 1024, false], [2048, 2048, 2048, false], ...(device === 'cuda' ? [[8192, 8192, 8192, false]] : []), [2080, 384, 384, false], [2080, 1536, 384, false], [2080, 384, 1536, false], [2080, 384, 384, true]];
  const variants =
    device === 'cuda'
      ? [
          ['f32', () => C.setAllowTF32(false), (f) => f()],
          ['tf32', () => C.setAllowTF32(true), (f) => f()],
          ['bf16', () => C.setAllowTF32(false), (f) => C.autocast(f)],
        ]
      : [['own', () => C.setGemmBackend('own'), (f) => f()], ...(info.blasLibrary ? [['blas', () => C.setGemmBackend('blas'), (f) => f()]] : [])];
  for (const [M, N, K, tB] of cases) {
    const a = C.randn([M, K], { seed: 7, device });
    const bb = C.randn(tB ? [N, K] : [K, N], { seed: 8, device });
    const ratio = {};
    for (const [path, setup, wrap] of variants) {
      setup();
      // the closure returns nothing, so tidy disposes the product too (a returned tensor would be kept)
      const product = () =>
        C.tidy(() => {
          wrap(() => C.matmul(a, bb, { transB: tB }));
        });
      const t = timeIt(product, { reps: quick ? 3 : 9 });
      ratio[path] = t.median;
      const shape = M === N && N === K ? `${M}³` : `${M}x${N}x${K}${tB ? ' (x·Wᵀ)' : ''}`;
      const precision = device === 'cuda' ? path : 'f32';
      record({ op: `matmul ${device === 'cuda' ? path : 'f32'}`, shape, path: device === 'cuda' ? info.cuda?.gemm ?? 'cuda' : path, precision, ...t, flops: 2 * M * N * K, bytes: 4 * (M * K + K * N + M * N) });
    }
    if (ratio.blas) rows[rows.length - 2].ownVsBlas = ratio.blas / ratio.own;
    if (device === 'cuda') C.setAllowTF32(false);
    else C.setGemmBackend(info.gemmBackend);
    a.dispose();
    bb.dispose();
  }
}

// ---------------------------------------------------------------- MSSA memory vs composite
const memRows = [];
if (want('memory')) {
  for (const N of quick ? [1024] : [1024, 4096]) {
    for (const variant of ['fused', 'composite']) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--memory-child', `${variant}:${N}`, '--device', device], { encoding: 'utf8' });
      const m = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()) : { peakGrowth: Number.NaN };
      memRows.push({ N, variant, peakGrowthMiB: m.peakGrowth / 2 ** 20, nxnMiB: (4 * N * N) / 2 ** 20 });
      console.log(`mssa memory N=${N} ${variant}: peak ${device === 'cuda' ? 'device' : 'RSS'} growth ${(m.peakGrowth / 2 ** 20).toFixed(1)} MiB (one N×N f32 = ${((4 * N * N) / 2 ** 20).toFixed(1)} MiB)`);
    }
  }
}

// ---------------------------------------------------------------- report
const onCuda = device === 'cuda';
const name = args.name ?? `${device}-ops${quick ? '-quick' : ''}`;
const outDir = args.outdir ? resolve(args.outdir) : join(here, 'results');
mkdirSync(outDir, { recursive: true });
const deviceName = machine.deviceName;
const gemmName = onCuda ? info.cuda?.gemm : info.gemmBackend;
const meta = { date: new Date().toISOString(), commit, deviceKind: device, device: deviceName, isa: onCuda ? null : isa, clockGHz: onCuda ? null : clockGHz, gemm: gemmName, blas: onCuda ? null : info.blasLibrary, node: process.version, peakGflops, peakGBs, gpuPeak };
writeFileSync(join(outDir, `${name}.jsonl`), [JSON.stringify({ meta }), ...rows.map((r) => JSON.stringify(r)), ...memRows.map((r) => JSON.stringify({ memory: r }))].join('\n') + '\n');
const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
const peakLine = machine.peakLine;
const md = [
  `# ${onCuda ? 'CUDA' : 'CPU'} kernel benchmarks (${name})`,
  '',
  `- device: ${meta.device}; GEMM backend: ${meta.gemm}${meta.blas ? ` (${meta.blas})` : ''}; node ${meta.node}`,
  `- commit: ${commit}; date: ${meta.date}`,
  `- command: \`node bench/run.mjs${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\``,
  peakLine,
  `- timings: median (min) of the timed repeats after 2 warm-up runs; fwd+bwd includes the tape and allocation, as a training step sees it${onCuda ? '; each run ends with synchronize()' : ''}`,
  '',
  `| op | shape | path | median ms | min ms | GFLOP/s | % peak | GB/s | fused vs composite |${onCuda ? '' : ' own / OpenBLAS |'}`,
  `|---|---|---|---:|---:|---:|---:|---:|---:|${onCuda ? '' : '---:|'}`,
  ...rows.map((r) => `| ${r.op} | ${r.shape} | ${r.path} | ${f(r.median, 2)} | ${f(r.min, 2)} | ${f(r.gflops)} | ${f(r.pctPeak)} | ${f(r.gbs)} | ${r.speedup ? `${r.speedup.toFixed(2)}×` : ''} |${onCuda ? '' : ` ${r.ownVsBlas ? `${(100 * r.ownVsBlas).toFixed(0)}%` : ''} |`}`),
  '',
  ...(memRows.length
    ? [
        `## MSSA fwd+bwd peak memory (fresh process, growth of ${onCuda ? 'the allocator\'s peak device bytes' : 'peak RSS'})`,
        '',
        '| N | path | peak growth MiB | one N×N f32 MiB |',
        '|---:|---|---:|---:|',
        ...memRows.map((m) => `| ${m.N} | ${m.variant} | ${f(m.peakGrowthMiB)} | ${f(m.nxnMiB)} |`),
        '',
      ]
    : []),
];
writeFileSync(join(outDir, `${name}.md`), md.join('\n'));
console.log(`\nwrote ${join(outDir, name)}.md and .jsonl`);
