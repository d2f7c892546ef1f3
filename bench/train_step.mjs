#!/usr/bin/env node
// train_step.mjs: whole-training-step benchmark, ours vs the PyTorch peer (bench/peers/crate_torch.py:
// the authors' CRATE classifier rewritten self-contained) measured in the same run on the same
// machine, same config, batch and precision. One step = forward, cross-entropy (label smoothing
// 0.1), backward, AdamW. Presets:
//   crate-t32  (default) CRATE-T: dim 384, depth 12, 6 heads × 64, on 32×32 images with patch 4
//              (65 tokens), batch 32, 10 classes: the CPU benchmark.
//   crate-b224 CRATE-B: dim 768, depth 12, 12 heads × 64, on 224×224 images with patch 16
//              (197 tokens), batch 64, 1000 classes: the GPU benchmark of the paper's size.
//   tiny       dim 32, depth 2, 2 heads × 16, 16×16 images, patch 4, batch 4 (tests / smoke runs).
// Napkin math: forward ≈ depth · (10·N·d² + 4·N²·inner) · B FLOP with the authors' unfused ISTA (3
// d×d GEMMs per token: x W^T, its product with W, and the x W term) and MSSA (qkv, out projection,
// two N×N products per head); fwd+bwd ≈ 3× forward. Ours uses the fused ISTA (1 GEMM + d³), so the
// "GFLOP/s" column is the useful rate for the authors' count, the same for both columns.
// On CUDA each step is bracketed by synchronize() (the time a training loop sees); --amp runs ours
// under autocast (bf16 GEMMs, f32 master weights) and the peer under torch.autocast(bf16).
//   node bench/train_step.mjs [--preset crate-t32|crate-b224|tiny] [--device cpu|cuda] [--amp]
//        [--threads 2] [--steps 6] [--warmup 2] [--batch B] [--python python3] [--no-peer]
//        [--outdir bench/results] [--name train-step-<device>]
// Writes <outdir>/<name>.{md,jsonl}; on CUDA the peer runs eager with matmul-softmax attention (the
// authors' code), eager with SDPA, and torch.compile when it works (each a row, failures noted).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceSync, gitCommit } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const C = await import(join(here, '..', 'lib', 'index.js'));
const { CRATE } = await import(join(here, '..', 'lib', 'models', 'crate.js'));
const { AdamW } = await import(join(here, '..', 'lib', 'optim', 'index.js'));
const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'crate-t32' },
    device: { type: 'string', default: 'cpu' },
    amp: { type: 'boolean', default: false },
    threads: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string' },
    batch: { type: 'string' },
    python: { type: 'string' },
    'no-peer': { type: 'boolean', default: false },
    outdir: { type: 'string' },
    name: { type: 'string' },
  },
});

const PRESETS = {
  'crate-t32': {
    title: 'CRATE-T (32×32, patch 4, 65 tokens)',
    cfg: { imageSize: 32, patchSize: 4, numClasses: 10, dim: 384, depth: 12, heads: 6, dimHead: 64, channels: 3 },
    batch: 32,
  },
  'crate-b224': {
    title: 'CRATE-B (224×224, patch 16, 197 tokens)',
    cfg: { imageSize: 224, patchSize: 16, numClasses: 1000, dim: 768, depth: 12, heads: 12, dimHead: 64, channels: 3 },
    batch: 64,
  },
  tiny: {
    title: 'tiny (16×16, patch 4, 17 tokens)',
    cfg: { imageSize: 16, patchSize: 4, numClasses: 10, dim: 32, depth: 2, heads: 2, dimHead: 16, channels: 3 },
    batch: 4,
  },
};
const preset = PRESETS[a.preset];
if (!preset) throw new Error(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got ${a.preset}`);
if (a.device !== 'cpu' && a.device !== 'cuda') throw new Error(`--device must be cpu or cuda, got ${a.device}`);
const device = a.device;
if (device === 'cuda' && !C.cudaAvailable()) {
  console.error(`train_step: --device cuda but CUDA is not available: ${C.info().cudaReason}`);
  process.exit(3);
}
if (a.amp && device !== 'cuda') throw new Error('--amp needs --device cuda (bf16 autocast is a CUDA feature)');
const cfg = preset.cfg;
const threads = Number(a.threads ?? 2);
const steps = Number(a.steps ?? 6);
const warmup = Number(a.warmup ?? 2);
const B = Number(a.batch ?? preset.batch);
const outdir = resolve(a.outdir ?? join(here, 'results'));
const name = a.name ?? `train-step-${device}${a.amp ? '-amp' : ''}${a.preset === 'crate-t32' ? '' : `-${a.preset}`}`;
C.setNumThreads(threads);

// ---------------------------------------------------------------- ours
C.manualSeed(0);
const model = new CRATE(cfg);
if (device === 'cuda') model.to('cuda');
const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.05 });
const x = C.randn([B, cfg.channels, cfg.imageSize, cfg.imageSize], { seed: 1, device });
const y = C.tensor(
  Array.from({ length: B }, (_, i) => i % cfg.numClasses),
  { dtype: 'i32', device },
);
const sync = deviceSync(C, device);
const oneStep = () => {
  const loss = C.tidy(() => {
    const l = C.crossEntropy(model.forward(x), y, { labelSmoothing: 0.1 });
    l.backward();
    return l;
  });
  opt.step();
  opt.zeroGrad();
  return loss;
};
const times = [];
let lastLoss = Number.NaN;
for (let i = 0; i < steps + warmup; i++) {
  sync();
  const t0 = performance.now();
  const loss = a.amp ? C.autocast(oneStep) : oneStep();
  sync();
  if (i >= warmup) times.push(performance.now() - t0);
  if (i === steps + warmup - 1) lastLoss = loss.item();
  loss.dispose();
  await new Promise((r) => setImmediate(r));
}
times.sort((p, q) => p - q);
const ours = {
  ms_median: times[Math.floor(times.length / 2)],
  ms_min: times[0],
  loss: lastLoss,
  memory: C.memory(),
};
const N = (cfg.imageSize / cfg.patchSize) ** 2 + 1;
const d = cfg.dim;
const inner = cfg.heads * cfg.dimHead;
const fwdFlops = B * cfg.depth * (10 * N * d * d + 4 * N * N * inner);
const stepFlops = 3 * fwdFlops;
const precision = device === 'cuda' ? (a.amp ? 'bf16 autocast' : 'f32, TF32 off') : 'f32';
console.log(
  `ours (${device}, ${precision}): ${ours.ms_median.toFixed(1)} ms/step (min ${ours.ms_min.toFixed(1)}), ${((B / ours.ms_median) * 1000).toFixed(1)} samples/s, loss ${lastLoss.toFixed(4)}`,
);

// ---------------------------------------------------------------- peers (same run)
const py = a.python ?? (device === 'cuda' ? 'python3' : '/usr/bin/python3');
const peerArgs = [
  join(here, 'peers', 'crate_torch.py'),
  ...['--threads', threads, '--batch', B, '--steps', steps, '--warmup', warmup, '--device', device],
  ...['--image', cfg.imageSize, '--patch', cfg.patchSize, '--dim', d, '--depth', cfg.depth, '--heads', cfg.heads],
  ...['--dim-head', cfg.dimHead, '--classes', cfg.numClasses],
  ...(a.amp ? ['--amp'] : []),
].map(String);
const variants = device === 'cuda' ? [[], ['--attention', 'sdpa'], ['--compile']] : [[]];
const peers = [];
for (const extra of a['no-peer'] ? [] : variants) {
  const r = spawnSync(py, [...peerArgs, ...extra], { encoding: 'utf8', timeout: 540_000 });
  const label = `pytorch ${extra.join(' ') || 'eager'}`;
  if (r.status === 0) {
    const peer = JSON.parse(r.stdout.trim().split('\n').pop());
    peers.push(peer);
    console.log(
      `${label}: ${peer.ms_median.toFixed(1)} ms/step; ratio (peer/ours) ${(peer.ms_median / ours.ms_median).toFixed(2)}×`,
    );
  } else {
    const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').pop();
    peers.push({ peer: label, failed: why });
    console.log(`${label} not run: ${why}`);
  }
}

// ---------------------------------------------------------------- report
const commit = gitCommit();
const info = C.info();
const deviceName =
  device === 'cuda' ? `${info.cuda?.name ?? 'CUDA device'} (driver ${info.cuda?.driverVersion ?? '?'})` : `${cpus()[0]?.model} (${threads} threads)`;
const meta = { date: new Date().toISOString(), commit, device: deviceName, gemm: device === 'cuda' ? info.cuda?.gemm : info.gemmBackend, node: process.version };
mkdirSync(outdir, { recursive: true });
writeFileSync(join(outdir, `${name}.jsonl`), `${JSON.stringify({ meta, preset: a.preset, cfg, batch: B, device, amp: a.amp, ours, peers, stepFlops })}\n`);
const cmd = `node bench/train_step.mjs --preset ${a.preset} --device ${device}${a.amp ? ' --amp' : ''} --threads ${threads} --steps ${steps} --warmup ${warmup} --batch ${B}`;
const rate = (ms) => (stepFlops / ms / 1e6).toFixed(1);
const ok = peers.filter((p) => !p.failed);
const base = ok[0];
const md = [
  `# Training step: ${preset.title}, batch ${B}, AdamW, ${precision}, ${device.toUpperCase()}`,
  '',
  `- device: ${meta.device}; GEMM backend ${meta.gemm ?? 'n/a'}; node ${meta.node}; commit ${commit}; ${meta.date}`,
  `- command: \`${cmd}\` (report: \`${relative(join(here, '..'), join(outdir, name))}.md\`)`,
  `- FLOP per step (authors' unfused count, fwd+bwd ≈ 3× fwd): ${(stepFlops / 1e9).toFixed(1)} GFLOP; ${steps} timed steps after ${warmup} warm-up`,
  `- final loss: ours ${lastLoss.toFixed(4)}${base ? `, PyTorch ${base.loss.toFixed(4)}` : ''} (same config; different initial weights)`,
  '',
  `| implementation | ms/step (median) | min | samples/s | GFLOP/s (authors' count) | speed-up of ours |`,
  '|---|---:|---:|---:|---:|---:|',
  `| crate-ml (fused MSSA + ISTA) | ${ours.ms_median.toFixed(1)} | ${ours.ms_min.toFixed(1)} | ${((B / ours.ms_median) * 1000).toFixed(1)} | ${rate(ours.ms_median)} | 1.00× |`,
  ...peers.map((p) =>
    p.failed
      ? `| ${p.peer} | not run: ${p.failed.replaceAll('|', '/')} | | | | |`
      : `| PyTorch ${p.torch} ${p.peer.replace('pytorch-', '')} (${p.blas}) | ${p.ms_median.toFixed(1)} | ${p.ms_min.toFixed(1)} | ${((B / p.ms_median) * 1000).toFixed(1)} | ${rate(p.ms_median)} | ${(p.ms_median / ours.ms_median).toFixed(2)}× |`,
  ),
  ...(a['no-peer'] ? ['| PyTorch | not run (--no-peer) | | | | |'] : []),
  '',
];
writeFileSync(join(outdir, `${name}.md`), md.join('\n'));
console.log(`wrote ${join(outdir, `${name}.md`)}`);
model.dispose();
opt.dispose();
x.dispose();
y.dispose();
