// gemm.test.ts: both CPU GEMM backends (the own blocked AVX2/FMA kernel and the run-time BLAS)
// against plain f64 loops, over shapes that straddle the 6×16 micro-tile and the 256-deep /
// 96-row blocks, all transpose combinations and broadcast batches.
import { afterAll, describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { mulberry32, relErr } from './helpers/harness.js';
import { matmulRef } from './helpers/ref.js';

const backends: ('own' | 'blas')[] = ['own', ...(C.info().blasLibrary ? (['blas'] as const) : [])];
if (backends.length === 1) console.warn(`[crate] BLAS backend not tested: ${C.info().blasReason}`);
const initial = C.info().gemmBackend;
afterAll(() => C.setGemmBackend(initial));

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [5, 15, 3],
  [6, 16, 7],
  [7, 17, 33],
  [13, 31, 257],
  [97, 33, 129],
  [200, 129, 300],
  [64, 3100, 40],
];

describe.each(backends)('gemm (%s)', (backend) => {
  for (const [M, N, K] of shapes) {
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      test(`${M}x${N}x${K} transA=${tA} transB=${tB}`, () => {
        C.setGemmBackend(backend);
        const rnd = mulberry32(M * 7 + N * 13 + K);
        for (const dtype of ['f64', 'f32'] as const) {
          C.tidy(() => {
            const aShape = tA ? [K, M] : [M, K];
            const bShape = tB ? [N, K] : [K, N];
            const ad = Float64Array.from({ length: M * K }, () => rnd() * 2 - 1);
            const bd = Float64Array.from({ length: K * N }, () => rnd() * 2 - 1);
            const a = C.tensor(dtype === 'f64' ? ad : Float32Array.from(ad), { shape: aShape, dtype });
            const b = C.tensor(dtype === 'f64' ? bd : Float32Array.from(bd), { shape: bShape, dtype });
            const out = C.matmul(a, b, { transA: tA, transB: tB });
            const ref = matmulRef({ data: ad, shape: aShape }, { data: bd, shape: bShape }, tA, tB);
            expect(relErr(out.dataSync(), ref.data)).toBeLessThan(dtype === 'f64' ? 1e-13 : 2e-6 * Math.sqrt(K));
          });
        }
      });
    }
  }
  test('batched small matrices (attention-sized) and broadcast batches', () => {
    C.setGemmBackend(backend);
    C.tidy(() => {
      const a = C.randn([12, 65, 64], { dtype: 'f64', seed: 1 });
      const b = C.randn([12, 64, 65], { dtype: 'f64', seed: 2 });
      const out = C.matmul(a, b);
      const ref = matmulRef(
        { data: Float64Array.from(a.dataSync()), shape: [12, 65, 64] },
        { data: Float64Array.from(b.dataSync()), shape: [12, 64, 65] },
      );
      expect(relErr(out.dataSync(), ref.data)).toBeLessThan(1e-13);
    });
  });
});
