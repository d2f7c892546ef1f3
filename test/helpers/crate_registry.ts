// crate_registry.ts: registry entries for the fused CRATE operators. References: the composite
// path (the same math from primitive ops, run in f64; crate_composite.ts) and, for the log-det
// and causal TSSA, plain f64 loops. Shapes straddle the kernels' tiles: N = 1, 17, 64, 197, 257;
// p = 16, 20, 64; causal and key-masked cases.

import type { Tensor } from '../../ts/index.js';
import * as C from '../../ts/index.js';
import * as K from '../../ts/ops/crate_composite.js';
import type { Ref } from './ref.js';
import type { OpSpec } from './registry.js';

/** Runs a library function on f64 tensors made from refs and returns the result as a Ref. */
function viaLibrary(xs: Ref[], fn: (t: Tensor[]) => Tensor): Ref {
  return C.tidy(() =>
    C.noGrad(() => {
      const out = fn(xs.map((r) => C.tensor(r.data, { shape: r.shape, dtype: 'f64' })));
      return { data: Float64Array.from(out.dataSync()), shape: [...out.shape] };
    }),
  );
}

function logdetRef(z: Ref, alpha: number): Ref {
  const [m, n] = z.shape.slice(-2) as [number, number];
  const batch = z.data.length / (m * n);
  const out = new Float64Array(batch);
  for (let b = 0; b < batch; b++) {
    // A = I_m + α Z Zᵀ, Cholesky on the full m×m side (no Sylvester shortcut: independent check)
    const A = new Float64Array(m * m);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        let s = i === j ? 1 : 0;
        for (let k = 0; k < n; k++)
          s += alpha * (z.data[b * m * n + i * n + k] as number) * (z.data[b * m * n + j * n + k] as number);
        A[i * m + j] = s;
      }
    let ld = 0;
    for (let j = 0; j < m; j++) {
      let d = A[j * m + j] as number;
      for (let k = 0; k < j; k++) d -= (A[j * m + k] as number) ** 2;
      const l = Math.sqrt(d);
      A[j * m + j] = l;
      ld += 2 * Math.log(l);
      for (let i = j + 1; i < m; i++) {
        let s = A[i * m + j] as number;
        for (let k = 0; k < j; k++) s -= (A[i * m + k] as number) * (A[j * m + k] as number);
        A[i * m + j] = s / l;
      }
    }
    out[b] = 0.5 * ld;
  }
  return { data: out, shape: z.shape.slice(0, -2) };
}

/** logdetRef per head of X (B, N, H·p): the heads gathered to (B·H, N, p) in plain loops. */
function logdetHeadsRef(x: Ref, alpha: number, H: number): Ref {
  const [B, N, HP] = x.shape as [number, number, number];
  const p = HP / H;
  const z = new Float64Array(x.data.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < N; i++)
        for (let j = 0; j < p; j++) z[((b * H + h) * N + i) * p + j] = x.data[(b * N + i) * HP + h * p + j] as number;
  return { data: logdetRef({ data: z, shape: [B * H, N, p] }, alpha).data, shape: [B, H] };
}

function tssaCausalRef(w: Ref, temp: Ref, den: Ref, H: number): Ref {
  const [B, T, HP] = w.shape as [number, number, number];
  const p = HP / H;
  const Tmax = den.shape[1] as number;
  const y = new Float64Array(w.data.length);
  const W = (b: number, t: number, h: number, i: number) => w.data[(b * T + t) * HP + h * p + i] as number;
  for (let b = 0; b < B; b++) {
    const Pi = new Float64Array(H * T);
    const csum = new Float64Array(HP);
    for (let t = 0; t < T; t++) {
      const logits = new Float64Array(H);
      for (let h = 0; h < H; h++) {
        let u = 0;
        for (let i = 0; i < p; i++) {
          csum[h * p + i] = (csum[h * p + i] as number) + W(b, t, h, i) ** 2;
          u += W(b, t, h, i) ** 2 / Math.max(csum[h * p + i] as number, 1e-12) + (den.data[h * Tmax + t] as number);
        }
        logits[h] = (temp.data[h] as number) * u;
      }
      const mx = Math.max(...logits);
      const e = Array.from(logits, (v) => Math.exp(v - mx));
      const s = e.reduce((a, c) => a + c, 0);
      for (let h = 0; h < H; h++) Pi[h * T + t] = (e[h] as number) / s;
    }
    for (let h = 0; h < H; h++) {
      const num = new Float64Array(p);
      let den2 = 0;
      for (let t = 0; t < T; t++) {
        const pi = Pi[h * T + t] as number;
        den2 += pi;
        for (let i = 0; i < p; i++) {
          num[i] = (num[i] as number) + W(b, t, h, i) ** 2 * pi;
          const m = (num[i] as number) / (den2 + 1e-8);
          y[(b * T + t) * HP + h * p + i] = (-W(b, t, h, i) * pi) / (1 + m);
        }
      }
    }
  }
  return { data: y, shape: [...w.shape] };
}

const mssaCase = (label: string, B: number, N: number, H: number, p: number, args: object) => ({
  label,
  inputs: [{ shape: [B, N, H * p] }],
  args: { heads: H, ...args },
});

export const CRATE_REGISTRY: OpSpec[] = [
  {
    name: 'mssa (fused)',
    // forward napkin FLOPs per head: QKᵀ 2N²p + PV 2N²p (Q = K = V = P)
    perf: { ...mssaCase('32x197 H=6 p=64', 32, 197, 6, 64, {}), flops: 32 * 6 * 4 * 197 * 197 * 64 },
    cases: [
      mssaCase('N=1 p=16', 2, 1, 2, 16, {}),
      mssaCase('N=17 p=20', 2, 17, 3, 20, {}),
      mssaCase('N=64 p=64', 1, 64, 2, 64, {}),
      mssaCase('N=197 p=16', 1, 197, 2, 16, {}),
      mssaCase('N=257 p=64', 1, 257, 1, 64, {}),
      mssaCase('causal N=17', 2, 17, 2, 16, { causal: true }),
      mssaCase('causal N=197', 1, 197, 1, 20, { causal: true }),
      mssaCase('scale 0.3', 1, 33, 2, 16, { scale: 0.3 }),
      {
        label: 'key mask N=17',
        inputs: [
          { shape: [2, 17, 32] },
          { shape: [2, 17], values: [...Array(34).keys()].map((i) => (i % 5 === 3 ? 0 : 1)), grad: false },
        ],
        args: { heads: 2 },
      },
    ],
    run: ([P, m], a) => C.mssa(P as Tensor, { ...a, keyMask: m ?? null }),
    ref: (xs, a) => viaLibrary(xs, ([P, m]) => K.mssaComposite(P as Tensor, { ...a, keyMask: m ?? null })),
    tol: { f64: 1e-10, f32: 1e-5 },
  },
  {
    name: 'ista (fused)',
    // the fused kernel's work (ista.h): K = I + η(W − WᵀW) (2d³), then one T×d×d GEMM (2·T·d²)
    perf: {
      label: '32x197x384',
      inputs: [{ shape: [32, 197, 384] }, { shape: [384, 384] }],
      args: [0.1, 0.1],
      flops: 2 * 32 * 197 * 384 * 384 + 2 * 384 ** 3,
    },
    cases: [
      { label: 'T=1 d=1', inputs: [{ shape: [1, 1] }, { shape: [1, 1] }], args: [0.1, 0.1] },
      { label: '2x17x33', inputs: [{ shape: [2, 17, 33] }, { shape: [33, 33] }], args: [0.1, 0.1] },
      { label: 'MAE λ=0.5, 65x64', inputs: [{ shape: [65, 64] }, { shape: [64, 64] }], args: [0.1, 0.5] },
      { label: '3x129 d=20', inputs: [{ shape: [3, 129, 20] }, { shape: [20, 20] }], args: [0.2, 0.05] },
    ],
    run: ([Y, W], [eta, lam]) => C.ista(Y as Tensor, W as Tensor, eta, lam),
    ref: (xs, [eta, lam]) => viaLibrary(xs, ([Y, W]) => K.istaComposite(Y as Tensor, W as Tensor, eta, lam)),
    tol: { f64: 1e-10, f32: 2e-5 },
  },
  {
    name: 'istaOvercomplete (fused)',
    // CRATE-α, 4x overcomplete: D, D1 (d, m); four T×d×m GEMMs (ista.h: Y D, A1 Dᵀ, (…) D, A2 D1ᵀ)
    perf: {
      label: '32x197x384 m=1536',
      inputs: [{ shape: [32, 197, 384] }, { shape: [384, 1536] }, { shape: [384, 1536] }],
      flops: 8 * 32 * 197 * 384 * 1536,
    },
    cases: [
      { label: 'd=8 m=32', inputs: [{ shape: [2, 9, 8] }, { shape: [8, 32] }, { shape: [8, 32] }] },
      { label: 'd=20 m=80', inputs: [{ shape: [33, 20] }, { shape: [20, 80] }, { shape: [20, 80] }] },
    ],
    run: ([Y, D, D1]) => C.istaOvercomplete(Y as Tensor, D as Tensor, D1 as Tensor, 0.1, 0.1),
    ref: (xs) =>
      viaLibrary(xs, ([Y, D, D1]) => K.istaOvercompleteComposite(Y as Tensor, D as Tensor, D1 as Tensor, 0.1, 0.1)),
    tol: { f64: 1e-10, f32: 2e-5 },
  },
  {
    name: 'istaTied (fused)',
    // four T×d×m GEMMs (ista.h: Y Wᵀ once, A0 W, (…) Wᵀ, A1 W)
    perf: {
      label: '8x1024x384 m=1536',
      inputs: [{ shape: [8, 1024, 384] }, { shape: [1536, 384] }],
      flops: 8 * 8 * 1024 * 384 * 1536,
    },
    cases: [
      { label: 'd=8 m=32', inputs: [{ shape: [2, 9, 8] }, { shape: [32, 8] }] },
      { label: 'd=16 m=64', inputs: [{ shape: [17, 16] }, { shape: [64, 16] }] },
    ],
    run: ([Y, W]) => C.istaTied(Y as Tensor, W as Tensor, 0.1, 0.1),
    ref: (xs) => viaLibrary(xs, ([Y, W]) => K.istaTiedComposite(Y as Tensor, W as Tensor, 0.1, 0.1)),
    tol: { f64: 1e-10, f32: 2e-5 },
  },
  {
    name: 'codingRate logdet (fused)',
    // per item: Gram 2k²·max(m, n) + Cholesky k³/3, k = min(m, n)
    perf: {
      label: '384x64x197',
      inputs: [{ shape: [384, 64, 197] }],
      args: 0.05,
      flops: 384 * (2 * 64 * 64 * 197 + 64 ** 3 / 3),
    },
    cases: [
      { label: 'm<n 3x5x9', inputs: [{ shape: [3, 5, 9] }], args: 0.7 },
      { label: 'm>n 2x17x4', inputs: [{ shape: [2, 17, 4] }], args: 2.0 },
      { label: '1x1', inputs: [{ shape: [1, 1] }], args: 1.0 },
      { label: 'CRATE head 2x64x20', inputs: [{ shape: [2, 64, 20] }], args: 0.05 },
      { label: 'batch dims 2x3x9x7', inputs: [{ shape: [2, 3, 9, 7] }], args: 0.3 },
    ],
    run: ([Z], a) => C.logdetGram(Z as Tensor, a),
    ref: ([Z], a) => logdetRef(Z as Ref, a),
    tol: { f64: 1e-10, f32: 1e-5 },
  },
  {
    name: 'codingRate logdet per head (fused)',
    perf: {
      label: '32x197x(6*64)',
      inputs: [{ shape: [32, 197, 384] }],
      args: { alpha: 0.05, heads: 6 },
      flops: 32 * 6 * (2 * 64 * 64 * 197 + 64 ** 3 / 3),
    },
    cases: [
      { label: 'N>p 2x9x(3*5)', inputs: [{ shape: [2, 9, 15] }], args: { alpha: 0.7, heads: 3 } },
      { label: 'N<p 2x4x(2*9)', inputs: [{ shape: [2, 4, 18] }], args: { alpha: 2.0, heads: 2 } },
      { label: 'p=37 1x6x(2*37)', inputs: [{ shape: [1, 6, 74] }], args: { alpha: 0.3, heads: 2 } },
    ],
    run: ([X], a) => C.logdetGramHeads(X as Tensor, a.alpha, a.heads),
    ref: ([X], a) => logdetHeadsRef(X as Ref, a.alpha, a.heads),
    tol: { f64: 1e-10, f32: 1e-5 },
  },
  {
    name: 'tssa (fused)',
    perf: { label: '32x197 H=6 p=64', inputs: [{ shape: [32, 197, 384] }, { shape: [6], gen: 'pos' }], args: 6 },
    cases: [
      { label: 'N=1 H=1 p=16', inputs: [{ shape: [1, 1, 16] }, { shape: [1], gen: 'pos' }], args: 1 },
      { label: 'N=17 H=3 p=20', inputs: [{ shape: [2, 17, 60] }, { shape: [3], gen: 'pos' }], args: 3 },
      { label: 'N=197 H=2 p=16', inputs: [{ shape: [1, 197, 32] }, { shape: [2], gen: 'randn' }], args: 2 },
    ],
    run: ([W, t], h) => C.tssa(W as Tensor, t as Tensor, h),
    ref: (xs, h) => viaLibrary(xs, ([W, t]) => K.tssaComposite(W as Tensor, t as Tensor, h)),
    tol: { f64: 1e-10, f32: 1e-5 },
  },
  {
    name: 'tssaCausal (fused)',
    perf: {
      label: '8x1024 H=6 p=64',
      inputs: [{ shape: [8, 1024, 384] }, { shape: [6], gen: 'pos' }, { shape: [6, 1024] }],
      args: 6,
    },
    cases: [
      { label: 'T=1 H=1', inputs: [{ shape: [1, 1, 16] }, { shape: [1], gen: 'pos' }, { shape: [1, 4] }], args: 1 },
      {
        label: 'T=17 H=3 p=20',
        inputs: [{ shape: [2, 17, 60] }, { shape: [3], gen: 'pos' }, { shape: [3, 20] }],
        args: 3,
      },
      {
        label: 'T=70 H=2 p=16 (chunks of 64)',
        inputs: [{ shape: [1, 70, 32] }, { shape: [2] }, { shape: [2, 70] }],
        args: 2,
      },
    ],
    run: ([W, t, d], h) => C.tssaCausal(W as Tensor, t as Tensor, d as Tensor, h),
    ref: ([W, t, d], h) => tssaCausalRef(W as Ref, t as Ref, d as Ref, h),
    tol: { f64: 1e-10, f32: 1e-5 },
  },
];
