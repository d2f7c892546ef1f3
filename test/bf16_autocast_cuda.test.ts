// bf16_autocast_cuda.test.ts: autocast for the CRATE ops on 'cuda'. Inside C.autocast, mssa and
// the ISTA ops (matmul-class) run their bf16 kernels on bf16 copies of f32 inputs and return f32,
// with f32 gradients for the f32 inputs; TSSA (memory-bound, f64 inside) stays f32. Each op's
// output and every gradient (of sum(out²)) is compared with the same op outside autocast: the
// bf16 path must differ (it ran) but by no more than a few bf16 roundings relative to the largest
// value (inputs rounded to 2⁻⁹, products accumulated in f32, outputs rounded back; the MSSA
// backward also rounds its probability-weighted terms: observed ≤ 1e-2 on these shapes).
// Needs CUDA: run on a GPU, or by cuda_emu.test.ts / cuda_fake.test.ts; skipped otherwise.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';

const cudaMissing = !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] bf16 autocast cuda tests skipped: no usable CUDA (${C.info().cudaReason})`);

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);

type Op = (...xs: C.Tensor[]) => C.Tensor;

/** Runs op on fresh f32 cuda leaves from `make`, outside and inside autocast; relative errors. */
function compare(make: () => C.Tensor[], op: Op) {
  const run = (amp: boolean) => {
    const xs = make();
    const out = amp ? C.autocast(() => op(...xs)) : op(...xs);
    C.sum(C.square(out)).backward();
    const grads = xs.map((x) => x.grad as C.Tensor);
    return { out, grads };
  };
  const ref = run(false);
  const amp = run(true);
  const rel = (a: C.Tensor, b: C.Tensor) => maxDiff(a.dataSync(), b.dataSync()) / maxAbs(a.dataSync());
  return {
    outDtype: amp.out.dtype,
    gradDtypes: amp.grads.map((g) => g.dtype),
    out: rel(ref.out, amp.out),
    grads: ref.grads.map((g, i) => rel(g, amp.grads[i] as C.Tensor)),
  };
}

function leaf(shape: number[], seed: number, scale = 1): C.Tensor {
  const t = C.affine(C.randn(shape, { seed }), scale, 0).to('cuda');
  t.requiresGrad = true;
  return t;
}

const MATMUL_CLASS: [string, () => C.Tensor[], Op, number][] = [
  ['mssa (causal)', () => [leaf([2, 19, 32], 1)], (P) => C.mssa(P, { heads: 2, causal: true }), 2 ** -5],
  ['ista', () => [leaf([2, 9, 16], 2), leaf([16, 16], 3, 0.2)], (Y, W) => C.ista(Y, W), 2 ** -6],
  [
    'istaOvercomplete',
    () => [leaf([2, 9, 16], 4), leaf([16, 32], 5, 0.2), leaf([16, 32], 6, 0.2)],
    (Y, D, D1) => C.istaOvercomplete(Y, D, D1),
    2 ** -6,
  ],
  ['istaTied', () => [leaf([2, 9, 16], 7), leaf([32, 16], 8, 0.2)], (Y, W) => C.istaTied(Y, W), 2 ** -6],
];

describe.skipIf(cudaMissing)('autocast on cuda: the CRATE ops', () => {
  for (const [name, make, op, gradTol] of MATMUL_CLASS) {
    test(`${name}: bf16 kernels inside autocast, f32 output and gradients within bf16 rounding`, () => {
      C.tidy(() => {
        const r = compare(make, op);
        expect(r.outDtype).toBe('f32');
        expect(r.gradDtypes.every((d) => d === 'f32')).toBe(true);
        expect(r.out).toBeGreaterThan(0); // the bf16 path ran
        expect(r.out).toBeLessThan(2 ** -6);
        for (const g of r.grads) {
          expect(g).toBeGreaterThan(0);
          expect(g).toBeLessThan(gradTol);
        }
      });
    });
  }

  test('tssa stays f32 inside autocast (bit-identical to outside)', () => {
    C.tidy(() => {
      const r = compare(
        () => [leaf([2, 9, 16], 9), leaf([2], 10, 0.1)],
        (W, t) => C.tssa(W, t as C.Tensor, 2),
      );
      expect(r.outDtype).toBe('f32');
      expect(r.out).toBe(0);
      expect(r.grads).toEqual([0, 0]);
    });
  });

  test('autocast leaves no tensor behind (the bf16 copies are freed)', () => {
    const before = C.memory().numTensors;
    C.tidy(() => {
      const P = leaf([1, 8, 16], 11);
      C.autocast(() => C.sum(C.mssa(P, { heads: 2 }))).backward();
    });
    expect(C.memory().numTensors).toBe(before);
  });
});
