// vec_math.test.ts: the f32 vector math of native/cpu/vec_math.h behind exp, tanh, sigmoid, gelu,
// gelu(tanh), the gelu backwards and the f32 softmax / logSoftmax / crossEntropy rows, against f64
// references over a dense sweep of f32 inputs (every 0.001 in [-100, 100], every 1e-5 in [-2, 2],
// 8 values per binade from 2^-149 to 2^127, thousands of neighbours of each threshold: overflow at
// 88.72, underflow at -87.34 / -103.97, the polynomial switch points). Errors are in ulps of the
// f32 result (a subnormal's ulp is 2^-149): max |y - ref| / ulp(ref). The bounds asserted are the
// maxima measured over all 2^32 inputs (see CHECKS) with a small margin. Special
// values (NaN, ±inf, ±0, saturation) are checked exactly. The sweep runs again in a child process
// with CRATE_CPU_VECTOR=generic, the portable 16-byte build (it loads lib/: run `npx tsc` first).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { moduleJson } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'crate-vec-math-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// ---------------------------------------------------------------- f64 references
const SQ2PI = Math.sqrt(2 / Math.PI);
/** Phi(x) to ~1e-13 relative: the all-positive series for |x| <= 3, Laplace's continued fraction
 * for the Mills ratio beyond (checked against mpmath). */
function normalCdf(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const a = Math.abs(x);
  const pdf = Math.exp(-0.5 * a * a) / Math.sqrt(2 * Math.PI);
  let tail: number; // Phi(-a)
  if (a <= 3) {
    let term = a;
    let s = a;
    for (let k = 1; k < 200 && term > 1e-18 * s; k++) {
      term *= (a * a) / (2 * k + 1);
      s += term;
    }
    tail = 0.5 - pdf * s;
  } else {
    let f = a;
    for (let k = 300; k >= 1; k--) f = a + k / f;
    tail = pdf / f;
  }
  return x < 0 ? tail : 1 - tail;
}
const sigmoid64 = (x: number) => 1 / (1 + Math.exp(-x));
/** gelu(tanh) = 0.5 x (1 + tanh(u)) written as x sigmoid(2u): the same function, without the
 * cancellation of 1 + tanh(u) in f64 itself for x < -5. */
const geluTanh64 = (x: number) => x * sigmoid64(2 * SQ2PI * (x + 0.044715 * x ** 3));
const geluTanhGrad64 = (x: number) => {
  const s = sigmoid64(2 * SQ2PI * (x + 0.044715 * x ** 3));
  return s + x * s * (1 - s) * 2 * SQ2PI * (1 + 3 * 0.044715 * x * x);
};
const geluGrad64 = (x: number) => normalCdf(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);

// ---------------------------------------------------------------- the sweep
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** the f32 `k` ulps away from x (through the bit pattern) */
function step(x: number, k: number): number {
  f32[0] = x;
  u32[0] = (u32[0] as number) + k;
  return f32[0] as number;
}
function sweep(): Float32Array {
  const v: number[] = [];
  for (let i = -100000; i <= 100000; i++) v.push(i / 1000);
  for (let i = -200000; i <= 200000; i++) v.push(i / 100000);
  for (let e = -149; e <= 127; e++) for (let m = 0; m < 8; m++) v.push(2 ** e * (1 + m / 8), -(2 ** e) * (1 + m / 8));
  const thresholds = [88.72283, -87.33654, -103.97208, -88, 88, 89, -110, 0.625, -0.625, 2, -2, 16, -16, 44.36, -9.8];
  for (const c of thresholds) for (let k = -2000; k <= 2000; k++) v.push(step(c, k));
  v.push(0, -0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-40, -1e-40, 2 ** -149, -(2 ** -149), 2 ** -126, 3e38, -3e38);
  v.push(3.4028234663852886e38, -3.4028234663852886e38, Infinity, -Infinity, Number.NaN);
  return Float32Array.from(v);
}
const xs = sweep();

// ---------------------------------------------------------------- error in ulps
function ulp32(r: number): number {
  const a = Math.abs(r);
  if (a < 2 ** -126) return 2 ** -149;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return 2 ** (e - 23);
}
interface Report {
  maxUlp: number;
  at: number;
  bad: string[];
}
/** Max error of y against ref(x) in ulps of `scale(x)` (default: the reference itself); NaN and
 * overflow must match exactly. */
function measure(
  y: ArrayLike<number>,
  ref: (x: number) => number,
  scale: (x: number) => number = ref,
  only: (x: number) => boolean = () => true,
): Report {
  const r: Report = { maxUlp: 0, at: 0, bad: [] };
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i] as number;
    if (!only(x)) continue;
    const v = y[i] as number;
    const want = ref(x);
    if (Number.isNaN(want) || Math.abs(Math.fround(want)) === Number.POSITIVE_INFINITY) {
      if (!Object.is(v, Math.fround(want)) && r.bad.length < 5) r.bad.push(`x=${x}: ${v}, want ${Math.fround(want)}`);
      continue;
    }
    const e = Math.abs(v - want) / ulp32(scale(x));
    if (!(e <= r.maxUlp)) {
      r.maxUlp = Number.isNaN(e) ? Number.POSITIVE_INFINITY : e;
      r.at = x;
    }
  }
  return r;
}

// ---------------------------------------------------------------- the ops under test
interface Outputs {
  [name: string]: Float32Array;
}
const UNARY: [string, (t: C.Tensor) => C.Tensor][] = [
  ['exp', (t) => C.exp(t)],
  ['tanh', (t) => C.tanh(t)],
  ['sigmoid', (t) => C.sigmoid(t)],
  ['gelu', (t) => C.gelu(t)],
  ['gelu(tanh)', (t) => C.gelu(t, { approximate: 'tanh' })],
];
function runOps(x: Float32Array): Outputs {
  const out: Outputs = {};
  C.tidy(() => {
    const t = C.tensor(x);
    for (const [name, f] of UNARY) out[name] = f(t).dataSync() as Float32Array;
    for (const [name, f] of UNARY.slice(3)) {
      const tg = C.tensor(x);
      tg.requiresGrad = true;
      f(tg).backward(C.onesLike(tg));
      out[`${name} grad`] = (tg.grad as C.Tensor).dataSync() as Float32Array;
    }
  });
  return out;
}

// The bounds: the maxima over all 2^32 f32 inputs (native harness, AVX2 / portable build), with a
// small margin: exp 1.01 / 0.99, tanh 1.33, sigmoid 2.83, gelu(tanh) 3.48 / 3.37, gelu 4.67 ulp;
// the gradients, in ulps of the sum of their terms' magnitudes (they cross zero at x = -0.75):
// gelu 3.92 / 4.48, gelu(tanh) 5.40 / 5.96. (This sweep's maxima are a little lower.) The f32
// libm code before had tanh 2.08 ulp and lost gelu / gelu(tanh) entirely for x < -5 (1 + erf,
// 1 + tanh cancelling).
const CHECKS: { name: string; ref: (x: number) => number; scale?: (x: number) => number; bound: number }[] = [
  { name: 'exp', ref: Math.exp, bound: 1.25 },
  { name: 'tanh', ref: Math.tanh, bound: 1.5 },
  { name: 'sigmoid', ref: sigmoid64, bound: 3 },
  { name: 'gelu(tanh)', ref: geluTanh64, bound: 3.75 },
  { name: 'gelu', ref: (x) => x * normalCdf(x), bound: 5 },
  {
    name: 'gelu grad',
    ref: geluGrad64,
    scale: (x) => normalCdf(x) + Math.abs((x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI)),
    bound: 5,
  },
  {
    name: 'gelu(tanh) grad',
    ref: geluTanhGrad64,
    scale: (x) => {
      const s = sigmoid64(2 * SQ2PI * (x + 0.044715 * x ** 3));
      return s + Math.abs(x * s * (1 - s) * 2 * SQ2PI * (1 + 3 * 0.044715 * x * x));
    },
    bound: 6.5,
  },
];

function checkAll(out: Outputs, label: string) {
  for (const c of CHECKS) {
    // the gradients only where the f64 formulas themselves do not overflow (|x|^3 < 1e300)
    const only = c.name.endsWith('grad') ? (x: number) => !(Math.abs(x) > 1e30) : undefined;
    const r = measure(out[c.name] as Float32Array, c.ref, c.scale, only);
    if (process.env.CRATE_VEC_MATH_VERBOSE)
      console.log(`${label} ${c.name}: max ${r.maxUlp.toFixed(3)} ulp at x = ${r.at}`);
    expect(r.bad, `${label} ${c.name}: NaN / overflow mismatches`).toEqual([]);
    expect(r.maxUlp, `${label} ${c.name}: max ${r.maxUlp.toFixed(3)} ulp at x = ${r.at}`).toBeLessThanOrEqual(c.bound);
  }
}

describe(`f32 vector math (${C.info().cpuVector} build) vs f64 over ${xs.length} inputs`, () => {
  const out = runOps(xs);
  test('max errors in ulps', () => checkAll(out, C.info().cpuVector));

  test('special values', () => {
    const at = (name: string, x: number) =>
      (out[name] as Float32Array)[xs.findIndex((v) => Object.is(v, Math.fround(x)))] as number;
    const big = 3.4028234663852886e38;
    for (const name of [...UNARY.map(([n]) => n), 'gelu grad', 'gelu(tanh) grad']) {
      expect(Number.isNaN(at(name, Number.NaN)), `${name}(NaN)`).toBe(true);
    }
    // exp: the IEEE range, as Math.exp rounded to f32
    expect(at('exp', Number.NEGATIVE_INFINITY)).toBe(0);
    expect(at('exp', Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(at('exp', 89)).toBe(Number.POSITIVE_INFINITY);
    expect(at('exp', step(88.72283, 1))).toBe(Number.POSITIVE_INFINITY); // 88.72284: e^x > FLT_MAX
    expect(at('exp', 88.72283)).toBeLessThanOrEqual(big);
    expect(at('exp', 88.72283)).toBeGreaterThan(3.4e38);
    expect(at('exp', -100)).toBe(Math.fround(Math.exp(-100))); // subnormal, rounded right
    expect(at('exp', -110)).toBe(0);
    expect(Object.is(at('exp', -0), 1)).toBe(true);
    // tanh / sigmoid saturate, keep the sign of zero and tiny inputs exactly
    expect(at('tanh', Number.POSITIVE_INFINITY)).toBe(1);
    expect(at('tanh', Number.NEGATIVE_INFINITY)).toBe(-1);
    expect(at('tanh', 20)).toBe(1);
    expect(Object.is(at('tanh', -0), -0)).toBe(true);
    expect(at('tanh', 1e-30)).toBe(Math.fround(1e-30));
    expect(at('tanh', -(2 ** -149))).toBe(-(2 ** -149));
    expect(at('sigmoid', Number.POSITIVE_INFINITY)).toBe(1);
    expect(at('sigmoid', Number.NEGATIVE_INFINITY)).toBe(0);
    expect(at('sigmoid', -100)).toBe(Math.fround(Math.exp(-100)));
    expect(at('sigmoid', -0)).toBe(0.5);
    // gelu: x for large x, -0 for very negative x, NaN at -inf (-inf * 0, as the f64 formula)
    for (const g of ['gelu', 'gelu(tanh)']) {
      expect(at(g, Number.POSITIVE_INFINITY), g).toBe(Number.POSITIVE_INFINITY);
      expect(Number.isNaN(at(g, Number.NEGATIVE_INFINITY)), g).toBe(true);
      expect(at(g, 3e38), g).toBe(Math.fround(3e38));
      expect(Object.is(at(g, -3e38), -0), g).toBe(true);
      expect(Object.is(at(g, -0), -0), g).toBe(true);
      expect(at(g, 1e-30), g).toBe(Math.fround(0.5 * Math.fround(1e-30)));
    }
  });
});

// ---------------------------------------------------------------- softmax / logSoftmax / crossEntropy rows
function rowsData(): { x: Float32Array; rows: number; cols: number; target: Int32Array } {
  const rows = 48;
  const cols = 1003; // not a multiple of the vector width: the tails run too
  let s = 12345;
  const rnd = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const x = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = r % 3 === 0 ? 60 : r % 3 === 1 ? 10 : 1; // from flat to very peaked rows
    for (let c = 0; c < cols; c++) x[r * cols + c] = (rnd() * 2 - 1) * scale;
  }
  const target = Int32Array.from({ length: rows }, (_, r) => (r * 37) % cols);
  return { x, rows, cols, target };
}
interface RowRefs {
  softmax: Float64Array;
  logSoftmax: Float64Array;
  lse: Float64Array;
}
function rowRefs(x: Float32Array, rows: number, cols: number): RowRefs {
  const softmax = new Float64Array(rows * cols);
  const logSoftmax = new Float64Array(rows * cols);
  const lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mx = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, x[r * cols + c] as number);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp((x[r * cols + c] as number) - mx);
    lse[r] = mx + Math.log(sum);
    for (let c = 0; c < cols; c++) {
      softmax[r * cols + c] = Math.exp((x[r * cols + c] as number) - mx) / sum;
      logSoftmax[r * cols + c] = (x[r * cols + c] as number) - (lse[r] as number);
    }
  }
  return { softmax, logSoftmax, lse };
}

function runRows(d: ReturnType<typeof rowsData>): Outputs {
  const out: Outputs = {};
  const g = Float32Array.from({ length: d.rows * d.cols }, (_, i) => Math.sin(i));
  C.tidy(() => {
    const shape = [d.rows, d.cols];
    for (const [name, f] of [
      ['softmax', (t: C.Tensor) => C.softmax(t, -1)],
      ['logSoftmax', (t: C.Tensor) => C.logSoftmax(t)],
    ] as const) {
      const t = C.tensor(d.x, { shape });
      t.requiresGrad = true;
      const y = f(t);
      out[name] = y.dataSync() as Float32Array;
      y.backward(C.tensor(g, { shape }));
      out[`${name} grad`] = (t.grad as C.Tensor).dataSync() as Float32Array;
    }
    const t = C.tensor(d.x, { shape });
    t.requiresGrad = true;
    const l = C.crossEntropy(t, C.tensor(d.target, { dtype: 'i32' }), { reduction: 'none', labelSmoothing: 0.1 });
    out.crossEntropy = l.dataSync() as Float32Array;
    l.backward(C.onesLike(l));
    out['crossEntropy grad'] = (t.grad as C.Tensor).dataSync() as Float32Array;
  });
  return out;
}

/** The row ops against f64, element by element, in units of 2^-24 times the magnitude of the
 * terms (never below the smallest subnormal), with the rounding of x - max / x - lse in f32 (as
 * the code before computed them too) allowed for: softmax |y - p| <= k p 2^-24 (1 + |x - max|). */
function checkRows(out: Outputs, d: ReturnType<typeof rowsData>, label: string) {
  const { x, rows, cols, target } = d;
  const ref = rowRefs(x, rows, cols);
  const g = Float64Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i)));
  const eps = 2 ** -24;
  const unit = (magnitude: number) => Math.max(eps * magnitude, 2 ** -149);
  let softmaxWorst = 0;
  let logWorst = 0;
  let softGradWorst = 0;
  let logGradWorst = 0;
  let ceWorst = 0;
  let ceGradWorst = 0;
  for (let r = 0; r < rows; r++) {
    let mx = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, x[r * cols + c] as number);
    let sg = 0; // sum g y, sum g
    let sgy = 0;
    for (let c = 0; c < cols; c++) {
      sg += g[r * cols + c] as number;
      sgy += (g[r * cols + c] as number) * (ref.softmax[r * cols + c] as number);
    }
    const lse = ref.lse[r] as number;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const p = ref.softmax[i] as number;
      const xi = x[i] as number;
      // softmax: relative, allowing for the rounding of x - max
      softmaxWorst = Math.max(
        softmaxWorst,
        Math.abs((out.softmax?.[i] as number) - p) / unit(p * (1 + Math.abs(xi - mx))),
      );
      // logSoftmax = x - lse: in ulps of max(|x|, |lse|)
      logWorst = Math.max(
        logWorst,
        Math.abs((out.logSoftmax?.[i] as number) - (ref.logSoftmax[i] as number)) /
          ulp32(Math.max(Math.abs(xi), Math.abs(lse))),
      );
      // gradients in units of eps times the terms' magnitudes
      const gi = g[i] as number;
      softGradWorst = Math.max(
        softGradWorst,
        Math.abs((out['softmax grad']?.[i] as number) - p * (gi - sgy)) /
          unit(p * (Math.abs(gi) + Math.abs(sgy)) * (1 + Math.abs(xi - mx))),
      );
      logGradWorst = Math.max(
        logGradWorst,
        Math.abs((out['logSoftmax grad']?.[i] as number) - (gi - p * sg)) /
          unit(Math.abs(gi) + p * Math.abs(sg) * (2 + Math.max(Math.abs(xi), Math.abs(lse)))),
      );
      const off = 0.1 / cols;
      const want = p - off - (c === target[r] ? 0.9 : 0);
      ceGradWorst = Math.max(
        ceGradWorst,
        Math.abs((out['crossEntropy grad']?.[i] as number) - want) /
          unit(p * (2 + Math.abs(xi - lse)) + off + Math.abs(want)),
      );
    }
    let sumLogp = 0;
    for (let c = 0; c < cols; c++) sumLogp += ref.logSoftmax[r * cols + c] as number;
    const loss = -0.9 * (ref.logSoftmax[r * cols + (target[r] as number)] as number) - (0.1 / cols) * sumLogp;
    ceWorst = Math.max(ceWorst, Math.abs((out.crossEntropy?.[r] as number) - loss) / unit(Math.max(1, Math.abs(lse))));
  }
  const worst = { softmaxWorst, logWorst, softGradWorst, logGradWorst, ceWorst, ceGradWorst };
  if (process.env.CRATE_VEC_MATH_VERBOSE) console.log(label, JSON.stringify(worst));
  // measured (both builds): 2.08, 1.82, 5.35, 1.12, 0.91, 5.78
  expect(softmaxWorst, `${label} softmax`).toBeLessThanOrEqual(3);
  expect(logWorst, `${label} logSoftmax`).toBeLessThanOrEqual(2.5);
  expect(softGradWorst, `${label} softmax grad`).toBeLessThanOrEqual(7);
  expect(logGradWorst, `${label} logSoftmax grad`).toBeLessThanOrEqual(2);
  expect(ceWorst, `${label} crossEntropy`).toBeLessThanOrEqual(2);
  expect(ceGradWorst, `${label} crossEntropy grad`).toBeLessThanOrEqual(7);
}

describe('f32 softmax / logSoftmax / crossEntropy rows vs f64', () => {
  const d = rowsData();
  test('48 rows x 1003 classes, scales 1 to 60: elementwise errors', () =>
    checkRows(runRows(d), d, C.info().cpuVector));

  test('rows with -inf, all -inf, NaN and +inf entries: as the f64 path (rounded to f32)', () => {
    const rows = [
      [1, 2, Number.NEGATIVE_INFINITY, 3, 0, 0, 0, 0, -1],
      [...new Array(9).fill(Number.NEGATIVE_INFINITY)],
      [1, Number.NaN, 2, 3, 4, 5, 6, 7, 8],
      [1, Number.POSITIVE_INFINITY, 2, 3, 4, 5, 6, 7, 8],
      [-1e30, 0, 1e30, 5, 1, 2, 3, 4, 5],
      [-200, 0, -150, -1, -120, -90, -100, -110, -87.5],
    ];
    const classes = (v: ArrayLike<number>) =>
      Array.from(v, (x) => {
        const a = Math.fround(x);
        return Number.isNaN(a) ? 'NaN' : a === 0 ? 0 : Math.abs(a) === Number.POSITIVE_INFINITY ? a : 'finite';
      });
    const results = (dtype: 'f32' | 'f64') =>
      C.tidy(() => {
        const r: ArrayLike<number>[] = [];
        for (const f of [
          (t: C.Tensor) => C.softmax(t, -1),
          (t: C.Tensor) => C.logSoftmax(t),
          (t: C.Tensor) =>
            C.crossEntropy(t, C.tensor([0, 1, 2, 3, 4, 8], { dtype: 'i32' }), {
              reduction: 'none',
              labelSmoothing: 0.1,
            }),
        ]) {
          const t = C.tensor(rows, { dtype });
          t.requiresGrad = true;
          const y = f(t);
          r.push(y.dataSync());
          y.backward(C.arange(1, y.numel + 1, 1, { dtype }).reshape([...y.shape])); // not ones: softmax's would be ~0
          r.push((t.grad as C.Tensor).dataSync());
        }
        return r;
      });
    const a = results('f32');
    const b = results('f64');
    a.forEach((v, i) => {
      expect(classes(v), `result ${i}`).toEqual(classes(b[i] as ArrayLike<number>));
    });
    // the fully -inf row is NaN (0 * inf), a row with -inf entries gives them probability 0
    expect(Array.from((a[0] as Float32Array).slice(9, 18)).every(Number.isNaN)).toBe(true);
    expect((a[0] as Float32Array)[2]).toBe(0);
    expect((a[2] as Float32Array)[2]).toBe(Number.NEGATIVE_INFINITY);
    // subnormal probabilities are kept (e^-100 / sum), not flushed to 0
    expect((a[0] as Float32Array)[5 * 9 + 6]).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- the portable build
describe('the portable build (CRATE_CPU_VECTOR=generic, child process)', () => {
  test('same sweep, same bounds', () => {
    const d = rowsData();
    writeFileSync(join(work, 'xs.f32'), xs);
    writeFileSync(join(work, 'rows.f32'), d.x);
    const script = `
      import { readFileSync, writeFileSync } from 'node:fs';
      const C = await import(${JSON.stringify(join(root, 'lib', 'index.js'))});
      const w = ${JSON.stringify(work)};
      const f32 = (f) => { const b = readFileSync(w + '/' + f); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
      const xs = f32('xs.f32');
      const out = {};
      const unary = { exp: C.exp, tanh: C.tanh, sigmoid: C.sigmoid, gelu: (t) => C.gelu(t), 'gelu(tanh)': (t) => C.gelu(t, { approximate: 'tanh' }) };
      for (const [n, f] of Object.entries(unary)) out[n] = f(C.tensor(xs)).dataSync();
      for (const n of ['gelu', 'gelu(tanh)']) {
        const t = C.tensor(xs); t.requiresGrad = true; unary[n](t).backward(C.onesLike(t)); out[n + ' grad'] = t.grad.dataSync();
      }
      const shape = [${d.rows}, ${d.cols}];
      const x = f32('rows.f32');
      const g = C.tensor(Float32Array.from({ length: x.length }, (_, i) => Math.sin(i)), { shape });
      for (const [n, f] of [['softmax', (t) => C.softmax(t, -1)], ['logSoftmax', (t) => C.logSoftmax(t)]]) {
        const t = C.tensor(x, { shape }); t.requiresGrad = true; const y = f(t); out[n] = y.dataSync(); y.backward(g); out[n + ' grad'] = t.grad.dataSync();
      }
      const t = C.tensor(x, { shape }); t.requiresGrad = true;
      const l = C.crossEntropy(t, C.tensor(Int32Array.from(${JSON.stringify(Array.from(d.target))})), { reduction: 'none', labelSmoothing: 0.1 });
      out.crossEntropy = l.dataSync(); l.backward(C.onesLike(l)); out['crossEntropy grad'] = t.grad.dataSync();
      const names = Object.keys(out);
      names.forEach((n, i) => writeFileSync(w + '/out' + i + '.f32', out[n]));
      console.log(JSON.stringify({ isa: C.info().cpuVector, names }));
    `;
    const { isa, names } = moduleJson(script, { ...process.env, CRATE_CPU_VECTOR: 'generic' }) as {
      isa: string;
      names: string[];
    };
    expect(isa).toBe('generic');
    const out: Outputs = {};
    names.forEach((n, i) => {
      const b = readFileSync(join(work, `out${i}.f32`));
      out[n] = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    });
    checkAll(out, 'generic');
    checkRows(out, d, 'generic');
  });
});
