// bf16_rate_cuda.test.ts: the coding rate on 'cuda': bf16 storage for logdetGram and
// logdetGramHeads (Z / X and their gradients bf16, α and R f32, f64 inside) and the per-head
// kernels in f32 and bf16 (X (B, N, H·p) read in place). Every result is checked against an f64
// reference written here in plain loops: R = ½ logdet(I + αZZᵀ) by a Cholesky of the m×m matrix
// (the kernels may factor the other, smaller side: Sylvester's identity makes them equal), and the
// gradient dR·α(I + αZZᵀ)⁻¹Z by the same factor's triangular solves. The inputs are the bf16 (or
// f32) values themselves, so R (f32, computed in f64) is off by an f32 rounding and a bf16
// gradient by one bf16 rounding (≤ 2⁻⁸ relative). Errors: a NaN in one head names that head as
// the CPU does. Needs CUDA: run on a GPU, or by cuda_emu.test.ts (the emulated kernels) and
// cuda_fake.test.ts (the host fake) with CRATE_CUDA_LIB; skipped with a message otherwise.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { expectClose, randBf16, values } from './helpers/bf16.js';

const cudaMissing = !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] bf16 coding-rate cuda tests skipped: no usable CUDA (${C.info().cudaReason})`);

/** ½ logdet(I + αZZᵀ) and α(I + αZZᵀ)⁻¹Z for one m×n matrix z (row-major), in f64. */
function rateRef(z: number[], m: number, n: number, alpha: number): { R: number; G: number[] } {
  const L = new Float64Array(m * m); // lower Cholesky factor of A = I + αZZᵀ
  for (let j = 0; j < m; j++) {
    for (let i = j; i < m; i++) {
      let a = i === j ? 1 : 0;
      for (let t = 0; t < n; t++) a += alpha * (z[i * n + t] as number) * (z[j * n + t] as number);
      for (let k = 0; k < j; k++) a -= (L[i * m + k] as number) * (L[j * m + k] as number);
      L[i * m + j] = i === j ? Math.sqrt(a) : a / (L[j * m + j] as number);
    }
  }
  let R = 0;
  for (let j = 0; j < m; j++) R += Math.log(L[j * m + j] as number);
  const G = new Array<number>(m * n).fill(0);
  for (let t = 0; t < n; t++) {
    const y = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      let v = z[i * n + t] as number;
      for (let k = 0; k < i; k++) v -= (L[i * m + k] as number) * (y[k] as number);
      y[i] = v / (L[i * m + i] as number);
    }
    for (let i = m - 1; i >= 0; i--) {
      let v = y[i] as number;
      for (let k = i + 1; k < m; k++) v -= (L[k * m + i] as number) * (y[k] as number);
      y[i] = v / (L[i * m + i] as number);
    }
    for (let i = 0; i < m; i++) G[i * n + t] = alpha * (y[i] as number);
  }
  return { R, G };
}

/** References for X (B, N, H·p) per head (H > 0) or Z (B, N, p) per item (H = 0): R per item and
 * the gradient dR_item · α(I + αZZᵀ)⁻¹Z in X's layout. */
function ref(x: number[], B: number, N: number, H: number, p: number, alpha: number[], dR: number[]) {
  const heads = H > 0;
  const Hh = heads ? H : 1;
  const R: number[] = [];
  const G = new Array<number>(x.length).fill(0);
  const at = (b: number, i: number, h: number, j: number) => ((b * N + i) * Hh + h) * p + j;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hh; h++) {
      const item = b * Hh + h;
      const z: number[] = [];
      for (let i = 0; i < N; i++) for (let j = 0; j < p; j++) z.push(x[at(b, i, h, j)] as number);
      const r = rateRef(z, N, p, alpha[item] as number);
      R.push(r.R);
      for (let i = 0; i < N; i++)
        for (let j = 0; j < p; j++) G[at(b, i, h, j)] = (dR[item] as number) * (r.G[i * p + j] as number);
    }
  }
  return { R, G };
}

const maxAbs = (v: number[]) => v.reduce((a, b) => Math.max(a, Math.abs(b)), 0);

/** R is an f64 result stored as f32: within an f32 rounding (plus f64 noise) of the reference. */
function expectRate(what: string, out: number[], r: number[]): void {
  expect(out.length).toBe(r.length);
  const bad = out.flatMap((o, i) => {
    const v = r[i] as number;
    return Math.abs(o - v) <= 2 ** -23 * Math.abs(v) + 1e-9 ? [] : [`[${i}] got ${o}, f64 reference ${v}`];
  });
  expect(bad.slice(0, 5), `${what}: ${bad.length} values off`).toEqual([]);
}

/** An f32 gradient computed in f64: within an f32 rounding of each element, plus f64 noise. */
function expectGradF32(what: string, out: number[], r: number[]): void {
  expect(out.length).toBe(r.length);
  const floor = 1e-9 * maxAbs(r);
  const bad = out.flatMap((o, i) => {
    const v = r[i] as number;
    return Math.abs(o - v) <= 2 ** -23 * Math.abs(v) + floor ? [] : [`[${i}] got ${o}, f64 reference ${v}`];
  });
  expect(bad.slice(0, 5), `${what}: ${bad.length} values off`).toEqual([]);
}

function randF32(shape: number[], seed: number, lo = -2, hi = 2): { t: C.Tensor; v: number[] } {
  const t = C.uniform(shape, lo, hi, { seed }).to('cuda');
  return { t, v: Array.from(t.dataSync() as Float32Array) };
}

/** Per-item α values (f32-exact) and upstream gradients. */
function itemValues(n: number, seed: number) {
  const alpha = Array.from(C.uniform([n], 0.2, 1.5, { seed }).dataSync() as Float32Array);
  const dR = Array.from(C.uniform([n], -1, 1, { seed: seed + 1 }).dataSync() as Float32Array);
  return { alpha, dR };
}

function codeOf(f: () => unknown): { code: unknown; message: string } {
  try {
    f();
  } catch (e) {
    return { code: (e as { code?: unknown }).code, message: String((e as Error).message) };
  }
  return { code: null, message: 'no error' };
}

// [B, N, H, p]: N > p, N < p (the other Gram side), p > 32 and not a multiple of 32, H = 1
const HEADS: [number, number, number, number][] = [
  [2, 7, 3, 5],
  [2, 4, 2, 9],
  [1, 6, 2, 37],
  [1, 40, 1, 35],
];

describe.skipIf(cudaMissing)('coding rate on cuda: per head and bf16, vs f64 references', () => {
  test('logdetGram on bf16 Z: R f32, gradient bf16 (m < n, m > n; α a number and an f32 tensor)', () => {
    C.tidy(() => {
      for (const [B, m, n, seed] of [
        [3, 6, 10, 11],
        [2, 12, 5, 12],
      ] as const) {
        const z = randBf16([B, m, n], seed, -1.5, 1.5);
        const { alpha, dR } = itemValues(B, seed + 100);
        for (const tensorAlpha of [false, true]) {
          z.t.grad = null;
          z.t.requiresGrad_();
          const a = tensorAlpha ? C.tensor(alpha, { dtype: 'f32' }).to('cuda') : (alpha[0] as number);
          const al = tensorAlpha ? alpha : alpha.map(() => alpha[0] as number);
          const R = C.logdetGram(z.t, a);
          expect(R.dtype).toBe('f32');
          expect(R.shape).toEqual([B]);
          const r = ref(z.v, B, m, 0, n, al, dR);
          expectRate(`R (${m}x${n}, tensor α ${tensorAlpha})`, Array.from(R.dataSync() as Float32Array), r.R);
          R.backward(C.tensor(dR, { dtype: 'f32' }).to('cuda'));
          const g = z.t.grad as C.Tensor;
          expect(g.dtype).toBe('bf16');
          expectClose(`dZ (${m}x${n})`, values(g), r.G, 1e-9 * maxAbs(r.G));
        }
      }
    });
  });

  for (const dtype of ['f32', 'bf16'] as const) {
    test(`logdetGramHeads on ${dtype} X (B, N, H·p): fused per-head kernels, R and gradient vs f64`, () => {
      C.tidy(() => {
        let seed = dtype === 'f32' ? 40 : 70;
        for (const [B, N, H, p] of HEADS) {
          seed += 1;
          const x = dtype === 'f32' ? randF32([B, N, H * p], seed) : randBf16([B, N, H * p], seed);
          x.t.requiresGrad_();
          const { alpha, dR } = itemValues(B * H, seed + 100);
          const R = C.logdetGramHeads(x.t, C.tensor(alpha, { dtype: 'f32', shape: [B, H] }).to('cuda'), H);
          expect(R.dtype).toBe('f32');
          expect(R.shape).toEqual([B, H]);
          const r = ref(x.v, B, N, H, p, alpha, dR);
          const shape = `B=${B} N=${N} H=${H} p=${p}`;
          expectRate(`R (${shape})`, Array.from(R.dataSync() as Float32Array), r.R);
          R.backward(C.tensor(dR, { dtype: 'f32', shape: [B, H] }).to('cuda'));
          const g = x.t.grad as C.Tensor;
          expect(g.dtype).toBe(dtype);
          expect(g.shape).toEqual([B, N, H * p]);
          if (dtype === 'f32') expectGradF32(`dX (${shape})`, Array.from(g.dataSync() as Float32Array), r.G);
          else expectClose(`dX (${shape})`, values(g), r.G, 1e-9 * maxAbs(r.G));
        }
      });
    });
  }

  test('errors: a NaN in one head names it as the CPU does; bf16 Inf; dR NaN; α must be f32 for bf16', () => {
    C.tidy(() => {
      const [B, N, H, p] = [2, 5, 3, 4];
      const host = new Float32Array(B * N * H * p).map((_, i) => Math.sin(i));
      host[((1 * N + 2) * H + 0) * p + 3] = Number.NaN; // (b=1, h=0), row 2
      host[((1 * N + 0) * H + 2) * p + 1] = Number.POSITIVE_INFINITY; // (b=1, h=2): later item, earlier in memory
      for (const dtype of ['f32', 'bf16'] as const) {
        const x32 = C.tensor(host, { shape: [B, N, H * p] }).to('cuda');
        const x = dtype === 'bf16' ? x32.to('bf16') : x32;
        const e = codeOf(() => C.logdetGramHeads(x, 0.5, H));
        expect(e.code, e.message).toBe('CRATE_NUMERICAL');
        expect(e.message).toMatch(/coding_rate: X\[b=1, h=0\] contains NaN/);
      }
      const zh = new Float32Array(3 * 4 * 6).map((_, i) => Math.cos(i));
      zh[1 * 24 + 7] = Number.POSITIVE_INFINITY;
      const z = C.tensor(zh, { shape: [3, 4, 6] })
        .to('cuda')
        .to('bf16');
      const e = codeOf(() => C.logdetGram(z, 0.5));
      expect(e.code, e.message).toBe('CRATE_NUMERICAL');
      expect(e.message).toMatch(/coding_rate: Z\[1\] contains Inf/);
      // a NaN upstream gradient: the backward reports the item
      const ok = randBf16([B, N, H * p], 5);
      ok.t.requiresGrad_();
      const R = C.logdetGramHeads(ok.t, 0.5, H);
      const g = new Float32Array(B * H).fill(1);
      g[1] = Number.NaN;
      const eb = codeOf(() => R.backward(C.tensor(g, { shape: [B, H] }).to('cuda')));
      expect(eb.code, eb.message).toBe('CRATE_NUMERICAL');
      expect(eb.message).toMatch(/coding_rate: dR\[b=0, h=1\] is NaN/);
      const a16 = C.full([3], 0.5, { dtype: 'bf16', device: 'cuda' });
      expect(() => C.logdetGram(z, a16)).toThrow(/alpha must be f32 for bf16 Z/);
    });
  });
});
