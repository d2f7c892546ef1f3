#!/usr/bin/env node
// scaling.mjs: TSSA (ToST, linear in N) vs MSSA (CRATE, quadratic in N) as the sequence grows,
// N = 256 … 16384: fwd+bwd time (median of repeats after a warm-up) and peak memory (growth of
// peak RSS in a fresh process per case), plus the composite MSSA (materialises N×N) while it
// fits. Napkin math per (batch, head): MSSA fwd+bwd ≈ 12·N²·p FLOP, TSSA ≈ 30·N·p. Writes
// <outdir>/<name>.{md,jsonl,svg,png}. With --device cuda each timed run is bracketed by
// synchronize() and the memory column is the caching allocator's peak of live device bytes over
// one fwd+bwd (fresh process per case) instead of the growth of peak RSS.
//   node bench/scaling.mjs [--threads 2] [--max 16384] [--heads 4] [--dim-head 32] [--device cpu|cuda]
//        [--name tssa-vs-mssa-<device>] [--outdir bench/results]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceSync, gitCommit } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { values: a } = parseArgs({
  options: {
    threads: { type: 'string' },
    max: { type: 'string' },
    heads: { type: 'string' },
    'dim-head': { type: 'string' },
    name: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    outdir: { type: 'string' },
    child: { type: 'string' },
  },
});
const threads = Number(a.threads ?? 2);
const H = Number(a.heads ?? 4);
const p = Number(a['dim-head'] ?? 32);
const maxN = Number(a.max ?? 16384);
const device = a.device;
if (device !== 'cpu' && device !== 'cuda') throw new Error(`--device must be cpu or cuda, got ${device}`);
if (device === 'cuda' && !C.cudaAvailable()) {
  console.error(`scaling: --device cuda but CUDA is not available: ${C.info().cudaReason}`);
  process.exit(3);
}
const sync = deviceSync(C, device);
C.setNumThreads(threads);

/** fwd+bwd of one op on a (1, N, H·p) input; the op's outputs and grads are freed each run. */
function runner(op, N) {
  const X = C.randn([1, N, H * p], { seed: 1, requiresGrad: true, std: 0.5, device });
  const temp = C.ones([H], { requiresGrad: true, device });
  const f = {
    mssa: () => C.mssa(X, { heads: H }),
    'mssa-composite': () => C.composite.mssaComposite(X, { heads: H }),
    tssa: () => C.tssa(X, temp, H),
  }[op];
  return {
    step: () =>
      C.tidy(() => {
        const out = f();
        out.backward(C.onesLike(out));
        X.zeroGrad();
        temp.zeroGrad();
        sync();
      }),
    dispose: () => {
      X.dispose();
      temp.dispose();
    },
  };
}

// ------------------------------------------------------------ child: peak memory of one case
if (a.child) {
  const [op, N] = a.child.split(':');
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
  const r = runner(op, Number(N));
  if (device === 'cuda') {
    const before = C.memory().cuda.bytes; // the inputs
    r.step();
    console.log(JSON.stringify({ peakGrowth: C.memory().cuda.peakBytes - before }));
    process.exit(0);
  }
  const before = hwm();
  r.step();
  console.log(JSON.stringify({ peakGrowth: hwm() - before }));
  process.exit(0);
}

const Ns = [];
for (let N = 256; N <= maxN; N *= 2) Ns.push(N);
const rows = [];
const budgetMs = 20000; // stop a series once a single run takes longer than this
const stopped = new Set();
for (const N of Ns) {
  for (const op of ['tssa', 'mssa', 'mssa-composite']) {
    // composite MSSA holds several N×N f32 per head: skip past 8192 (≥ 1 GiB each)
    if (stopped.has(op) || (op === 'mssa-composite' && N > 8192)) continue;
    const r = runner(op, N);
    const t0 = performance.now();
    r.step(); // warm-up
    const first = performance.now() - t0;
    const reps = first > 2000 ? 1 : first > 300 ? 3 : 7;
    const t = [];
    for (let i = 0; i < reps; i++) {
      const s = performance.now();
      r.step();
      t.push(performance.now() - s);
    }
    r.dispose();
    t.sort((x, y) => x - y);
    const mem = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', `${op}:${N}`, '--threads', String(threads), '--heads', String(H), '--dim-head', String(p), '--device', device], { encoding: 'utf8' });
    const peak = mem.status === 0 ? JSON.parse(mem.stdout.trim().split('\n').pop()).peakGrowth : Number.NaN;
    const flops = op === 'tssa' ? 30 * N * p * H : 12 * N * N * p * H;
    const row = { op, N, heads: H, dimHead: p, median: t[Math.floor(t.length / 2)], min: t[0], reps, flops, peakMiB: peak / 2 ** 20 };
    rows.push(row);
    console.log(`${op.padEnd(15)} N=${String(N).padStart(5)}  ${row.median.toFixed(2).padStart(10)} ms  peak +${row.peakMiB.toFixed(1)} MiB  ${(flops / row.median / 1e6).toFixed(1)} GFLOP/s`);
    if (row.median > budgetMs) stopped.add(op);
  }
}

// ------------------------------------------------------------ report
const commit = gitCommit();
const name = a.name ?? `tssa-vs-mssa-${device}`;
const deviceName = device === 'cuda' ? `${C.info().cuda?.name ?? 'CUDA device'}` : `${cpus()[0]?.model} (${threads} threads)`;
const meta = { date: new Date().toISOString(), commit, device: deviceName, node: process.version, heads: H, dimHead: p, batch: 1 };
const out = a.outdir ? resolve(a.outdir) : join(here, 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `${name}.jsonl`), [JSON.stringify({ meta }), ...rows.map((r) => JSON.stringify(r))].join('\n') + '\n');
const get = (op, N, k) => rows.find((r) => r.op === op && r.N === N)?.[k];
const f = (x, d = 1) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));
// growth exponent between successive N: log2(t(2N)/t(N)) → 1 for linear, 2 for quadratic
const slope = (op) => {
  const r = rows.filter((x) => x.op === op);
  if (r.length < 3) return Number.NaN;
  const last = r.slice(-3);
  return Math.log2(last[2].median / last[0].median) / 2;
};
const md = [
  `# TSSA vs MSSA as N grows (fwd+bwd, f32, CPU)`,
  '',
  `- device: ${meta.device}; node ${meta.node}; commit ${commit}; ${meta.date}`,
  `- command: \`node bench/scaling.mjs --device ${device} --threads ${threads} --max ${maxN} --heads ${H} --dim-head ${p}\``,
  `- shape: batch 1, ${H} heads × p = ${p} (input (1, N, ${H * p})); time = median of the repeats after one warm-up; memory = ${device === 'cuda' ? 'peak live device bytes (caching allocator)' : 'growth of peak RSS'} over one fwd+bwd in a fresh process`,
  `- napkin math: MSSA fwd+bwd 12·N²·p FLOP per head (Q = K = V), TSSA ≈ 30·N·p; the composite MSSA stores N×N scores, so it stops at N = 8192`,
  `- measured growth exponent over the last two doublings (1 = linear, 2 = quadratic): TSSA ${f(slope('tssa'), 2)}, fused MSSA ${f(slope('mssa'), 2)}, composite MSSA ${f(slope('mssa-composite'), 2)}`,
  '',
  '| N | TSSA ms | MSSA fused ms | MSSA composite ms | MSSA / TSSA time | TSSA peak MiB | MSSA fused peak MiB | MSSA composite peak MiB |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...Ns.map((N) => `| ${N} | ${f(get('tssa', N, 'median'), 2)} | ${f(get('mssa', N, 'median'), 2)} | ${f(get('mssa-composite', N, 'median'), 2)} | ${f(get('mssa', N, 'median') / get('tssa', N, 'median'))}× | ${f(get('tssa', N, 'peakMiB'))} | ${f(get('mssa', N, 'peakMiB'))} | ${f(get('mssa-composite', N, 'peakMiB'))} |`),
  '',
  `Chart: \`${name}.svg\` / \`${name}.png\` (log₂ N against log₁₀ of time and of peak memory).`,
  '',
];
writeFileSync(join(out, `${name}.md`), md.join('\n'));
const { renderSvg, writeFigure } = await import(join(here, '..', 'lib', 'viz', 'plot.js'));
const series = (key, tr) =>
  ['tssa', 'mssa', 'mssa-composite'].map((op) => {
    const r = rows.filter((x) => x.op === op && Number.isFinite(x[key]) && x[key] > 0);
    return { label: op === 'tssa' ? 'TSSA (ToST)' : op === 'mssa' ? 'MSSA fused' : 'MSSA composite', x: r.map((x) => Math.log2(x.N)), y: r.map((x) => tr(x[key])) };
  });
const svg = renderSvg(`TSSA vs MSSA fwd+bwd, ${H} heads × ${p}, ${meta.device}`, [
  { title: 'time: log10(ms)', xLabel: 'log2 N', series: series('median', Math.log10) },
  { title: 'peak memory: log10(MiB)', xLabel: 'log2 N', series: series('peakMiB', Math.log10) },
]);
await writeFigure(join(out, name), svg);
console.log(`wrote ${join(out, name)}.{md,jsonl,svg,png}`);
