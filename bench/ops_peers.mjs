#!/usr/bin/env node
// ops_peers.mjs: our fused CRATE ops against PyTorch running the same math the way the authors
// write it (bench/peers/ops_torch.py), same shapes, f32, same thread count, same machine, same
// run. fwd+bwd with a ones seed gradient; median (min) of the repeats after 2 warm-up runs.
// Peers: MSSA vs matmul-softmax attention (and scaled_dot_product_attention where the torch has
// it, ≥ 2.0), ISTA vs the authors' FeedForward, coding-rate log-det vs torch.linalg.cholesky and
// torch.logdet, TSSA vs the authors' AttentionTSSA, LayerNorm vs F.layer_norm.
// Writes bench/results/<name>.{md,jsonl}.
//   node bench/ops_peers.mjs [--threads 2] [--python /usr/bin/python3] [--name ops-vs-torch-cpu]
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fwdBwd, gitCommit } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { values: a } = parseArgs({
  options: { threads: { type: 'string' }, python: { type: 'string' }, name: { type: 'string' }, reps: { type: 'string' } },
});
const threads = Number(a.threads ?? 2);
const reps = Number(a.reps ?? 7);
C.setNumThreads(threads);

// napkin FLOP per case (fwd+bwd), as in run.mjs
const cases = [
  { op: 'mssa', B: 8, N: 65, H: 6, p: 64, flops: (c) => c.B * c.H * 12 * c.N * c.N * c.p },
  { op: 'mssa', B: 4, N: 197, H: 6, p: 64, flops: (c) => c.B * c.H * 12 * c.N * c.N * c.p },
  { op: 'mssa', B: 1, N: 1024, H: 6, p: 64, flops: (c) => c.B * c.H * 12 * c.N * c.N * c.p },
  { op: 'ista', T: 2080, d: 384, flops: (c) => 6 * c.T * c.d * c.d },
  { op: 'codingRate', b: 384, m: 64, n: 197, flops: (c) => c.b * (6 * c.m * c.m * c.n + c.m ** 3 / 3) },
  { op: 'codingRate', b: 64, m: 256, n: 256, flops: (c) => c.b * (6 * c.m * c.m * c.n + c.m ** 3 / 3) },
  { op: 'tssa', B: 8, N: 1024, H: 6, p: 64, flops: (c) => c.B * c.N * c.H * c.p * 30 },
  { op: 'tssa', B: 8, N: 4096, H: 6, p: 64, flops: (c) => c.B * c.N * c.H * c.p * 30 },
  { op: 'layerNorm', R: 8192, D: 384, flops: (c) => c.R * c.D * 16 },
];

const SHAPE_KEYS = ['B', 'N', 'H', 'p', 'T', 'd', 'b', 'm', 'n', 'R', 'D'];
const shapeOf = (r) => `${r.op}: ${SHAPE_KEYS.filter((k) => r[k] !== undefined).map((k) => `${k}${r[k]}`).join(' ')}`;
const g = (shape, seed, extra = {}) => C.randn(shape, { seed, requiresGrad: true, ...extra });
function ours(c) {
  const made = {
    mssa: () => [[g([c.B, c.N, c.H * c.p], 1)], (P) => C.mssa(P, { heads: c.H })],
    ista: () => [[g([c.T, c.d], 2), g([c.d, c.d], 3, { std: 0.05 })], (Y, W) => C.ista(Y, W, 0.1, 0.1)],
    codingRate: () => [[g([c.b, c.m, c.n], 5)], (Z) => C.logdetGram(Z, 0.05)],
    tssa: () => [[g([c.B, c.N, c.H * c.p], 4), C.ones([c.H], { requiresGrad: true })], (W, t) => C.tssa(W, t, c.H)],
    layerNorm: () => [[g([c.R, c.D], 6), C.ones([c.D], { requiresGrad: true }), C.zeros([c.D], { requiresGrad: true })], (x, w, b) => C.layerNorm(x, w, b)],
  }[c.op];
  const [inputs, f] = made();
  const step = fwdBwd(C, f, inputs);
  for (let i = 0; i < 2; i++) step();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    step();
    t.push(performance.now() - t0);
  }
  for (const x of inputs) x.dispose();
  t.sort((x, y) => x - y);
  return { median: t[Math.floor(t.length / 2)], min: t[0] };
}

const rows = [];
for (const c of cases) {
  const r = ours(c);
  rows.push({ ...c, flops: c.flops(c), impl: 'crate-ml fused', ...r });
  console.log(`${c.op.padEnd(11)} ${shapeOf(c).padEnd(24)} ours ${r.median.toFixed(2)} ms`);
}

const py = a.python ?? '/usr/bin/python3';
const payload = JSON.stringify(cases.map(({ flops, ...s }) => s));
const pr = spawnSync(py, [join(here, 'peers', 'ops_torch.py'), payload, '--threads', String(threads), '--reps', String(reps)], { encoding: 'utf8', maxBuffer: 1 << 24 });
let torchVersion = null;
if (pr.status === 0) {
  for (const line of pr.stdout.trim().split('\n')) {
    const j = JSON.parse(line);
    torchVersion = j.torch;
    const c = cases.find((x) => shapeOf(x) === shapeOf(j));
    const { variant, torch, median, min } = j;
    rows.push({ ...c, flops: c.flops(c), impl: `torch ${variant}`, median, min });
    console.log(`${c.op.padEnd(11)} ${shapeOf(c).padEnd(24)} torch ${variant} ${median.toFixed(2)} ms`);
  }
} else {
  console.log(`torch peer not run: ${(pr.stderr || pr.error?.message || '').trim().split('\n').pop()}`);
}

const commit = gitCommit();
const name = a.name ?? 'ops-vs-torch-cpu';
const meta = { date: new Date().toISOString(), commit, device: `${cpus()[0]?.model} (${threads} threads)`, gemm: C.info().gemmBackend, node: process.version, torch: torchVersion };
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', `${name}.jsonl`), [JSON.stringify({ meta }), ...rows.map(({ flops, ...r }) => JSON.stringify({ ...r, shape: shapeOf(r), flops }))].join('\n') + '\n');
const md = [
  `# CRATE ops fwd+bwd: crate-ml fused vs PyTorch (${torchVersion ? `torch ${torchVersion}` : 'torch not run'}), f32, CPU`,
  '',
  `- device: ${meta.device}; our GEMM backend ${meta.gemm}; node ${meta.node}; commit ${commit}; ${meta.date}`,
  `- command: \`node bench/ops_peers.mjs --threads ${threads}\` (peer: \`bench/peers/ops_torch.py\`, same shapes and thread count, same run)`,
  '- time: median (min) of the repeats after 2 warm-up runs, ms; speed-up = torch median / ours median (> 1: ours faster)',
  '',
  '| op | shape | implementation | median ms | min ms | GFLOP/s | speed-up of ours |',
  '|---|---|---|---:|---:|---:|---:|',
  ...rows
    .slice()
    .sort((x, y) => cases.indexOf(cases.find((c) => shapeOf(c) === shapeOf(x))) - cases.indexOf(cases.find((c) => shapeOf(c) === shapeOf(y))))
    .map((r) => {
      const o = rows.find((q) => q.impl === 'crate-ml fused' && shapeOf(q) === shapeOf(r));
      const sp = r.impl === 'crate-ml fused' ? '' : `${(r.median / o.median).toFixed(2)}×`;
      return `| ${r.op} | ${shapeOf(r).split(': ')[1]} | ${r.impl} | ${r.median.toFixed(2)} | ${r.min.toFixed(2)} | ${(r.flops / r.median / 1e6).toFixed(1)} | ${sp} |`;
    }),
  '',
];
writeFileSync(join(here, 'results', `${name}.md`), md.join('\n'));
console.log(`wrote bench/results/${name}.{md,jsonl}`);
