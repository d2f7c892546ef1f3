#!/usr/bin/env node
// train_step.mjs: whole-training-step benchmark, ours vs the PyTorch peer (bench/peers/crate_torch.py)
// measured in the same run on the same machine and thread count. Default: CRATE-T (dim 384,
// depth 12, 6 heads × 64) on 32×32 images with patch 4 (65 tokens), batch 32, AdamW, f32, label
// smoothing 0.1. Napkin math: forward ≈ 12 · (10·N·d² + 4·N²·d) · B FLOP with the unfused ISTA
// (3 d×d GEMMs); ours uses the fused ISTA (1 GEMM + d³), so the useful-FLOP rate is reported for
// the authors' count. Writes bench/results/train-step-cpu.{md,jsonl}.
//   node bench/train_step.mjs [--threads 2] [--steps 6] [--batch 32]
import { execSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { CRATE } = await import(join(here, '..', 'lib', 'models', 'crate.js'));
const { AdamW } = await import(join(here, '..', 'lib', 'optim', 'index.js'));
const { values: a } = parseArgs({
  options: { threads: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, python: { type: 'string' } },
});
const threads = Number(a.threads ?? 2);
const steps = Number(a.steps ?? 6);
const B = Number(a.batch ?? 32);
C.setNumThreads(threads);
const cfg = { imageSize: 32, patchSize: 4, numClasses: 10, dim: 384, depth: 12, heads: 6, dimHead: 64, channels: 3 };
C.manualSeed(0);
const model = new CRATE(cfg);
const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.05 });
const x = C.randn([B, 3, 32, 32], { seed: 1 });
const y = C.tensor(Array.from({ length: B }, (_, i) => i % 10), { dtype: 'i32' });
const times = [];
for (let i = 0; i < steps + 2; i++) {
  const t0 = performance.now();
  C.tidy(() => C.crossEntropy(model.forward(x), y, { labelSmoothing: 0.1 }).backward());
  opt.step();
  opt.zeroGrad();
  if (i >= 2) times.push(performance.now() - t0);
  await new Promise((r) => setImmediate(r));
}
times.sort((p, q) => p - q);
const ours = { ms_median: times[Math.floor(times.length / 2)], ms_min: times[0] };
const N = 65;
const d = 384;
const fwdFlops = B * cfg.depth * (10 * N * d * d + 4 * N * N * d);
const stepFlops = 3 * fwdFlops;
console.log(`ours: ${ours.ms_median.toFixed(0)} ms/step (min ${ours.ms_min.toFixed(0)}), ${(B / ours.ms_median * 1000).toFixed(1)} samples/s`);

const py = a.python ?? '/usr/bin/python3';
const r = spawnSync(py, [join(here, 'peers', 'crate_torch.py'), '--threads', String(threads), '--batch', String(B), '--steps', String(steps)], { encoding: 'utf8' });
let peer = null;
if (r.status === 0) {
  peer = JSON.parse(r.stdout.trim().split('\n').pop());
  console.log(`pytorch ${peer.torch} eager: ${peer.ms_median.toFixed(0)} ms/step; ratio (peer/ours) ${(peer.ms_median / ours.ms_median).toFixed(2)}×`);
} else {
  console.log(`pytorch peer not run: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
}
const commit = (() => {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: here }).toString().trim();
  } catch {
    return 'unknown';
  }
})();
const meta = { date: new Date().toISOString(), commit, device: `${cpus()[0]?.model} (${threads} threads)`, gemm: C.info().gemmBackend, node: process.version };
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'train-step-cpu.jsonl'), `${JSON.stringify({ meta, cfg, batch: B, ours, peer, stepFlops })}\n`);
const md = [
  '# Training step: CRATE-T (32×32, patch 4, 65 tokens), batch 32, AdamW, f32, CPU',
  '',
  `- device: ${meta.device}; GEMM backend ${meta.gemm}; node ${meta.node}; commit ${commit}; ${meta.date}`,
  `- command: \`node bench/train_step.mjs --threads ${threads} --steps ${steps} --batch ${B}\``,
  `- FLOP per step (authors' unfused count, fwd+bwd ≈ 3× fwd): ${(stepFlops / 1e9).toFixed(1)} GFLOP`,
  '',
  '| implementation | ms/step (median) | min | samples/s | GFLOP/s (authors\' count) | speed-up vs PyTorch |',
  '|---|---:|---:|---:|---:|---:|',
  `| crate-ml (fused MSSA + ISTA) | ${ours.ms_median.toFixed(0)} | ${ours.ms_min.toFixed(0)} | ${((B / ours.ms_median) * 1000).toFixed(1)} | ${(stepFlops / ours.ms_median / 1e6).toFixed(1)} | ${peer ? `${(peer.ms_median / ours.ms_median).toFixed(2)}×` : 'n/a'} |`,
  peer
    ? `| PyTorch ${peer.torch} eager (${peer.blas}) | ${peer.ms_median.toFixed(0)} | ${peer.ms_min.toFixed(0)} | ${((B / peer.ms_median) * 1000).toFixed(1)} | ${(stepFlops / peer.ms_median / 1e6).toFixed(1)} | 1.00× |`
    : '| PyTorch | not run (python3-torch missing) | | | | |',
  '',
];
writeFileSync(join(here, 'results', 'train-step-cpu.md'), md.join('\n'));
model.dispose();
opt.dispose();
