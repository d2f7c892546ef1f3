// bf16_mssa_cuda.test.ts: C.mssa on bf16 cuda tensors (the bf16 MSSA kernels: bf16 tensor-core tile
// products, f32 scores / softmax statistics / accumulation, probabilities and dS rounded to bf16
// before their products, as FlashAttention-2), forward and gradient against an f64 reference
// written as plain loops here, from the bf16 inputs; plain, causal and key-masked variants, shapes
// straddling the kernels' 64-row tiles. Tolerance, element-wise (u = 2^-8, the bf16 unit roundoff;
// s = 2^-10 slack for the f32-level errors), derived in test/cuda/cuda_vs_cpu.cc (mssa bf16):
//   O:  u |O| + (u + s) sum_j A_ij |P_jk|
//   dP: u |dP| + (u + s) (sum_i (|e1_ji| + |e2_ji|) |P_ik| + sum_i A_ij |dO_ik|
//                         + scale sum_i (A_ji Du_j + A_ij Du_i) |P_ik|)
// (the roundings of the probabilities, of E = e1 + e2, of the saved O that D = rowsum(dO o O) reads,
// and of each output). Also: the saved L is f32, mixed dtypes are refused naming the argument.
// Needs CUDA: run on a GPU, or by cuda_emu.test.ts (the emulated kernels) and cuda_fake.test.ts
// (the host fake) with CRATE_CUDA_LIB; skipped with a message otherwise.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { native } from '../ts/native.js';
import { randBf16, values } from './helpers/bf16.js';

const cudaMissing = !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] bf16 MSSA cuda tests skipped: no usable CUDA (${C.info().cudaReason})`);

const U = 2 ** -8;
const SLACK = 2 ** -10;

interface Ref {
  O: number[];
  tolO: number[];
  dP: number[];
  tolP: number[];
}

/** f64 MSSA forward and backward (upstream gradient G) with the tolerances of the header. */
function mssaRef(
  P: number[],
  G: number[],
  [B, N, H, p]: [number, number, number, number],
  causal: boolean,
  km: number[] | null,
): Ref {
  const HP = H * p;
  const scale = 1 / Math.sqrt(p);
  const at = (b: number, i: number, h: number, k: number) => (b * N + i) * HP + h * p + k;
  const n = B * N * HP;
  const O = new Array<number>(n).fill(0);
  const tolO = new Array<number>(n).fill(0);
  const dP = new Array<number>(n).fill(0);
  const tolP = new Array<number>(n).fill(0);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const dot = (X: number[], i: number, Y: number[], j: number) => {
        let s = 0;
        for (let k = 0; k < p; k++) s += (X[at(b, i, h, k)] as number) * (Y[at(b, j, h, k)] as number);
        return s;
      };
      const A: number[][] = [];
      for (let i = 0; i < N; i++) {
        const valid = (j: number) => (km === null || km[b * N + j] !== 0) && !(causal && j > i);
        const s = Array.from({ length: N }, (_, j) => (valid(j) ? scale * dot(P, i, P, j) : -Infinity));
        const m = Math.max(...s);
        const e = s.map((v) => (m === -Infinity || v === -Infinity ? 0 : Math.exp(v - m)));
        const l = e.reduce((x, y) => x + y, 0);
        A.push(e.map((v) => (l > 0 ? v / l : 0)));
      }
      for (let i = 0; i < N; i++)
        for (let k = 0; k < p; k++) {
          let o = 0;
          let w = 0;
          for (let j = 0; j < N; j++) {
            const a = (A[i] as number[])[j] as number;
            o += a * (P[at(b, j, h, k)] as number);
            w += a * Math.abs(P[at(b, j, h, k)] as number);
          }
          O[at(b, i, h, k)] = o;
          tolO[at(b, i, h, k)] = U * Math.abs(o) + (U + SLACK) * w;
        }
      // backward: dS = A o (dA - D), dP = scale (dS + dS^T) P + A^T dO (Q = K = V = P)
      const D: number[] = [];
      const Du: number[] = [];
      for (let i = 0; i < N; i++) {
        let d = 0;
        let da = 0;
        for (let k = 0; k < p; k++) {
          d += (G[at(b, i, h, k)] as number) * (O[at(b, i, h, k)] as number);
          da += Math.abs((G[at(b, i, h, k)] as number) * (O[at(b, i, h, k)] as number));
        }
        D.push(d);
        Du.push(da);
      }
      const dA = Array.from({ length: N }, (_, q) => Array.from({ length: N }, (_, k) => dot(G, q, P, k)));
      const a = (q: number, k: number) => (A[q] as number[])[k] as number;
      for (let j = 0; j < N; j++) {
        const cE: number[] = [];
        const cP: number[] = [];
        for (let i = 0; i < N; i++) {
          const e1 = scale * a(j, i) * (((dA[j] as number[])[i] as number) - (D[j] as number));
          const e2 = scale * a(i, j) * (((dA[i] as number[])[j] as number) - (D[i] as number));
          cE.push(e1 + e2);
          cP.push(Math.abs(e1) + Math.abs(e2) + scale * (a(j, i) * (Du[j] as number) + a(i, j) * (Du[i] as number)));
        }
        for (let k = 0; k < p; k++) {
          let g = 0;
          let mag = 0;
          for (let i = 0; i < N; i++) {
            const pk = P[at(b, i, h, k)] as number;
            const gk = G[at(b, i, h, k)] as number;
            g += (cE[i] as number) * pk + a(i, j) * gk;
            mag += (cP[i] as number) * Math.abs(pk) + a(i, j) * Math.abs(gk);
          }
          dP[at(b, j, h, k)] = g;
          tolP[at(b, j, h, k)] = U * Math.abs(g) + (U + SLACK) * mag;
        }
      }
    }
  return { O, tolO, dP, tolP };
}

function expectWithin(what: string, out: number[], ref: number[], tol: number[]): void {
  expect(out.length).toBe(ref.length);
  const bad = out.flatMap((o, i) =>
    Math.abs(o - (ref[i] as number)) <= (tol[i] as number)
      ? []
      : [`[${i}] got ${o}, f64 reference ${ref[i]}, tolerance ${tol[i]}`],
  );
  expect(bad.slice(0, 5), `${what}: ${bad.length} values off`).toEqual([]);
}

const CASES: { name: string; shape: [number, number, number, number]; causal: boolean; mask: boolean }[] = [
  { name: 'plain, p = 16', shape: [2, 9, 2, 16], causal: false, mask: false },
  { name: 'causal, p = 40 (padded to 48)', shape: [1, 13, 2, 40], causal: true, mask: false },
  { name: 'key mask (one batch fully masked), p = 24', shape: [2, 11, 1, 24], causal: false, mask: true },
  { name: 'causal + key mask, N = 70 (two 64-row tiles), p = 8', shape: [1, 70, 1, 8], causal: true, mask: true },
];

describe.skipIf(cudaMissing)('bf16 MSSA on cuda: forward and gradient vs an f64 reference', () => {
  for (const c of CASES) {
    test(c.name, () => {
      C.tidy(() => {
        const [B, N, H, p] = c.shape;
        const seed = 700 + N * 7 + p;
        const P = randBf16([B, N, H * p], seed, -1.5, 1.5);
        const G = randBf16([B, N, H * p], seed + 1);
        let km: number[] | null = null;
        let mask: C.Tensor | null = null;
        if (c.mask) {
          // batch 0: every third key masked (key 0 too: causal query 0 has no valid key);
          // batch 1 (if any): every key masked
          km = Array.from({ length: B * N }, (_, i) => (i >= N || i % 3 === 0 ? 0 : 1));
          mask = C.tensor(new Float32Array(km), { shape: [B, N] }).to('cuda');
        }
        P.t.requiresGrad_();
        const O = C.mssa(P.t, { heads: H, causal: c.causal, keyMask: mask });
        expect(O.dtype).toBe('bf16');
        expect(O.device).toBe('cuda');
        O.backward(G.t);
        const gP = P.t.grad as C.Tensor;
        expect(gP.dtype).toBe('bf16');
        const ref = mssaRef(P.v, G.v, c.shape, c.causal, km);
        expectWithin('O', values(O), ref.O, ref.tolO);
        expectWithin('dP', values(gP), ref.dP, ref.tolP);
        if (c.mask && B > 1) {
          // the fully masked batch: O = 0 and zero gradient exactly (tolerance 0 there)
          expect(
            values(O)
              .slice(N * H * p)
              .every((v) => v === 0),
          ).toBe(true);
          expect(
            values(gP)
              .slice(N * H * p)
              .every((v) => v === 0),
          ).toBe(true);
        }
      });
    });
  }

  test('the saved L is f32 (logsumexp, -inf for rows with no valid key); mixed dtypes are refused', () => {
    C.tidy(() => {
      const [B, N, H, p] = [1, 5, 1, 16];
      const P = randBf16([B, N, H * p], 811);
      const h = (t: C.Tensor) => t._h('mssa');
      const O = C.zeros([B, N, H * p], { dtype: 'bf16', device: 'cuda' });
      const L = C.zeros([B, H, N], { dtype: 'f32', device: 'cuda' });
      const mask = C.tensor(new Float32Array([0, 1, 1, 1, 1]), { shape: [1, 5] }).to('cuda');
      native.mssaForward(h(P.t), h(O), h(L), B, N, H, p, 0.25, true, h(mask));
      const Lv = Array.from(L.dataSync() as Float32Array);
      expect(Lv[0]).toBe(Number.NEGATIVE_INFINITY); // causal, key 0 masked: query 0 has no valid key
      // query 1 attends only to key 1: L = scale |P_1|^2
      const p1 = P.v.slice(p, 2 * p);
      expect(Lv[1]).toBeCloseTo(0.25 * p1.reduce((s, v) => s + v * v, 0), 4);
      const O32 = C.zeros([B, N, H * p], { dtype: 'f32', device: 'cuda' });
      const Lb = C.zeros([B, H, N], { dtype: 'bf16', device: 'cuda' });
      expect(() => native.mssaForward(h(P.t), h(O32), h(L), B, N, H, p, 0.25, false, null)).toThrow(
        /mssa: argument 'O' has dtype f32, expected bf16/,
      );
      expect(() => native.mssaForward(h(P.t), h(O), h(Lb), B, N, H, p, 0.25, false, null)).toThrow(
        /mssa: argument 'L' has dtype bf16, expected f32/,
      );
      const G32 = C.zeros([B, N, H * p], { dtype: 'f32', device: 'cuda' });
      const dP = C.zeros([B, N, H * p], { dtype: 'bf16', device: 'cuda' });
      expect(() => native.mssaBackward(h(P.t), h(O), h(L), h(G32), h(dP), B, N, H, p, 0.25, false, null)).toThrow(
        /mssa backward: argument 'dO' has dtype f32, expected bf16/,
      );
    });
  });
});
