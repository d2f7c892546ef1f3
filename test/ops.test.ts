// ops.test.ts: the registry-driven suite. For every op and case: forward vs the f64 reference in
// f64 and f32, backward vs central finite differences in f64, and no leaked tensors or bytes.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { gradCheck, makeData, relErr, toTensors } from './helpers/harness.js';
import { CRATE_REGISTRY } from './helpers/crate_registry.js';
import { REGISTRY as CORE_REGISTRY } from './helpers/registry.js';

const REGISTRY = [...CORE_REGISTRY, ...CRATE_REGISTRY];

const device = process.env.CRATE_TEST_DEVICE ?? 'cpu';
const cudaMissing = device === 'cuda' && !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] CRATE_TEST_DEVICE=cuda but no usable GPU: ${C.info().cudaReason}; skipping`);

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
