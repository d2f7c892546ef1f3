// reliability.test.ts: anomaly mode, worker threads and concurrent async readback, 64-bit sizes,
// and a short long-run check (memory flat over many training steps). The long forms are scripts
// (scripts/longrun.mjs, CRATE_BIG_TESTS=1 for the > 2^31-element tensor). Also the host caching
// allocator's eviction at its cap.

import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { CRATE } from '../ts/models/crate.js';
import { packageRoot } from '../ts/native.js';
import { AdamW } from '../ts/optim/index.js';
import { moduleJson } from './helpers/child.js';

describe('anomaly mode', () => {
  test('names the first op that produces NaN/Inf in forward', () => {
    const x = C.tensor([1, -1, 2]);
    expect(() => C.detectAnomaly(() => C.tidy(() => C.log(x).mul(2)))).toThrow(
      /anomaly: op 'log' \(forward, inputs all finite\) produced NaN at flat index 1/,
    );
    // outside anomaly mode the NaN just propagates
    expect(Number.isNaN(C.tidy(() => C.log(x).mul(2).dataSync()[1] as number))).toBe(true);
    x.dispose();
  });
  test('names the op whose backward produces a non-finite gradient', () => {
    const x = C.tensor([0, 4], { requiresGrad: true });
    expect(() =>
      C.detectAnomaly(() =>
        C.tidy(() => {
          C.sqrt(x).sum().backward();
        }),
      ),
    ).toThrow(/anomaly: the backward of 'sqrt' \(gradient of input 0\) produced Infinity/);
    expect(C.isAnomalyMode()).toBe(false);
    x.dispose();
  });
});

describe('concurrency', () => {
  test('many await data() at once are all correct', async () => {
    const ts = Array.from({ length: 50 }, (_, i) => C.full([100], i));
    const all = await Promise.all(ts.map((t) => t.data()));
    all.forEach((d, i) => {
      expect(d[99]).toBe(i);
    });
    for (const t of ts) t.dispose();
  });
  test('worker threads run ops on their own tensors while the main thread does too', async () => {
    const lib = join(packageRoot, 'lib', 'index.js');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.lib).then((C) => {
        const a = C.randn([64, 64], { seed: workerData.seed, dtype: 'f64' });
        let s = 0;
        for (let i = 0; i < 50; i++) s = C.tidy(() => C.matmul(a, a).sum().item());
        parentPort.postMessage({ s, live: C.memory().numTensors });
      }).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
    const run = (seed: number) =>
      new Promise<{ s: number; live: number; error?: string }>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { lib, seed } });
        w.once('message', (m) => {
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    const expected = (seed: number) => {
      const a = C.randn([64, 64], { seed, dtype: 'f64' });
      const s = C.tidy(() => C.matmul(a, a).sum().item());
      a.dispose();
      return s;
    };
    const pending = [run(1), run(2)];
    let mainSum = 0;
    for (let i = 0; i < 50; i++) mainSum += C.tidy(() => C.randn([32, 32], { seed: i }).sum().item());
    const [r1, r2] = await Promise.all(pending);
    expect(r1?.error).toBeUndefined();
    expect(r1?.s).toBeCloseTo(expected(1), 9);
    expect(r2?.s).toBeCloseTo(expected(2), 9);
    expect(r1?.live).toBe(1);
    expect(Number.isFinite(mainSum)).toBe(true);
  });
});

describe('64-bit sizes', () => {
  test('sizes past 2^31 are computed in 64-bit and checked against the buffer', async () => {
    const { native } = await import('../ts/native.js');
    const s = native.empty(0, 1, true);
    const big = 2 ** 31 + 1;
    expect(() => native.binary(0, s, [0], s, [0], s, [big])).toThrow(
      /argument 'out' holds 1 elements, the op needs 2147483649/,
    );
    expect(() => native.matmul(s, s, s, [], [], [], 2 ** 20, 1, 2 ** 12, false, false)).toThrow(
      /argument 'a' holds 1 elements, the op needs 4294967296/,
    );
    native.empty(0, 0, false).dispose();
    s.dispose();
  });
  test('a tensor beyond the supported size is refused up front with a clear error', () => {
    expect(() => C.zeros([2 ** 21, 2 ** 21])).toThrow(/has 4398046511104 elements, more than the 2\^40 supported/);
  });
  test.skipIf(!process.env.CRATE_BIG_TESTS)(
    'a tensor with more than 2^31 elements works (CRATE_BIG_TESTS=1, ~9 GB)',
    () => {
      const n = 2 ** 31 + 64;
      const t = C.ones([n], { dtype: 'i32' });
      const s = C.sum(t);
      expect(s.item()).toBe(n % 2 ** 32 >= 2 ** 31 ? (n % 2 ** 32) - 2 ** 32 : n % 2 ** 32); // i32 sum wraps
      const f = C.tidy(() =>
        C.slice(C.cast(C.slice(t, 0, n - 3), 'f32'), 0, -2)
          .sum()
          .item(),
      );
      expect(f).toBe(n - 3 - 2 + 0);
      t.dispose();
      s.dispose();
    },
  );
});

describe('long run (short form)', () => {
  test('200 training steps: live tensors and native bytes flat, RSS bounded after warm-up', async () => {
    C.manualSeed(0);
    const model = new CRATE({
      imageSize: 8,
      patchSize: 4,
      numClasses: 5,
      dim: 16,
      depth: 2,
      heads: 2,
      dimHead: 8,
      channels: 1,
    });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const x = C.randn([16, 1, 8, 8], { seed: 1 });
    const y = C.tensor(
      Array.from({ length: 16 }, (_, i) => i % 5),
      { dtype: 'i32' },
    );
    let warm = { tensors: 0, rss: 0, bytes: 0 };
    for (let step = 0; step < 200; step++) {
      C.tidy(() => {
        C.crossEntropy(model.forward(x), y).backward();
      });
      opt.step();
      opt.zeroGrad();
      // a training loop awaits its next batch; N-API runs native finalizers from the event loop
      if (step % 10 === 0) await new Promise((r) => setImmediate(r));
      if (step === 99)
        warm = { tensors: C.memory().numTensors, rss: process.memoryUsage().rss, bytes: C.memory().cpu.bytes };
    }
    expect(C.memory().numTensors).toBe(warm.tensors);
    expect(C.memory().cpu.bytes).toBe(warm.bytes);
    // (under ASan its quarantine holds freed memory, so RSS says nothing there)
    if (!process.env.ASAN_OPTIONS) expect(process.memoryUsage().rss - warm.rss).toBeLessThan(32 * 2 ** 20);
    model.dispose();
    opt.dispose();
    x.dispose();
    y.dispose();
  });
});

describe('host caching allocator at its cap', () => {
  test('a freed block evicts the least recently used sizes instead of being unmapped (CRATE_CPU_CACHE_MB=64)', () => {
    const script = `
      const C = await import(${JSON.stringify(join(packageRoot, 'lib', 'index.js'))});
      const cached = () => C.memory().cpu.cachedBytes;
      C.emptyCache();
      const out = {};
      C.zeros([10 * 2 ** 20]).dispose(); // 40 MiB: cached
      out.afterA = cached();
      C.zeros([7.5 * 2 ** 20]).dispose(); // 30 MiB: 40 + 30 > 64, so the 40 MiB block makes room
      out.afterB = cached();
      const again = C.zeros([7.5 * 2 ** 20]); // served from the cache
      out.whileB = cached();
      again.dispose();
      out.emptied = C.emptyCache();
      console.log(JSON.stringify(out));
    `;
    const o = moduleJson(script, { ...process.env, CRATE_CPU_CACHE_MB: '64' });
    const MiB = 2 ** 20;
    expect(o.afterA).toBeGreaterThanOrEqual(40 * MiB);
    expect(o.afterA).toBeLessThanOrEqual(50 * MiB);
    expect(o.afterB).toBeGreaterThanOrEqual(30 * MiB); // the new size is kept ...
    expect(o.afterB).toBeLessThan(40 * MiB); // ... and the old one is gone
    expect(o.whileB).toBe(0);
    expect(o.emptied).toBe(o.afterB);
  });
});
