// bf16_tssa_cuda.test.ts: ToST's token-statistics attention (C.tssa, C.tssaCausal) on bf16 cuda
// tensors: W, Y and dW bf16; temp and denomBias f32 (the f32 master parameters), their gradients
// f32. Forward and every gradient (through backward()) against an f64 reference written here in
// plain loops (the maths of native/cpu/tssa.h; gradients by central differences of the f64
// forward, error ~1e-10 relative, far below a bf16 ulp), computed from the bf16-rounded inputs.
// The kernels compute in f64 and round once: a bf16 result is within half a bf16 ulp (2^-8
// relative) of the reference, an f32 one within a few f32 ulps. Also the clear errors of
// unsupported dtype mixes and the NaN reporting (as on the CPU). Small shapes: the emulator is slow.
// Needs CUDA: run on a GPU, or by cuda_emu.test.ts (the emulated kernels) and cuda_fake.test.ts
// (the host fake) with CRATE_CUDA_LIB; skipped with a message otherwise.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { expectClose, randBf16, values } from './helpers/bf16.js';

const cudaMissing = !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] bf16 TSSA cuda tests skipped: no usable CUDA (${C.info().cudaReason})`);

const EPS_NORM = 1e-12;
const EPS_PI = 1e-8;

function softmaxInPlace(x: number[]): void {
  const mx = Math.max(...x);
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.exp((x[i] as number) - mx);
    s += x[i] as number;
  }
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) / s;
}

/** Vision TSSA forward in f64: W (B, N, H·p), temp (H) -> Y (B, N, H·p). */
function tssaRef(W: number[], temp: number[], B: number, N: number, H: number, p: number): number[] {
  const D = H * p;
  const Y = new Array<number>(B * N * D).fill(0);
  for (let b = 0; b < B; b++) {
    const w = (n: number, c: number) => W[(b * N + n) * D + c] as number;
    const inv2: number[] = [];
    for (let c = 0; c < D; c++) {
      let q = 0;
      for (let n = 0; n < N; n++) q += w(n, c) ** 2;
      const nu = Math.max(Math.sqrt(q), EPS_NORM);
      inv2.push(1 / (nu * nu));
    }
    const Pi: number[][] = []; // [n][h]
    for (let n = 0; n < N; n++) {
      const lg: number[] = [];
      for (let h = 0; h < H; h++) {
        let s = 0;
        for (let c = h * p; c < (h + 1) * p; c++) s += w(n, c) ** 2 * (inv2[c] as number);
        lg.push((temp[h] as number) * s);
      }
      softmaxInPlace(lg);
      Pi.push(lg);
    }
    for (let h = 0; h < H; h++) {
      let sig = EPS_PI;
      for (let n = 0; n < N; n++) sig += (Pi[n] as number[])[h] as number;
      for (let c = h * p; c < (h + 1) * p; c++) {
        let m = 0;
        for (let n = 0; n < N; n++) m += ((Pi[n] as number[])[h] as number) * w(n, c) ** 2;
        m /= sig;
        for (let n = 0; n < N; n++) Y[(b * N + n) * D + c] = (-w(n, c) * ((Pi[n] as number[])[h] as number)) / (1 + m);
      }
    }
  }
  return Y;
}

/** Causal TSSA forward in f64: W (B, T, H·p), temp (H), bias (H, Tmax) -> Y (B, T, H·p). */
function tssaCausalRef(
  W: number[],
  temp: number[],
  bias: number[],
  B: number,
  T: number,
  H: number,
  p: number,
  Tmax: number,
): number[] {
  const D = H * p;
  const Y = new Array<number>(B * T * D).fill(0);
  for (let b = 0; b < B; b++) {
    const w = (t: number, c: number) => W[(b * T + t) * D + c] as number;
    const C2 = new Array<number>(D).fill(0); // running sum of W^2
    const Nn = new Array<number>(D).fill(0); // running sum of Pi W^2
    const P = new Array<number>(H).fill(0); // running sum of Pi
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < D; c++) C2[c] = (C2[c] as number) + w(t, c) ** 2;
      const lg: number[] = [];
      for (let h = 0; h < H; h++) {
        let u = p * (bias[h * Tmax + t] as number);
        for (let c = h * p; c < (h + 1) * p; c++) u += w(t, c) ** 2 / Math.max(C2[c] as number, EPS_NORM);
        lg.push((temp[h] as number) * u);
      }
      softmaxInPlace(lg);
      for (let h = 0; h < H; h++) {
        const pi = lg[h] as number;
        P[h] = (P[h] as number) + pi;
        for (let c = h * p; c < (h + 1) * p; c++) {
          Nn[c] = (Nn[c] as number) + pi * w(t, c) ** 2;
          const m = (Nn[c] as number) / ((P[h] as number) + EPS_PI);
          Y[(b * T + t) * D + c] = (-w(t, c) * pi) / (1 + m);
        }
      }
    }
  }
  return Y;
}

/** d(sum g·f(x))/dx by central differences of the f64 forward f, one element of x at a time. */
function gradFd(f: (x: number[]) => number[], x: number[], g: number[], only?: (i: number) => boolean): number[] {
  const L = (y: number[]) => y.reduce((s, v, i) => s + v * (g[i] as number), 0);
  return x.map((xi, i) => {
    if (only && !only(i)) return 0;
    const h = 1e-5 * Math.max(1, Math.abs(xi));
    const xp = x.slice();
    const xm = x.slice();
    xp[i] = xi + h;
    xm[i] = xi - h;
    return (L(f(xp)) - L(f(xm))) / (2 * h);
  });
}

/** f32 results of an f64 computation: |out - ref| <= 1e-5 |ref| + 1e-6 max|ref|. */
function expectCloseF32(what: string, out: number[], ref: number[]): void {
  expect(out.length).toBe(ref.length);
  const scale = Math.max(...ref.map(Math.abs));
  const bad = out.flatMap((o, i) => {
    const r = ref[i] as number;
    return Math.abs(o - r) <= 1e-5 * Math.abs(r) + 1e-6 * scale ? [] : [`[${i}] got ${o}, f64 reference ${r}`];
  });
  expect(bad.slice(0, 5), `${what}: ${bad.length} values off`).toEqual([]);
}

const maxAbs = (v: number[]) => Math.max(...v.map(Math.abs));
const f32Cuda = (shape: number[], lo: number, hi: number, seed: number) =>
  C.uniform(shape, lo, hi, { seed }).to('cuda');
const f32Values = (t: C.Tensor) => {
  expect(t.dtype).toBe('f32');
  return Array.from(t.dataSync() as Float32Array);
};

describe.skipIf(cudaMissing)('bf16 TSSA on cuda vs an f64 reference', () => {
  test('tssa: Y and dW bf16, dtemp f32 (f32 temp)', () => {
    C.tidy(() => {
      const [B, N, H, p] = [2, 5, 2, 3];
      const W = randBf16([B, N, H * p], 201);
      const g = randBf16([B, N, H * p], 202);
      const temp = f32Cuda([H], 0.5, 2, 203);
      const tv = f32Values(temp);
      W.t.requiresGrad_();
      temp.requiresGrad_();
      const Y = C.tssa(W.t, temp, H);
      expect(Y.dtype).toBe('bf16');
      const yref = tssaRef(W.v, tv, B, N, H, p);
      expectClose('tssa Y', values(Y), yref, 1e-9 * maxAbs(yref));
      Y.backward(g.t);
      const dW = W.t.grad as C.Tensor;
      const dT = temp.grad as C.Tensor;
      expect(dW.dtype).toBe('bf16');
      expect(dT.dtype).toBe('f32');
      const dWref = gradFd((x) => tssaRef(x, tv, B, N, H, p), W.v, g.v);
      expectClose('tssa dW', values(dW), dWref, 1e-6 * maxAbs(dWref));
      const dTref = gradFd((x) => tssaRef(W.v, x, B, N, H, p), tv, g.v);
      expectCloseF32('tssa dtemp', f32Values(dT), dTref);
    });
  });

  test('tssaCausal: Y and dW bf16, dtemp and ddenomBias f32 (columns >= T zero)', () => {
    C.tidy(() => {
      const [B, T, H, p, Tmax] = [2, 6, 2, 3, 8];
      const W = randBf16([B, T, H * p], 211);
      const g = randBf16([B, T, H * p], 212);
      const temp = f32Cuda([H], 0.5, 2, 213);
      const bias = f32Cuda([H, Tmax], -0.5, 0.5, 214);
      const tv = f32Values(temp);
      const bv = f32Values(bias);
      for (const t of [W.t, temp, bias]) t.requiresGrad_();
      const Y = C.tssaCausal(W.t, temp, bias, H);
      expect(Y.dtype).toBe('bf16');
      const yref = tssaCausalRef(W.v, tv, bv, B, T, H, p, Tmax);
      expectClose('tssaCausal Y', values(Y), yref, 1e-9 * maxAbs(yref));
      Y.backward(g.t);
      const [dW, dT, dD] = [W.t.grad, temp.grad, bias.grad] as C.Tensor[];
      expect((dW as C.Tensor).dtype).toBe('bf16');
      expect((dT as C.Tensor).dtype).toBe('f32');
      expect((dD as C.Tensor).dtype).toBe('f32');
      const dWref = gradFd((x) => tssaCausalRef(x, tv, bv, B, T, H, p, Tmax), W.v, g.v);
      expectClose('tssaCausal dW', values(dW as C.Tensor), dWref, 1e-6 * maxAbs(dWref));
      const dTref = gradFd((x) => tssaCausalRef(W.v, x, bv, B, T, H, p, Tmax), tv, g.v);
      expectCloseF32('tssaCausal dtemp', f32Values(dT as C.Tensor), dTref);
      const dDref = gradFd(
        (x) => tssaCausalRef(W.v, tv, x, B, T, H, p, Tmax),
        bv,
        g.v,
        (i) => i % Tmax < T,
      );
      const dDv = f32Values(dD as C.Tensor);
      expectCloseF32('tssaCausal ddenomBias', dDv, dDref);
      expect(dDv.filter((_, i) => i % Tmax >= T)).toEqual(new Array(H * (Tmax - T)).fill(0));
    });
  });

  test('dtype mixes that are not supported fail naming the argument', () => {
    C.tidy(() => {
      const [B, N, H, p] = [1, 4, 2, 2];
      const W = randBf16([B, N, H * p], 221).t;
      const Wf = W.to('f32');
      const temp = f32Cuda([H], 0.5, 2, 222);
      const tempBf = temp.to('bf16');
      const bias = f32Cuda([H, N], -0.5, 0.5, 223);
      expect(() => C.tssa(W, tempBf, H)).toThrow(/tssa: 'temp' is bf16 but must be f32 when 'W' is bf16/);
      expect(() => C.tssa(Wf, tempBf, H)).toThrow(/tssa: 'W' is f32 but 'temp' is bf16/);
      expect(() => C.tssaCausal(W, tempBf, bias, H)).toThrow(/tssaCausal: 'temp' is bf16 but must be f32/);
      expect(() => C.tssaCausal(W, temp, bias.to('bf16'), H)).toThrow(
        /tssaCausal: 'denomBias' is bf16 but must be f32 when 'W' is bf16/,
      );
      expect(() => C.tssaCausal(Wf, temp, bias.to('bf16'), H)).toThrow(
        /tssaCausal: 'W' is f32 but 'denomBias' is bf16/,
      );
    });
  });

  test('NaN in bf16 W / f32 temp / f32 denomBias is reported as on the CPU', () => {
    C.tidy(() => {
      const [B, N, H, p] = [2, 4, 2, 3];
      const D = H * p;
      const raw = Float32Array.from({ length: B * N * D }, (_, i) => Math.sin(i + 1));
      raw[(1 * N + 2) * D + 4] = Number.NaN;
      const W = C.tensor(raw, { shape: [B, N, D], device: 'cuda' }).to('bf16');
      const temp = f32Cuda([H], 0.5, 2, 231);
      const bias = f32Cuda([H, N], -0.5, 0.5, 232);
      const numerical = (fn: () => unknown, re: RegExp) => {
        let err: unknown = null;
        try {
          fn();
        } catch (e) {
          err = e;
        }
        expect(err, `expected ${re}`).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(re);
        expect((err as { code?: string }).code).toBe('CRATE_NUMERICAL');
      };
      numerical(() => C.tssa(W, temp, H), /W\[b=1, n=2, c=4\] is NaN/);
      numerical(() => C.tssaCausal(W, temp, bias, H), /W\[b=1, t=2, c=4\] is NaN/);
      const tn = C.tensor(new Float32Array([1, Number.NaN]), { device: 'cuda' });
      const Wok = randBf16([B, N, D], 233).t;
      numerical(() => C.tssa(Wok, tn, H), /temp\[1\] is NaN/);
      const bn = C.tensor(
        Float32Array.from({ length: H * N }, (_, i) => (i === N + 3 ? Number.POSITIVE_INFINITY : 0)),
        {
          shape: [H, N],
          device: 'cuda',
        },
      );
      numerical(() => C.tssaCausal(Wok, temp, bn, H), /denom_bias\[1, 3\] is Inf/);
    });
  });
});
