// train.test.ts: the training loop end to end on a slice of the embedded MNIST: it learns,
// writes metrics/checkpoint/figure, resumes with the exact same loss sequence, and stops
// cleanly (checkpoint kept) on a non-finite loss.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { hasCheckpoint, loadCheckpoint } from '../ts/train/checkpoint.js';
import { buildModel, train } from '../ts/train/trainer.js';

const root = mkdtempSync(join(tmpdir(), 'crate-train-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const base = {
  model: 'crate-mini',
  limitTrain: 256,
  limitTest: 128,
  batchSize: 32,
  epochs: 2,
  diagSamples: 16,
  lr: 2e-3,
  warmupEpochs: 0.5,
};
const quiet = { log: () => {} };

describe('training', () => {
  test('an uninterrupted run learns and writes metrics, a checkpoint and the figure', async () => {
    const before = C.memory().numTensors;
    const r = await train({ ...base, outDir: join(root, 'a') }, quiet);
    expect(r.status).toBe('done');
    expect(r.steps).toBe(16);
    expect(r.losses.length).toBe(16);
    const firstQ = r.losses.slice(0, 4).reduce((a, b) => a + b, 0) / 4;
    const lastQ = r.losses.slice(-4).reduce((a, b) => a + b, 0) / 4;
    expect(lastQ).toBeLessThan(firstQ);
    expect(r.finalAcc).toBeGreaterThan(0.2); // well above chance (0.1) after 16 steps
    const lines = readFileSync(join(root, 'a', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === 'step').length).toBe(16);
    const evals = lines.filter((l) => l.type === 'eval');
    expect(evals.length).toBe(3); // before training + 2 epochs
    expect(evals[2].layers.length).toBe(2);
    expect(Number.isFinite(evals[2].layers[0].rc)).toBe(true);
    expect(existsSync(join(root, 'a', 'report.svg'))).toBe(true);
    expect(hasCheckpoint(join(root, 'a'))).toBe(true);
    expect(C.memory().numTensors).toBe(before);
  });

  test('stop at step 5 + resume gives exactly the uninterrupted loss sequence', async () => {
    const full = await train({ ...base, outDir: join(root, 'b-full') }, quiet);
    const part1 = await train({ ...base, outDir: join(root, 'b'), maxSteps: 5 }, quiet);
    expect(part1.status).toBe('stopped');
    expect(part1.losses).toEqual(full.losses.slice(0, 5));
    const part2 = await train({ ...base, outDir: join(root, 'b'), resume: true }, quiet);
    expect(part2.status).toBe('done');
    expect([...part1.losses, ...part2.losses]).toEqual(full.losses);
    expect(part2.finalAcc).toBe(full.finalAcc);
  });

  test('a non-finite loss stops cleanly and keeps the last checkpoint', async () => {
    const dir = join(root, 'c');
    const r = await train({ ...base, outDir: dir, lr: 1e30, warmupEpochs: 0, clip: 0, saveEvery: 1 }, quiet);
    expect(r.status).toBe('nonfinite');
    expect(r.steps).toBeGreaterThanOrEqual(1);
    const model = buildModel('crate-mini', [1, 28, 28], 10);
    const st = loadCheckpoint(dir, model, null);
    expect(st.step).toBe(r.steps);
    const stop = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .pop();
    expect(stop.type).toBe('stop');
    for (const p of model.parameters()) expect(() => C.assertFinite(p, 'checkpoint')).not.toThrow();
    model.dispose();
  });
});
