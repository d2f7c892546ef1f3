#!/usr/bin/env node
// registry.mjs: every op of the test registry (test/helpers/registry.ts + crate_registry.ts: the
// specs that drive the parity and gradient tests) timed on its `perf` case, a training-sized
// shape: forward, and forward+backward for the differentiable ops. One registry drives parity,
// gradient checks and performance (ggml's test-backend-ops), so a new op gets all three.
// Reports per op: median / min ms, GB/s against the bytes the forward must move (every input read
// once, the output written once; "napkin" bytes, not cache traffic), % of the machine's bandwidth,
// and GFLOP/s + % of peak where the spec gives a FLOP count (GEMM-class ops; fwd+bwd counted as
// 3x the forward). Each output is checked once to be finite before it is timed.
//   node bench/registry.mjs [--filter name] [--quick] [--device cpu|cuda] [--threads n]
//        [--reps n] [--name registry-cpu] [--outdir bench/results]
// (`crate bench --registry ...` runs this.) Needs the repository's test/helpers (TypeScript, turned
// into JavaScript here with the typescript package), so it runs from a checkout, not the npm package.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { deviceSync, fwdBwd, gitCommit, machinePeaks, timeIt } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { values: args } = parseArgs({
  options: {
    filter: { type: 'string' },
    quick: { type: 'boolean' },
    device: { type: 'string', default: 'cpu' },
    threads: { type: 'string' },
    reps: { type: 'string' },
    warmup: { type: 'string' },
    name: { type: 'string' },
    outdir: { type: 'string' },
  },
});

// ---------------------------------------------------------------- the registry, as JavaScript
// The helpers import '../../ts/…' (vitest runs TypeScript); here they import the built lib/.
const ts = (await import('typescript')).default;
const libUrl = pathToFileURL(join(root, 'lib')).href;
const gen = mkdtempSync(join(tmpdir(), 'crate-registry-'));
for (const f of ['registry', 'crate_registry', 'ref', 'harness']) {
  const src = readFileSync(join(root, 'test', 'helpers', `${f}.ts`), 'utf8');
  const js = ts.transpileModule(src, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(join(gen, `${f}.js`), js.replaceAll("'../../ts/", `'${libUrl}/`));
}
const C = await import(`${libUrl}/index.js`);
const { REGISTRY } = await import(pathToFileURL(join(gen, 'registry.js')).href);
const { CRATE_REGISTRY } = await import(pathToFileURL(join(gen, 'crate_registry.js')).href);
const { makeData, toTensors } = await import(pathToFileURL(join(gen, 'harness.js')).href);
rmSync(gen, { recursive: true, force: true });

if (args.threads) C.setNumThreads(Number(args.threads));
const info = C.info();
const device = args.device;
if (device !== 'cpu' && device !== 'cuda') throw new Error(`--device must be cpu or cuda, got ${device}`);
if (device === 'cuda' && !info.cudaAvailable) {
  console.error(`bench/registry: --device cuda but CUDA is not available: ${info.cudaReason}`);
  process.exit(3);
}
const machine = machinePeaks(info, device);
const sync = deviceSync(C, device);
const reps = Number(args.reps ?? (args.quick ? 3 : 7));
const warmup = Number(args.warmup ?? (args.quick ? 1 : 2));
const specs = [...REGISTRY, ...CRATE_REGISTRY].filter((s) => !args.filter || s.name.includes(args.filter));
if (specs.length === 0) {
  console.error(`bench/registry: no registry op matches --filter ${args.filter}`);
  process.exit(2);
}

// A full garbage collection before each op's timings: the f64 input data made in JavaScript
// (tens of MB per op) would otherwise be collected inside the first timed loop.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc');

const bytesOf = (shapes) => shapes.reduce((a, s) => a + 4 * s.reduce((x, y) => x * y, 1), 0);
const allFinite = (t) => {
  const d = t.dataSync();
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return false;
  return true;
};

const rows = [];
const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
for (const spec of specs) {
  const pc = spec.perf;
  if (!pc) throw new Error(`registry op '${spec.name}' has no perf case`);
  // inputs once, outside the timed loop (the op's own outputs are allocated in it, as in training)
  const xs = toTensors(pc, makeData(pc), 'f32', !spec.noGrad, device);
  const run = () => spec.run(xs, pc.args);
  const out = C.noGrad(run);
  const outShape = [...out.shape];
  if (!allFinite(out)) throw new Error(`registry op '${spec.name}' (${pc.label}): non-finite output on its perf case`);
  out.dispose();
  collectGarbage();
  const bytes = bytesOf([...pc.inputs.map((i) => i.shape), outShape]);
  const record = (pass, t, flops) => {
    const r = {
      op: spec.name,
      shape: pc.label,
      pass,
      ...t,
      flops: flops ?? null,
      bytes: pass === 'fwd' ? bytes : null,
      gflops: flops ? flops / (t.median * 1e6) : null,
      gbs: pass === 'fwd' ? bytes / (t.median * 1e6) : null,
    };
    r.pctPeak = r.gflops && machine.peakGflops ? (100 * r.gflops) / machine.peakGflops : null;
    r.pctBw = r.gbs && machine.peakGBs ? (100 * r.gbs) / machine.peakGBs : null;
    rows.push(r);
    console.log(
      `${spec.name.padEnd(36)} ${pc.label.padEnd(34)} ${pass.padEnd(7)} ${f(r.median, 3).padStart(9)} ms ${f(r.gbs).padStart(7)} GB/s ${f(r.gflops).padStart(7)} GFLOP/s`,
    );
  };
  // the closure returns nothing, so tidy disposes the output too (a returned tensor would be kept)
  const fwd = () =>
    C.tidy(() => {
      C.noGrad(run);
    });
  record('fwd', timeIt(fwd, sync, { warmup, reps }), pc.flops);
  if (!spec.noGrad) {
    const t = timeIt(
      fwdBwd(C, (...ys) => spec.run(ys, pc.args), xs),
      sync,
      { warmup, reps },
    );
    record('fwd+bwd', t, pc.flops ? 3 * pc.flops : undefined);
  }
  for (const x of xs) x.dispose();
}

// ---------------------------------------------------------------- report
const commit = gitCommit();
const name = args.name ?? `registry-${device}${args.quick ? '-quick' : ''}`;
const outDir = args.outdir ? resolve(args.outdir) : join(here, 'results');
mkdirSync(outDir, { recursive: true });
const meta = {
  date: new Date().toISOString(),
  commit,
  deviceKind: device,
  device: machine.deviceName,
  isa: machine.isa,
  gemm: device === 'cuda' ? info.cuda?.gemm : info.gemmBackend,
  node: process.version,
  peakGflops: machine.peakGflops,
  peakGBs: machine.peakGBs,
  reps,
  warmup,
};
writeFileSync(join(outDir, `${name}.jsonl`), `${[JSON.stringify({ meta }), ...rows.map((r) => JSON.stringify(r))].join('\n')}\n`);
const argv = process.argv.slice(2);
const md = [
  `# Every registry op on its perf case (${name})`,
  '',
  `- device: ${meta.device}; GEMM backend: ${meta.gemm}; node ${meta.node}`,
  `- commit: ${commit}; date: ${meta.date}`,
  `- command: \`node bench/registry.mjs${argv.length ? ` ${argv.join(' ')}` : ''}\``,
  machine.peakLine,
  `- timings: median (min) of ${reps} timed runs after ${warmup} warm-up runs, f32; fwd+bwd includes the tape, the backward and allocation, as a training step sees it${device === 'cuda' ? '; each run ends with synchronize()' : ''}`,
  '- GB/s: (inputs + output) bytes of the forward / forward time: the traffic a fused kernel cannot avoid, so "% bw" is how close a memory-bound op is to the bandwidth limit; GFLOP/s only for ops with a napkin FLOP count (fwd+bwd = 3 × fwd)',
  '',
  '| op | perf case | pass | median ms | min ms | GB/s | % bw | GFLOP/s | % peak |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.op} | ${r.shape} | ${r.pass} | ${f(r.median, 3)} | ${f(r.min, 3)} | ${f(r.gbs)} | ${f(r.pctBw)} | ${f(r.gflops)} | ${f(r.pctPeak)} |`,
  ),
  '',
];
writeFileSync(join(outDir, `${name}.md`), md.join('\n'));
console.log(`\nwrote ${join(outDir, name)}.md and .jsonl`);
