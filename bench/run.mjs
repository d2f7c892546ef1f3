#!/usr/bin/env node
// run.mjs: the benchmark harness (`npm run bench`, `crate bench`). Times the fused CRATE ops
// against their composite (unfused) path, the primitive hot ops, and MSSA's peak memory vs the
// composite's N×N, on the CPU. Warm-up runs are separate from timed runs; each case reports the
// median and min of the repeats, napkin-math FLOP and byte counts, GFLOP/s, GB/s and % of the
// machine's peak. Output: JSON lines (bench/results/<name>.jsonl) and a markdown table (.md).
//   node bench/run.mjs [--filter mssa] [--quick] [--name cpu-ops] [--threads n]
import { execSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { values: args } = parseArgs({
  options: {
    filter: { type: 'string' },
    quick: { type: 'boolean' },
    name: { type: 'string' },
    threads: { type: 'string' },
    'memory-child': { type: 'string' },
  },
});

// ---------------------------------------------------------------- memory child mode
// Runs one MSSA variant in a fresh process and prints the peak RSS growth (VmHWM) in bytes.
if (args['memory-child']) {
  const [variant, N] = args['memory-child'].split(':');
  const { readFileSync } = await import('node:fs');
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
  const P = C.randn([1, Number(N), 64], { seed: 1, requiresGrad: true });
  const before = hwm();
  const f = variant === 'fused' ? C.mssa : C.composite.mssaComposite;
  const O = f(P, { heads: 1 });
  O.backward(C.onesLike(O));
  console.log(JSON.stringify({ peakGrowth: hwm() - before }));
  process.exit(0);
}

if (args.threads) C.setNumThreads(Number(args.threads));
const info = C.info();
const quick = !!args.quick;
const commit = (() => {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: here }).toString().trim();
  } catch {
    return 'unknown';
  }
})();
const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
// Peak from the detected ISA, clock and thread count: FLOP/cycle/core = 2 FMA pipes × lanes × 2
// (AVX-512: 16 f32 lanes, AVX2+FMA: 8, else SSE: 4 without FMA → 8 FLOP/cycle); the clock is the
// nominal one Node reports (cpus()[0].speed, MHz), 3.0 GHz when it reports none.
const cpuFlags = (() => {
  try {
    return (/^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').split(/\s+/);
  } catch {
    return [];
  }
})();
const isa = cpuFlags.includes('avx512f') ? 'AVX-512' : cpuFlags.includes('avx2') && cpuFlags.includes('fma') ? 'AVX2+FMA' : 'SSE';
const flopPerCycle = isa === 'AVX-512' ? 64 : isa === 'AVX2+FMA' ? 32 : 8;
const clockGHz = (cpus()[0]?.speed || 3000) / 1000;
const peakGflops = flopPerCycle * clockGHz * info.threads;
const peakGBs = 31.5; // measured 256 MiB copy bandwidth on this machine class (read + write)

function timeIt(fn, { warmup = 2, reps = quick ? 3 : 7 } = {}) {
  for (let i = 0; i < warmup; i++) fn();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], min: t[0], reps };
}

/** fwd+bwd of fn on fresh-gradient inputs; inputs are made once, outside the timed loop. */
function fwdBwd(fn, inputs) {
  return () =>
    C.tidy(() => {
      const out = fn(...inputs);
      out.backward(C.onesLike(out));
      for (const x of inputs) if (x.requiresGrad) x.zeroGrad();
    });
}

const rows = [];
function record(row) {
  const r = {
    ...row,
    gflops: row.flops ? row.flops / (row.median * 1e6) : null,
    gbs: row.bytes ? row.bytes / (row.median * 1e6) : null,
  };
  r.pctPeak = r.gflops ? (100 * r.gflops) / peakGflops : null;
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

const g = (shape, seed, extra = {}) => C.randn(shape, { seed, requiresGrad: true, ...extra });
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
    () => [g([B, N, H * p], 4), C.ones([H], { requiresGrad: true })],
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
    () => [g([8192, 384], 6), C.ones([384], { requiresGrad: true }), C.zeros([384], { requiresGrad: true })],
    (x, w, b) => C.layerNorm(x, w, b),
    lnComposite,
    8192 * 384 * 16,
    4 * 8192 * 384 * 5,
  );
}
if (want('matmul')) {
  // square sizes, then the CRATE-T token GEMMs (B·N = 2080 tokens at 32×32/patch 4, batch 32):
  // x·W (384→384), x·W (384→1536), x·W (1536→384), and the Linear layout x·Wᵀ.
  const cases = quick
    ? [[1024, 1024, 1024, false]]
    : [[256, 256, 256, false], [1024, 1024, 1024, false], [2048, 2048, 2048, false], [2080, 384, 384, false], [2080, 1536, 384, false], [2080, 384, 1536, false], [2080, 384, 384, true]];
  for (const [M, N, K, tB] of cases) {
    const a = C.randn([M, K], { seed: 7 });
    const bb = C.randn(tB ? [N, K] : [K, N], { seed: 8 });
    const ratio = {};
    for (const backend of ['own', ...(info.blasLibrary ? ['blas'] : [])]) {
      C.setGemmBackend(backend);
      const t = timeIt(() => C.tidy(() => C.matmul(a, bb, { transB: tB })), { reps: quick ? 3 : 9 });
      ratio[backend] = t.median;
      const shape = M === N && N === K ? `${M}³` : `${M}x${N}x${K}${tB ? ' (x·Wᵀ)' : ''}`;
      record({ op: 'matmul f32', shape, path: backend, ...t, flops: 2 * M * N * K, bytes: 4 * (M * K + K * N + M * N), ...(backend === 'own' ? {} : { speedup: undefined }) });
    }
    if (ratio.blas) rows[rows.length - 2].ownVsBlas = ratio.blas / ratio.own;
    C.setGemmBackend(info.gemmBackend);
    a.dispose();
    bb.dispose();
  }
}

// ---------------------------------------------------------------- MSSA memory vs composite
const memRows = [];
if (want('memory')) {
  for (const N of quick ? [1024] : [1024, 4096]) {
    for (const variant of ['fused', 'composite']) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--memory-child', `${variant}:${N}`], { encoding: 'utf8' });
      const m = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()) : { peakGrowth: Number.NaN };
      memRows.push({ N, variant, peakGrowthMiB: m.peakGrowth / 2 ** 20, nxnMiB: (4 * N * N) / 2 ** 20 });
      console.log(`mssa memory N=${N} ${variant}: peak RSS growth ${(m.peakGrowth / 2 ** 20).toFixed(1)} MiB (one N×N f32 = ${((4 * N * N) / 2 ** 20).toFixed(1)} MiB)`);
    }
  }
}

// ---------------------------------------------------------------- report
const name = args.name ?? (quick ? 'cpu-ops-quick' : 'cpu-ops');
const outDir = join(here, 'results');
mkdirSync(outDir, { recursive: true });
const meta = { date: new Date().toISOString(), commit, device: `${cpuModel} (${info.threads} threads)`, isa, clockGHz, gemm: info.gemmBackend, blas: info.blasLibrary, node: process.version, peakGflops, peakGBs };
writeFileSync(join(outDir, `${name}.jsonl`), [JSON.stringify({ meta }), ...rows.map((r) => JSON.stringify(r)), ...memRows.map((r) => JSON.stringify({ memory: r }))].join('\n') + '\n');
const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
const md = [
  `# CPU kernel benchmarks (${name})`,
  '',
  `- device: ${meta.device}; GEMM backend: ${meta.gemm}${meta.blas ? ` (${meta.blas})` : ''}; node ${meta.node}`,
  `- commit: ${commit}; date: ${meta.date}`,
  `- command: \`node bench/run.mjs${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\``,
  `- peak used for %: ${peakGflops.toFixed(0)} GFLOP/s (${isa}: ${flopPerCycle} FLOP/cycle/core × ${clockGHz.toFixed(2)} GHz × ${info.threads} threads); bandwidth reference ${peakGBs} GB/s`,
  '- timings: median (min) of the timed repeats after 2 warm-up runs; fwd+bwd includes the tape and allocation, as a training step sees it',
  '',
  '| op | shape | path | median ms | min ms | GFLOP/s | % peak | GB/s | fused vs composite | own / OpenBLAS |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.op} | ${r.shape} | ${r.path} | ${f(r.median, 2)} | ${f(r.min, 2)} | ${f(r.gflops)} | ${f(r.pctPeak)} | ${f(r.gbs)} | ${r.speedup ? `${r.speedup.toFixed(2)}×` : ''} | ${r.ownVsBlas ? `${(100 * r.ownVsBlas).toFixed(0)}%` : ''} |`),
  '',
  ...(memRows.length
    ? [
        '## MSSA fwd+bwd peak memory (fresh process, growth of peak RSS)',
        '',
        '| N | path | peak growth MiB | one N×N f32 MiB |',
        '|---:|---|---:|---:|',
        ...memRows.map((m) => `| ${m.N} | ${m.variant} | ${f(m.peakGrowthMiB)} | ${f(m.nxnMiB)} |`),
        '',
      ]
    : []),
];
writeFileSync(join(outDir, `${name}.md`), md.join('\n'));
console.log(`\nwrote bench/results/${name}.md and .jsonl`);
