// cuda_emu.test.ts: the CUDA kernels of native/cuda, run on the CPU by the CUDA host emulator
// (test/cuda_emu/README.md): the real kernel code compiled by g++ into libcrate_cuda_emu.so, each
// CUDA thread a fiber, random schedules between barriers, NaN-poisoned shared memory, guard pages,
// barrier / shuffle / alignment / bounds checks, a shared-memory race detector. Checks, in order:
// the emulator's own self-test (it does catch races, barrier misuse, misalignment, out-of-bounds
// accesses), every entry point of crate_cuda.h against the CPU kernels (test/cuda/cuda_vs_cpu.cc:
// small shapes with the race detector and the uninitialised-shared-memory check, then larger
// multi-tile shapes, the TF32 tensor-core MSSA path, the sticky-error path), the registry suite
// (test/ops.test.ts in CRATE_TEST_DEVICE=cuda mode: every prim and CRATE op through the addon),
// the bf16-storage ops (test/bf16_*.test.ts) and a short training run on 'cuda' against the same run on the CPU.
// The build goes to build-emu/cuda-emu-vitest (incremental; CRATE_EMU_BUILD_DIR overrides).
// Skipped, with a message, when g++ is missing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { moduleJson, nodeJson } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const out = process.env.CRATE_EMU_BUILD_DIR ?? join(root, 'build-emu', 'cuda-emu-vitest');
const tmp = mkdtempSync(join(tmpdir(), 'crate-cuda-emu-'));
let skip: string | null = null;
let lib = '';
let harness = '';
let selftest = '';

/** The largest cases of the full harness run (~35 s of ~57 s emulated): left to runs by hand.
 * Everything else of the full run is kept: multi-tile GEMMs, MSSA up to N = 256, ISTA up to
 * d = 384, TSSA up to N = 1024, ... (without the race detector, which triples the time there: it
 * checks every kernel at the small shapes). */
const HEAVY = ['T=2080', 'N=1024', 'K=1024', 'N=4096', 'batch=12', 'T=1024'];

const ANSI_COLOR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

beforeAll(() => {
  if (spawnSync('g++', ['--version']).status !== 0) {
    skip = 'g++ not found';
    return;
  }
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    ['test/cuda_emu/build.mjs', '--out', out, '--jobs', '2', '--harness', '--selftest', '--quiet'],
    { cwd: root, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`building the CUDA host emulator failed:\n${r.stdout}${r.stderr}`);
  [lib = '', harness = '', selftest = ''] = r.stdout.trim().split('\n');
  console.log(`[crate] CUDA host emulator built in ${((Date.now() - t0) / 1000).toFixed(0)} s (${out})`);
}, 900_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function skipped(): boolean {
  if (skip) console.warn(`[crate] CUDA host emulator tests skipped: ${skip}`);
  return skip !== null;
}

/** Runs crate_cuda_test against the emulated library; returns its output. Throws when a case
 * fails or (unless faultExpected) a kernel faulted. */
function runHarness(args: string[], env: Record<string, string> = {}, faultExpected = false): string {
  const r = spawnSync(harness, ['--lib', lib, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const text = r.stdout + r.stderr;
  const summary = /cuda tests: (\d+) passed, (\d+) failed/.exec(text);
  if (r.status !== 0 || !summary || summary[2] !== '0' || (!faultExpected && /kernel fault/.test(text))) {
    const failed = text
      .split('\n')
      .filter((l) => /^FAIL|kernel fault|cuda-emu|cuda tests/.test(l))
      .join('\n');
    throw new Error(`crate_cuda_test ${args.join(' ')} failed (exit ${r.status}):\n${failed || text.slice(-4000)}`);
  }
  return text;
}

describe('CUDA kernels on the CUDA host emulator', () => {
  test('self-test: the emulator catches races, barrier and warp misuse, misalignment, out-of-bounds accesses', () => {
    if (skipped()) return;
    const list = spawnSync(selftest, ['--list'], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(list.length).toBeGreaterThanOrEqual(20);
    const bad: string[] = [];
    for (const c of list) {
      const r = spawnSync(selftest, [c], { encoding: 'utf8', env: { ...process.env, CRATE_EMU_QUIET: '1' } });
      if (r.status !== 0) bad.push(`${c}: ${r.stdout}${r.stderr}`);
    }
    expect(bad).toEqual([]);
  }, 120_000);

  test('every entry point of crate_cuda.h against the CPU kernels, small shapes, race detector on', () => {
    if (skipped()) return;
    const text = runHarness(['--small'], { CRATE_EMU_INITCHECK: '1' });
    // the cuBLAS cases are the only ones skipped (the emulator has no cuBLAS: the own GEMM runs)
    const skips = text.split('\n').filter((l) => l.startsWith('SKIP'));
    expect(skips.every((l) => /cublas/.test(l))).toBe(true);
    expect(Number(/cuda tests: (\d+) passed/.exec(text)?.[1])).toBeGreaterThan(90);
  }, 300_000);

  test('larger shapes: multi-tile GEMMs, MSSA, ISTA, coding rate, TSSA (crate_cuda_test without --small)', () => {
    if (skipped()) return;
    runHarness(
      HEAVY.flatMap((h) => ['--exclude', h]),
      { CRATE_EMU_RACECHECK: '0' },
    );
  }, 300_000);

  test('the MSSA tensor-core path (TF32 wmma), to TF32 precision', () => {
    if (skipped()) return;
    runHarness(['--small', '--filter', 'mssa', '--tol-scale', '1000'], { CRATE_MSSA_TF32: '1' });
  }, 300_000);

  test('an illegal address in a kernel makes the context sticky-failed (crate_cuda_test --sticky)', () => {
    if (skipped()) return;
    const text = runHarness(['--sticky'], {}, true);
    expect(text).toMatch(/PASS sticky/);
    expect(text).toMatch(/kernel fault in .* illegal memory access/);
  }, 120_000);

  test('the registry suite in CRATE_TEST_DEVICE=cuda mode (every op through the addon to the emulated kernels)', () => {
    if (skipped()) return;
    const r = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', 'test/ops.test.ts'], {
      cwd: root,
      env: { ...process.env, CRATE_CUDA_LIB: lib, CRATE_TEST_DEVICE: 'cuda' },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    const text = (r.stdout + r.stderr).replace(ANSI_COLOR, '');
    if (r.status !== 0 || /failed/.test(text) || !/Tests\s+\d+ passed/.test(text)) {
      const lines = text.split('\n').filter((l) => /FAIL|Error|kernel fault|seed/.test(l));
      throw new Error(`ops.test.ts on the emulated CUDA backend failed:\n${lines.slice(0, 60).join('\n')}`);
    }
  }, 300_000);

  test('bf16 storage: the core ops on bf16 cuda tensors vs an f64 reference (test/bf16_*.test.ts)', () => {
    if (skipped()) return;
    const r = spawnSync(
      process.execPath,
      ['node_modules/vitest/vitest.mjs', 'run', 'test/bf16_' /* every test/bf16_*.test.ts */],
      {
        cwd: root,
        env: { ...process.env, CRATE_CUDA_LIB: lib },
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      },
    );
    const text = (r.stdout + r.stderr).replace(ANSI_COLOR, '');
    if (r.status !== 0 || /failed|skipped/.test(text) || !/Tests\s+\d+ passed/.test(text)) {
      const lines = text.split('\n').filter((l) => /FAIL|Error|kernel fault|seed|values|skipped/.test(l));
      throw new Error(`test/bf16_*.test.ts on the emulated CUDA backend failed:\n${lines.slice(0, 60).join('\n')}`);
    }
  }, 300_000);

  test('a training step on cuda waits for the device twice (clipGradNorm, the loss read), plus the data-dependent checks (test/cuda/host_syncs.mjs)', () => {
    if (skipped()) return;
    const perStep = nodeJson(['test/cuda/host_syncs.mjs'], {
      ...process.env,
      CRATE_CUDA_LIB: lib,
      CRATE_EMU_RACECHECK: '0',
    });
    // the library's own device-side checks (gather's index check, TSSA's and the coding rate's
    // status reads) are counted too: the emulator runs the real runtime code. TSSA's forward
    // reports NaN/Inf in W / temp as the CPU does, so it waits once per call (on an event after its
    // validation pass, the rest of the op queued: see native/cuda/tssa.cu); tost-demo has depth 2,
    // and its backward (saved statistics) does not wait. The language models check their ids on
    // the host when given host ids, as the trainer does (no wait; the embedding then skips the
    // gather's index check): 2, or with ids already on the device one read-back each of idx and
    // the targets (4). ToST-LM's causal TSSA waits in its forward and backward (depth 2: + 4).
    // Pinned, so that a new wait in the hot path shows up here.
    expect(perStep).toEqual({
      'crate-mini': 2,
      'crate-alpha-demo': 2,
      'tost-demo': 4,
      'crate-lm-demo': 2,
      'crate-lm-demo@cuda-ids': 4,
      'tost-lm-demo': 6,
    });
  }, 300_000);

  test('a language model takes host ids on cuda; the validated gather skips its check and zero-fills', () => {
    if (skipped()) return;
    const script = `
      const C = await import(${JSON.stringify(join(root, 'lib', 'index.js'))});
      const { modelEntry } = await import(${JSON.stringify(join(root, 'lib', 'train', 'tasks.js'))});
      const out = {};
      // the gathers: checked reports the id 7 of a 5-row table, validated gives its row as zeros
      const w = C.tensor(Float32Array.from({ length: 15 }, (_, i) => i + 1), { shape: [5, 3] });
      const ids = C.tensor([0, 4, 7, 2], { dtype: 'i32' });
      const wc = w.to('cuda'), idc = ids.to('cuda');
      try { C.embedding(wc, idc); out.checked = 'no error'; } catch (e) { out.checked = String(e.message); }
      out.validated = Array.from(C.embeddingValidated(wc, idc).to('cpu').dataSync());
      try { C.embeddingValidated(w, ids); out.cpu = 'no error'; } catch (e) { out.cpu = String(e.message); }
      // an LM step's loss: host ids, device ids and the CPU model agree
      const m = modelEntry('crate-lm-demo').build([1, 1, 1], 64);
      const x = C.tensor(Array.from({ length: 32 }, (_, i) => (i * 7) % 64), { dtype: 'i32', shape: [2, 16] });
      out.cpuLoss = m.forward(x, x).loss.item();
      m.to('cuda');
      out.hostIds = m.forward(x, x).loss.item();
      out.deviceIds = m.forward(x.to('cuda'), x.to('cuda')).loss.item();
      try { m.forward(C.tensor([[1, 64]], { dtype: 'i32' })); out.range = 'no error'; } catch (e) { out.range = String(e.message); }
      console.log(JSON.stringify(out));
    `;
    const o = moduleJson(script, { ...process.env, CRATE_CUDA_LIB: lib, CRATE_EMU_RACECHECK: '0' });
    expect(o.checked).toMatch(/index 7 at position 2 is out of range \[0, 5\)/);
    expect(o.validated).toEqual([1, 2, 3, 13, 14, 15, 0, 0, 0, 7, 8, 9]);
    expect(o.cpu).toMatch(/out of range/); // the CPU checks regardless
    expect(Math.abs(o.hostIds - o.cpuLoss)).toBeLessThan(1e-5 * o.cpuLoss);
    expect(o.deviceIds).toBe(o.hostIds);
    expect(o.range).toMatch(/token id 64 at idx\[0, 1\] is out of range: expected 0 <= id < vocabSize 64/);
  }, 300_000);

  test('training crate-mini for an epoch on cuda gives the CPU loss sequence', () => {
    if (skipped()) return;
    const script = `
      const C = await import(${JSON.stringify(join(root, 'lib', 'index.js'))});
      const { train } = await import(${JSON.stringify(join(root, 'lib', 'train', 'trainer.js'))});
      const quiet = { log: () => {} };
      const base = { model: 'crate-mini', limitTrain: 128, limitTest: 64, batchSize: 32, epochs: 1, diagSamples: 8,
                     lr: 2e-3, warmupEpochs: 0.5 };
      const d = ${JSON.stringify(tmp)};
      const cpu = await train({ ...base, outDir: d + '/cpu' }, quiet);
      const gpu = await train({ ...base, outDir: d + '/gpu', device: 'cuda' }, quiet);
      console.log(JSON.stringify({ name: C.info().cuda?.name, cpu: cpu.losses, gpu: gpu.losses, mem: C.memory() }));
    `;
    const o = moduleJson(script, { ...process.env, CRATE_CUDA_LIB: lib, CRATE_EMU_RACECHECK: '0' });
    expect(o.name).toMatch(/CUDA host emulator/);
    expect(o.gpu.length).toBe(o.cpu.length);
    expect(o.cpu.length).toBeGreaterThan(0);
    // the same model, data and seed: the CUDA kernels agree with the CPU's to f32 rounding
    for (const [i, l] of (o.gpu as number[]).entries())
      expect(Math.abs(l - o.cpu[i])).toBeLessThan(1e-4 * Math.abs(o.cpu[i]));
    expect(o.mem.numTensors).toBe(0);
    expect(o.mem.cuda.bytes).toBe(0);
  }, 300_000);
});
