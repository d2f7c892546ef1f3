// ops.test.ts: the registry-driven suite. For every op and case: forward vs the f64 reference in
// f64 and f32, backward vs central finite differences in f64, and no leaked tensors or bytes.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { CRATE_REGISTRY } from './helpers/crate_registry.js';
import { gradCheck, makeData, relErr, toTensors } from './helpers/harness.js';
import { REGISTRY as CORE_REGISTRY } from './helpers/registry.js';

const REGISTRY = [...CORE_REGISTRY, ...CRATE_REGISTRY];

const device = process.env.CRATE_TEST_DEVICE ?? 'cpu';
const cudaMissing = device === 'cuda' && !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] CRATE_TEST_DEVICE=cuda but no usable GPU: ${C.info().cudaReason}; skipping`);

/** Gradients of sum(out ∘ seed) w.r.t. every float input, with a fixed pseudo-random seed. */
function grads(spec: (typeof REGISTRY)[number], xs: C.Tensor[], args: unknown): number[][] {
  return C.tidy(() => {
    const out = spec.run(xs, args);
    const seed = C.randn(out.shape, { seed: 7, dtype: out.dtype }).to(out.device);
    out.backward(seed);
    return xs.map((x) => (x.grad ? Array.from(x.grad.dataSync()) : []));
  });
}

if (device === 'cuda') {
  // CUDA vs the CPU path: the CUDA f32 error against the f64 reference must be within 2× the CPU
  // f32 error (plus a small absolute slack), FlashAttention's test criterion; the same for every
  // input gradient, with the f64 CPU gradient as the ground truth.
  for (const spec of REGISTRY) {
    describe.skipIf(cudaMissing)(`${spec.name} [cuda]`, () => {
      for (const c of spec.cases) {
        test(`${c.label}: forward cuda vs cpu`, () => {
          const data = makeData(c);
          const expected = spec.ref(data, c.args);
          C.tidy(() => {
            const cpu = spec.run(toTensors(c, data, 'f32', false), c.args);
            const gpu = spec.run(toTensors(c, data, 'f32', false, 'cuda'), c.args);
            expect(gpu.device).toBe('cuda');
            expect(gpu.shape).toEqual(expected.shape);
            const eCpu = relErr(cpu.dataSync(), expected.data);
            expect(relErr(gpu.dataSync(), expected.data)).toBeLessThanOrEqual(2 * eCpu + 1e-6);
          });
        });
        if (!spec.noGrad) {
          test(`${c.label}: gradients cuda vs cpu`, () => {
            const data = makeData(c);
            const truth = grads(spec, toTensors(c, data, 'f64', true), c.args);
            const cpu = grads(spec, toTensors(c, data, 'f32', true), c.args);
            const gpu = grads(spec, toTensors(c, data, 'f32', true, 'cuda'), c.args);
            truth.forEach((t, i) => {
              if (!t.length) return;
              const eCpu = relErr(cpu[i] as number[], t);
              expect(relErr(gpu[i] as number[], t)).toBeLessThanOrEqual(2 * eCpu + 1e-5);
            });
          });
        }
        test(`${c.label}: no leaks on cuda`, () => {
          const before = C.memory();
          C.tidy(() => {
            const xs = toTensors(c, makeData(c), 'f32', !spec.noGrad, 'cuda');
            const out = spec.run(xs, c.args);
            if (!spec.noGrad && out.requiresGrad) out.backward(C.onesLike(out));
            for (const x of xs) x.zeroGrad();
          });
          const after = C.memory();
          expect(after.numTensors).toBe(before.numTensors);
          expect(after.cuda.bytes).toBe(before.cuda.bytes);
        });
      }
    });
  }
}

for (const spec of REGISTRY) {
  describe.skipIf(cudaMissing)(spec.name, () => {
    for (const c of spec.cases) {
      test(`${c.label}: forward f64`, () => {
        const data = makeData(c);
        const expected = spec.ref(data, c.args);
        C.tidy(() => {
          const out = spec.run(toTensors(c, data, 'f64', false), c.args);
          expect(out.shape).toEqual(expected.shape);
          expect(out.dtype).toBe('f64');
          expect(relErr(out.dataSync(), expected.data)).toBeLessThanOrEqual(spec.tol?.f64 ?? 1e-12);
        });
      });
      test(`${c.label}: forward f32`, () => {
        const data = makeData(c);
        const expected = spec.ref(data, c.args);
        C.tidy(() => {
          const out = spec.run(toTensors(c, data, 'f32', false), c.args);
          expect(out.shape).toEqual(expected.shape);
          expect(relErr(out.dataSync(), expected.data)).toBeLessThanOrEqual(spec.tol?.f32 ?? 1e-5);
        });
      });
      if (!spec.noGrad) {
        test(`${c.label}: gradient vs finite differences (f64)`, () => {
          const r = gradCheck(spec, c);
          expect(r.checked).toBeGreaterThan(0);
          expect(r.maxErr).toBeLessThanOrEqual(spec.gradTol ?? 1e-6);
        });
      }
      test(`${c.label}: no leaks`, () => {
        const before = C.memory();
        C.tidy(() => {
          const xs = toTensors(c, makeData(c), 'f32', !spec.noGrad);
          const out = spec.run(xs, c.args);
          if (!spec.noGrad && out.requiresGrad) out.backward(C.onesLike(out));
          for (const x of xs) x.zeroGrad();
        });
        const after = C.memory();
        expect(after.numTensors).toBe(before.numTensors);
        expect(after.cpu.bytes).toBe(before.cpu.bytes);
      });
    }
  });
}

// crossEntropy's reductions run on the device on cuda (the sum and the row count never leave it):
// the edge cases and the bookkeeping, on whichever device this suite runs.
describe.skipIf(cudaMissing)(`crossEntropy reductions on ${device}`, () => {
  const on = (t: C.Tensor) => (device === 'cuda' ? t.to('cuda') : t);
  test('every row ignored: mean is NaN, sum is 0, the gradient is zero', () => {
    C.tidy(() => {
      const x = on(C.randn([3, 4], { seed: 3 }));
      x.requiresGrad = true;
      const t = on(C.tensor([-100, -100, -100], { dtype: 'i32' }));
      expect(Number.isNaN(C.crossEntropy(x, t).item())).toBe(true);
      const s = C.crossEntropy(x, t, { reduction: 'sum' });
      expect(s.item()).toBe(0);
      s.backward();
      expect(Array.from((x.grad as C.Tensor).dataSync())).toEqual(new Array(12).fill(0));
    });
  });
  test('mean over the counted rows and its gradient, with no tensor left behind', () => {
    const before = C.memory();
    C.tidy(() => {
      const xs = C.randn([4, 5], { seed: 4 });
      const x = on(xs);
      x.requiresGrad = true;
      const labels = [2, -100, 4, 0];
      const loss = C.crossEntropy(x, on(C.tensor(labels, { dtype: 'i32' })));
      loss.backward(on(C.scalar(2)));
      // f64 reference: mean of -log softmax over the 3 counted rows; d/dx = 2 (softmax - onehot) / 3
      const v = Array.from(xs.dataSync());
      let ref = 0;
      const gref: number[] = [];
      labels.forEach((y, r) => {
        const row = v.slice(r * 5, r * 5 + 5);
        const m = Math.max(...row);
        const z = row.reduce((s, a) => s + Math.exp(a - m), 0);
        if (y !== -100) ref += (m + Math.log(z) - (row[y] as number)) / 3;
        for (let c = 0; c < 5; c++) {
          gref.push(y === -100 ? 0 : (2 * (Math.exp((row[c] as number) - m) / z - (c === y ? 1 : 0))) / 3);
        }
      });
      expect(loss.item()).toBeCloseTo(ref, 5);
      const g = Array.from((x.grad as C.Tensor).dataSync());
      g.forEach((a, i) => {
        expect(a).toBeCloseTo(gref[i] as number, 5);
      });
    });
    const after = C.memory();
    expect(after.numTensors).toBe(before.numTensors);
  });
});
