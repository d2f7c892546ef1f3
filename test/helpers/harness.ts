// harness.ts: builds registry inputs, compares against references, finite-difference gradients.

import { createRequire } from 'node:module';
import type { DType, Tensor } from '../../ts/index.js';
import * as C from '../../ts/index.js';
import type { Ref } from './ref.js';
import type { Case, Input, OpSpec } from './registry.js';

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const isInt = (i: Input): boolean => i.intMax !== undefined || (i.values !== undefined && i.grad !== true);

export function makeData(c: Case, seed = 1234): Ref[] {
  const rnd = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  return c.inputs.map((inp) => {
    const n = inp.shape.reduce((a, b) => a * b, 1);
    const d = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      if (inp.values) d[k] = inp.values[k] as number;
      else if (inp.intMax !== undefined) d[k] = Math.floor(rnd() * inp.intMax);
      else if (inp.gen === 'pos') d[k] = 0.5 + 1.5 * rnd();
      else if (inp.gen === 'unit') d[k] = rnd();
      else if (inp.gen === 'away0') {
        const v = normal();
        d[k] = Math.sign(v || 1) * (0.15 + Math.abs(v));
      } else d[k] = normal();
    }
    return { data: d, shape: inp.shape };
  });
}

export function toTensors(
  c: Case,
  data: Ref[],
  dtype: DType,
  requiresGrad: boolean,
  device: 'cpu' | 'cuda' = 'cpu',
): Tensor[] {
  return c.inputs.map((inp, k) => {
    const r = data[k] as Ref;
    if (isInt(inp)) return C.tensor(Int32Array.from(r.data), { shape: r.shape, dtype: 'i32', device });
    const t = C.tensor(dtype === 'f64' ? r.data : Float32Array.from(r.data), { shape: r.shape, dtype, device });
    if (requiresGrad && inp.grad !== false) t.requiresGrad_(true);
    return t;
  });
}

/** max |a - b| / (1 + max |b|) */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (Number.isNaN(x) !== Number.isNaN(y)) return Number.POSITIVE_INFINITY;
    if (Number.isNaN(y)) continue;
    num = Math.max(num, Math.abs(x - y));
    den = Math.max(den, Math.abs(y));
  }
  return num / (1 + den);
}

/** Forward in f64 with grad and a fixed random weighting of the outputs; returns the loss. */
function weightedLoss(spec: OpSpec, c: Case, data: Ref[], w: Float64Array | null): number {
  return C.tidy(() =>
    C.noGrad(() => {
      const xs = toTensors(c, data, 'f64', false);
      const out = spec.run(xs, c.args);
      const d = out.dataSync();
      let s = 0;
      for (let i = 0; i < d.length; i++) s += (d[i] as number) * (w ? (w[i] as number) : 1);
      return s;
    }),
  );
}

export interface GradReport {
  maxErr: number;
  checked: number;
}

/** Analytic gradients (backward with seed W) vs central differences of Σ out·W, sampled. */
export function gradCheck(spec: OpSpec, c: Case, maxPerInput = 12): GradReport {
  const data = makeData(c);
  const rnd = mulberry32(99);
  let report: GradReport = { maxErr: 0, checked: 0 };
  C.tidy(() => {
    const xs = toTensors(c, data, 'f64', true);
    const out = spec.run(xs, c.args);
    const w = new Float64Array(out.numel);
    for (let i = 0; i < w.length; i++) w[i] = rnd() * 2 - 1;
    const seed = C.tensor(w, { shape: [...out.shape], dtype: 'f64' });
    out.backward(seed);
    let maxErr = 0;
    let checked = 0;
    c.inputs.forEach((inp, k) => {
      if (isInt(inp) || inp.grad === false) return;
      const x = xs[k] as Tensor;
      const ana = x.grad ? x.grad.dataSync() : new Float64Array(x.numel);
      const d = data[k] as Ref;
      const n = d.data.length;
      const idx =
        n <= maxPerInput ? [...Array(n).keys()] : Array.from({ length: maxPerInput }, () => Math.floor(rnd() * n));
      for (const i of idx) {
        const orig = d.data[i] as number;
        const h = 1e-6 * Math.max(1, Math.abs(orig));
        d.data[i] = orig + h;
        const lp = weightedLoss(spec, c, data, w);
        d.data[i] = orig - h;
        const lm = weightedLoss(spec, c, data, w);
        d.data[i] = orig;
        const num = (lp - lm) / (2 * h);
        const a = ana[i] as number;
        maxErr = Math.max(maxErr, Math.abs(a - num) / (1 + Math.abs(num)));
        checked++;
      }
      x.grad?.dispose();
      x.grad = null;
    });
    report = { maxErr, checked };
  });
  return report;
}

/** Whether a package can be imported here (optional dependencies such as sharp). */
export function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
