// tasks.test.ts: the non-classification tasks of `crate train` end to end on tiny slices of the
// embedded data: CRATE-MAE (masked-patch MSE on MNIST) and the causal CRATE language model (byte
// tokens of the embedded corpus) learn, resume with the exact loss sequence, report per-layer
// diagnostics, and evaluate from their checkpoint; the model registry refuses unknown names.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { evaluateCheckpoint } from '../ts/train/evaluate.js';
import { modelEntry, modelNames } from '../ts/train/tasks.js';
import { train } from '../ts/train/trainer.js';
import { canResolve } from './helpers/harness.js';

const root = mkdtempSync(join(tmpdir(), 'crate-tasks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const quiet = { log: () => {} };
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

describe('CRATE-MAE task', () => {
  const base = {
    model: 'crate-mae-demo',
    limitTrain: 512,
    limitTest: 128,
    batchSize: 64,
    epochs: 2,
    diagSamples: 8,
    lr: 2e-3,
    warmupEpochs: 0.25,
  };
  test('learns, reports encoder+decoder layers, evaluates from its checkpoint', async () => {
    const before = C.memory().numTensors;
    const dir = join(root, 'mae');
    const r = await train({ ...base, outDir: dir }, quiet);
    expect(r.status).toBe('done');
    expect(r.steps).toBe(16);
    expect(mean(r.losses.slice(-4))).toBeLessThan(mean(r.losses.slice(0, 4)));
    expect(Number.isNaN(r.finalAcc)).toBe(true);
    expect(r.finalLoss).toBeGreaterThan(0);
    const last = r.epochs[r.epochs.length - 1];
    expect(last?.layers.length).toBe(4); // 2 encoder + 2 decoder attention layers
    expect(Number.isFinite(last?.layers[0]?.rc)).toBe(true);
    expect(Number.isFinite(last?.layers[0]?.sparsity)).toBe(true); // encoder ISTA
    expect(Number.isNaN(last?.layers[3]?.sparsity)).toBe(true); // decoder has no ISTA
    const ev = await evaluateCheckpoint(dir, 128);
    expect(ev.kind).toBe('mae');
    expect(ev.loss).toBeCloseTo(r.finalLoss, 6); // same weights, same fixed eval masks
    expect(C.memory().numTensors).toBe(before);
  });
  test('stop + resume reproduces the loss sequence (masks are a function of seed, epoch, batch)', async () => {
    const full = await train({ ...base, outDir: join(root, 'mae-full') }, quiet);
    const p1 = await train({ ...base, outDir: join(root, 'mae-b'), maxSteps: 5 }, quiet);
    const p2 = await train({ ...base, outDir: join(root, 'mae-b'), resume: true }, quiet);
    expect([...p1.losses, ...p2.losses]).toEqual(full.losses);
  });
});

describe('causal language-model task', () => {
  const base = {
    model: 'crate-lm-demo',
    limitTrain: 64, // windows of the training split
    limitTest: 16,
    batchSize: 16,
    epochs: 2,
    diagSamples: 4,
    lr: 3e-3,
    warmupEpochs: 0.2,
  };
  test('learns on the embedded corpus, samples text, evaluates from its checkpoint', async () => {
    const before = C.memory().numTensors;
    const dir = join(root, 'lm');
    const r = await train({ ...base, outDir: dir }, quiet);
    expect(r.status).toBe('done');
    expect(r.steps).toBe(8);
    // byte-level: a uniform model has loss ln 256 = 5.55; a few steps must beat it clearly
    expect(r.losses[0]).toBeGreaterThan(4.5);
    expect(mean(r.losses.slice(-2))).toBeLessThan(r.losses[0] as number);
    expect(r.finalLoss).toBeLessThan(Math.log(256));
    expect(typeof r.sample).toBe('string');
    expect((r.sample as string).length).toBeGreaterThan(0);
    const last = r.epochs[r.epochs.length - 1];
    expect(last?.layers.length).toBe(2);
    expect(Number.isFinite(last?.layers[1]?.rc)).toBe(true);
    const ev = await evaluateCheckpoint(dir, 16);
    expect(ev.kind).toBe('lm');
    expect(ev.loss).toBeCloseTo(r.finalLoss, 6);
    expect(C.memory().numTensors).toBe(before);
  });
  test('stop + resume reproduces the loss sequence; --text-file trains on a user text', async () => {
    const full = await train({ ...base, outDir: join(root, 'lm-full') }, quiet);
    const p1 = await train({ ...base, outDir: join(root, 'lm-b'), maxSteps: 3 }, quiet);
    const p2 = await train({ ...base, outDir: join(root, 'lm-b'), resume: true }, quiet);
    expect([...p1.losses, ...p2.losses]).toEqual(full.losses);
    const file = join(root, 'tiny.txt');
    writeFileSync(file, 'abcabcabc '.repeat(800));
    const own = await train({ ...base, outDir: join(root, 'lm-own'), textFile: file, epochs: 1 }, quiet);
    expect(own.status).toBe('done');
    expect(own.losses).not.toEqual(full.losses.slice(0, own.losses.length));
  });
});

describe('image-folder data', () => {
  const hasSharp = canResolve('sharp');
  test.skipIf(!hasSharp)('crate train --data folder reads train/ and test/ class folders', async () => {
    const { Resvg } = await import('@resvg/resvg-js');
    const dir = join(root, 'folder');
    // two classes that differ by where a bright square sits
    for (const split of ['train', 'test']) {
      for (const [cls, x] of [
        ['left', 0],
        ['right', 4],
      ] as const) {
        mkdirSync(join(dir, split, cls), { recursive: true });
        for (let i = 0; i < 6; i++) {
          const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="rgb(${10 * i},0,0)"/><rect x="${x}" y="${i % 4}" width="4" height="4" fill="white"/></svg>`;
          writeFileSync(join(dir, split, cls, `${i}.png`), new Resvg(svg).render().asPng());
        }
      }
    }
    const r = await train(
      {
        model: 'crate-mini',
        data: 'folder',
        dataDir: dir,
        imageSize: 8,
        batchSize: 4,
        epochs: 2,
        diagSamples: 4,
        outDir: join(root, 'folder-run'),
      },
      quiet,
    );
    expect(r.status).toBe('done');
    expect(r.steps).toBe(6);
    expect(r.finalAcc).toBeGreaterThanOrEqual(0);
    expect(r.finalAcc).toBeLessThanOrEqual(1);
    expect(r.epochs[0]?.layers.length).toBe(2);
  });
});

describe('model registry', () => {
  test('every family is registered with its task', () => {
    const names = modelNames();
    for (const n of [
      'crate-demo',
      'crate-base',
      'crate-alpha-b16',
      'crate-mae-demo',
      'crate-lm-demo',
      'tost-demo',
      'tost-lm-demo',
    ]) {
      expect(names).toContain(n);
    }
    expect(modelEntry('crate-mae-base').task).toBe('mae');
    expect(modelEntry('crate-lm-base').task).toBe('lm');
    expect(modelEntry('crate-alpha-demo').task).toBe('classify');
    expect(modelEntry('tost-s').task).toBe('classify');
    expect(modelEntry('tost-lm-base').task).toBe('lm');
  });
  test('an unknown model or a text dataset for an image model is a clear error', async () => {
    expect(() => modelEntry('crate-huge')).toThrow(/unknown model 'crate-huge'; choose one of .*crate-demo/);
    await expect(train({ model: 'crate-mini', data: 'text', outDir: join(root, 'x') }, quiet)).rejects.toThrow(
      /--data text needs a language model/,
    );
  });
});
