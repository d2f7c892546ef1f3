// bf16_cuda.test.ts: bf16 storage for the core ops on 'cuda' (unary + backward, binary,
// comparisons, where, fill, reductions, strided copies): each result against an independent f64
// reference computed on the CPU from the bf16 inputs. The kernels load bf16 as f32, compute as
// the f32 kernels do and round once to bf16 on store, so a result may differ from the f64 value
// by half a bf16 ulp (<= 2^-8 relative) plus f32 noise; copies and selections move the bits
// unchanged (compared exactly). Gradients of a few ops through backward(), and the clear errors of
// ops without bf16 kernels (and of mixed bf16/f32 operands). Row ops (softmax, logSoftmax,
// layerNorm, crossEntropy) and the index ops (gather, indexAdd: embedding) on bf16: statistics
// (mean, rstd, lse) and the cross-entropy loss are f32, outputs and gradients bf16.
// Needs CUDA: run on a GPU, or by cuda_emu.test.ts (the emulated kernels) and cuda_fake.test.ts
// (the host fake) with CRATE_CUDA_LIB; skipped with a message otherwise.
import { describe, expect, test } from 'vitest';
import * as C from '../ts/index.js';
import { bcast, expectClose, expectExact, randBf16, roundBf16, strides, unravel, values } from './helpers/bf16.js';
import { erf } from './helpers/ref.js';

const cudaMissing = !C.cudaAvailable();
if (cudaMissing) console.warn(`[crate] bf16 cuda tests skipped: no usable CUDA (${C.info().cudaReason})`);

const SHAPE = [5, 7, 9]; // 315 elements: odd sizes (no vector path, partial blocks)

// ------------------------------------------------------------------ ops
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const UNARY: [string, (x: C.Tensor) => C.Tensor, (x: number) => number, [number, number]][] = [
  ['neg', C.neg, (x) => -x, [-2, 2]],
  ['exp', C.exp, Math.exp, [-3, 3]],
  ['log', C.log, Math.log, [0.1, 4]],
  ['sqrt', C.sqrt, Math.sqrt, [0, 4]],
  ['rsqrt', C.rsqrt, (x) => 1 / Math.sqrt(x), [0.1, 4]],
  ['abs', C.abs, Math.abs, [-2, 2]],
  ['relu', C.relu, (x) => Math.max(x, 0), [-2, 2]],
  ['gelu', (x) => C.gelu(x), (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), [-3, 3]],
  [
    'gelu_tanh',
    (x) => C.gelu(x, { approximate: 'tanh' }),
    (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    [-3, 3],
  ],
  ['tanh', C.tanh, Math.tanh, [-3, 3]],
  ['sigmoid', C.sigmoid, sigmoid, [-4, 4]],
  ['square', C.square, (x) => x * x, [-2, 2]],
  ['sign', C.sign, Math.sign, [-2, 2]],
  ['sin', C.sin, Math.sin, [-3, 3]],
  ['cos', C.cos, Math.cos, [-3, 3]],
  ['pow(x, 2.5)', (x) => C.pow(x, 2.5), (x) => x ** 2.5, [0, 3]],
  ['clamp(x, -0.5, 0.75)', (x) => C.clamp(x, -0.5, 0.75), (x) => Math.min(Math.max(x, -0.5), 0.75), [-2, 2]],
  ['affine: mul(x, 3) + 0.25', (x) => C.affine(x, 3, 0.25), (x) => x * 3 + 0.25, [-2, 2]],
  ['div(x, 4) (scalar)', (x) => C.div(x, 4), (x) => x / 4, [-2, 2]],
];

const BINARY: [string, (a: C.Tensor, b: C.Tensor) => C.Tensor, (a: number, b: number) => number][] = [
  ['add', C.add, (a, b) => a + b],
  ['sub', C.sub, (a, b) => a - b],
  ['mul', C.mul, (a, b) => a * b],
  ['div', C.div, (a, b) => a / b],
  ['pow', C.pow, (a, b) => a ** b],
  ['maximum', C.maximum, Math.max],
  ['minimum', C.minimum, Math.min],
];
const COMPARE: [string, (a: C.Tensor, b: C.Tensor) => C.Tensor, (a: number, b: number) => boolean][] = [
  ['eq', C.eq, (a, b) => a === b],
  ['ne', C.ne, (a, b) => a !== b],
  ['lt', C.lt, (a, b) => a < b],
  ['le', C.le, (a, b) => a <= b],
  ['gt', C.gt, (a, b) => a > b],
  ['ge', C.ge, (a, b) => a >= b],
];

describe.skipIf(cudaMissing)('bf16 storage on cuda: results vs an f64 reference', () => {
  test('fill: zeros, ones, full (the value rounded once to bf16)', () => {
    C.tidy(() => {
      const opts = { dtype: 'bf16', device: 'cuda' } as const;
      expectExact('zeros', values(C.zeros([3, 4], opts)), new Array(12).fill(0));
      expectExact('ones', values(C.ones([5], opts)), new Array(5).fill(1));
      for (const v of [0.1, -1 / 3, 1e30, 3.0078125 /* a tie: rounds to even */, 1 + 2 ** -8 + 2 ** -30]) {
        expectExact(`full ${v}`, values(C.full([7], v, opts)), new Array(7).fill(roundBf16(v)));
      }
    });
  });

  for (const [name, fn, ref, [lo, hi]] of UNARY) {
    test(`unary ${name}`, () => {
      C.tidy(() => {
        const x = randBf16(SHAPE, 11, lo, hi);
        const y = fn(x.t);
        expect(y.dtype).toBe('bf16');
        expect(y.device).toBe('cuda');
        expectClose(name, values(y), x.v.map(ref));
      });
    });
  }

  for (const [name, fn, ref] of BINARY) {
    test(`binary ${name}: same shape and broadcast [5, 7, 9] with [7, 1]`, () => {
      C.tidy(() => {
        const positive = name === 'pow';
        const a = randBf16(SHAPE, 21, positive ? 0.1 : -2, 2);
        const b = randBf16(SHAPE, 22, -2, 2);
        const out = fn(a.t, b.t);
        expect(out.dtype).toBe('bf16');
        expectClose(
          `${name} same shape`,
          values(out),
          a.v.map((v, i) => ref(v, b.v[i] as number)),
        );
        const c = randBf16([7, 1], 23, positive ? -2 : 0.5, 2);
        const outB = fn(a.t, c.t);
        const refB = a.v.map((v, i) => ref(v, bcast(c.v, [7, 1], unravel(i, SHAPE))));
        expectClose(`${name} broadcast`, values(outB), refB);
      });
    });
  }

  test('comparisons (eq ne lt le gt ge) give exact 0/1 in bf16; where selects the bits unchanged', () => {
    C.tidy(() => {
      const a = randBf16(SHAPE, 31, -1, 1);
      const b0 = randBf16(SHAPE, 32, -1, 1);
      // some equal elements for eq/le/ge
      const b = C.where(C.gt(a.t, 0.5), a.t, b0.t);
      const bv = values(b);
      expectExact(
        'where',
        bv,
        a.v.map((v, i) => (v > 0.5 ? v : (b0.v[i] as number))),
      );
      for (const [name, fn, ref] of COMPARE) {
        const out = fn(a.t, b);
        expect(out.dtype).toBe('bf16');
        expectExact(
          name,
          values(out),
          a.v.map((v, i) => (ref(v, bv[i] as number) ? 1 : 0)),
        );
      }
      // broadcast where: cond [7, 1], a [5, 7, 9], b a scalar
      const cond = C.gt(randBf16([7, 1], 33).t, 0);
      const cv = values(cond);
      const w = C.where(cond, a.t, -0.375);
      expectExact(
        'where broadcast',
        values(w),
        a.v.map((v, i) => (bcast(cv, [7, 1], unravel(i, SHAPE)) !== 0 ? v : -0.375)),
      );
    });
  });

  test('reductions: sum / max / min / mean over axes, accumulated in f32, one rounding', () => {
    C.tidy(() => {
      const x = randBf16(SHAPE, 41);
      type Case = [string, number[], (a: number, b: number) => number, number, (t: C.Tensor, ax: number[]) => C.Tensor];
      const cases: Case[] = [];
      const sumAbs = x.v.reduce((s, v) => s + Math.abs(v), 0);
      for (const axes of [[2], [0], [1], [0, 2], [0, 1, 2]]) {
        cases.push(['sum', axes, (a, b) => a + b, 0, (t, ax) => C.sum(t, ax)]);
        cases.push(['max', axes, Math.max, Number.NEGATIVE_INFINITY, (t, ax) => C.max(t, ax)]);
        cases.push(['min', axes, Math.min, Number.POSITIVE_INFINITY, (t, ax) => C.min(t, ax)]);
      }
      for (const [name, axes, combine, init, run] of cases) {
        const kept = SHAPE.map((s, d) => (axes.includes(d) ? 1 : s));
        const ref = new Array<number>(kept.reduce((a, b) => a * b, 1)).fill(init);
        const kst = strides(kept);
        x.v.forEach((v, i) => {
          const idx = unravel(i, SHAPE);
          const k = idx.reduce((s, j, d) => s + (axes.includes(d) ? 0 : j * (kst[d] as number)), 0);
          ref[k] = combine(ref[k] as number, v);
        });
        const out = run(x.t, axes);
        expect(out.dtype).toBe('bf16');
        expectClose(`${name} over [${axes}]`, values(out), ref, 1e-6 * sumAbs);
      }
      const mean = C.mean(x.t, [1]);
      const refMean = new Array<number>(45).fill(0);
      x.v.forEach((v, i) => {
        const [p, , r] = unravel(i, SHAPE) as [number, number, number];
        refMean[p * 9 + r] = (refMean[p * 9 + r] as number) + v / 7;
      });
      // mean = a bf16 sum, then a bf16 affine: two roundings (|mean| < 2)
      expectClose('mean over [1]', values(mean), refMean, 2 ** -6);
    });
  });

  test('a long reduction (split into two passes with an f32 scratch) rounds once', () => {
    C.tidy(() => {
      const x = randBf16([2, 12_000], 43, 0, 1);
      const ref = [0, 1].map((r) => x.v.slice(r * 12_000, (r + 1) * 12_000).reduce((s, v) => s + v, 0));
      expectClose('sum of 12000', values(C.sum(x.t, [1])), ref, 1e-5 * 12_000);
      const xt = C.transpose(x.t); // [12000, 2]: reduce the leading axis
      expectClose('sum over axis 0 of [12000, 2]', values(C.sum(xt, [0])), ref, 1e-5 * 12_000);
    });
  });

  test('strided copies move the bits: permute, transpose, slice, concat, expand, stack, clone', () => {
    C.tidy(() => {
      const x = randBf16(SHAPE, 51);
      // the same op on the f32 CPU tensor of the bf16 values is exact: the reference
      const cpu = C.tensor(Float32Array.from(x.v), { shape: SHAPE });
      const check = (what: string, f: (t: C.Tensor) => C.Tensor) => {
        const out = f(x.t);
        expect(out.dtype).toBe('bf16');
        expect(out.shape).toEqual(f(cpu).shape);
        expectExact(what, values(out), Array.from(f(cpu).dataSync()));
      };
      check('permute [2, 0, 1]', (t) => C.permute(t, [2, 0, 1]));
      check('transpose', (t) => C.transpose(t, 0, 2));
      check('slice axis 1 [1:6:2]', (t) => C.slice(t, 1, 1, 6, 2));
      check('concat axis 2', (t) => C.concat([t, C.slice(t, 2, 3, 5)], 2));
      check('expand [4, 5, 7, 9]', (t) => C.expand(t, [4, ...SHAPE]));
      check('stack', (t) => C.stack([t, t], 1));
      check('clone', (t) => C.clone(t));
    });
  });
});

describe.skipIf(cudaMissing)('bf16 gradients on cuda through backward()', () => {
  test('mul (broadcast), exp, sum: gradients are bf16 and match the f64 reference', () => {
    C.tidy(() => {
      const a = randBf16([4, 6], 61);
      const b = randBf16([6], 62);
      const g = randBf16([4, 6], 63);
      a.t.requiresGrad_();
      b.t.requiresGrad_();
      // d/da sum(exp(a * b) * g) = g * exp(a b) * b ; d/db = Σ_rows g * exp(a b) * a
      const y = C.mul(a.t, b.t);
      const e = C.exp(y);
      const loss = C.sum(C.mul(e, g.t));
      loss.backward();
      const ga = a.t.grad as C.Tensor;
      const gb = b.t.grad as C.Tensor;
      expect(ga.dtype).toBe('bf16');
      expect(gb.dtype).toBe('bf16');
      // the chain runs in bf16: each step rounds once, so the reference rounds where the kernels do
      const yv = a.v.map((v, i) => roundBf16(v * (b.v[i % 6] as number)));
      const ev = yv.map((v) => roundBf16(Math.exp(v)));
      const de = g.v; // d loss / d e = g (sum's gradient: ones, expanded)
      const dy = de.map((v, i) => roundBf16(v * (ev[i] as number)));
      expectClose(
        'exp backward then mul backward (a)',
        values(ga),
        dy.map((v, i) => v * (b.v[i % 6] as number)),
      );
      const refB = new Array<number>(6).fill(0);
      dy.forEach((v, i) => {
        refB[i % 6] = (refB[i % 6] as number) + roundBf16(v * (a.v[i] as number));
      });
      expectClose('mul backward (b, summed over the broadcast rows)', values(gb), refB, 1e-6 * 24);
    });
  });

  test('unary backward of tanh, sigmoid, gelu, sqrt', () => {
    C.tidy(() => {
      const cases: [string, (t: C.Tensor) => C.Tensor, (x: number) => number, number][] = [
        ['tanh', C.tanh, (x) => 1 - Math.tanh(x) ** 2, -2],
        ['sigmoid', C.sigmoid, (x) => sigmoid(x) * (1 - sigmoid(x)), -2],
        [
          'gelu',
          (t) => C.gelu(t),
          (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
          -2,
        ],
        ['sqrt', C.sqrt, (x) => 0.5 / Math.sqrt(x), 0.25],
      ];
      for (const [name, f, dref, lo] of cases) {
        const x = randBf16([3, 11], 71, lo, 2);
        const seed = randBf16([3, 11], 72);
        x.t.requiresGrad_();
        f(x.t).backward(seed.t);
        const gx = x.t.grad as C.Tensor;
        expect(gx.dtype).toBe('bf16');
        // tanh / sigmoid / sqrt differentiate through their bf16 output y: allow its rounding
        expectClose(
          `${name} backward`,
          values(gx),
          x.v.map((v, i) => (seed.v[i] as number) * dref(v)),
          name === 'gelu' ? 1e-6 : 2 ** -7 * Math.abs(seed.v.reduce((m, s) => Math.max(m, Math.abs(s)), 0)),
        );
      }
    });
  });

  test('slice backward accumulates into a zeroed bf16 gradient (stridedCopy accumulate)', () => {
    C.tidy(() => {
      const x = randBf16([6, 5], 81);
      x.t.requiresGrad_();
      const s = C.add(C.slice(x.t, 0, 1, 4), C.slice(x.t, 0, 2, 5)); // rows 2, 3 get two gradients
      s.backward(C.full([3, 5], 0.5, { dtype: 'bf16', device: 'cuda' }));
      const ref = Array.from({ length: 30 }, (_, i) => {
        const r = Math.floor(i / 5);
        return (r >= 1 && r < 4 ? 0.5 : 0) + (r >= 2 && r < 5 ? 0.5 : 0);
      });
      expectExact('slice backward', values(x.t.grad as C.Tensor), ref);
    });
  });
});

// ------------------------------------------------------------------ row ops and index ops
/** f64 reference helpers on row-major (rows, cols) arrays. */
function rowsOf(v: number[], cols: number): number[][] {
  return Array.from({ length: v.length / cols }, (_, r) => v.slice(r * cols, (r + 1) * cols));
}
const sumOf = (a: number[]) => a.reduce((s, x) => s + x, 0);
const maxAbs = (a: number[]) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** Per-row tolerance: one bf16 rounding of each output (2^-8 relative, in expectClose) plus f32
 * noise of the row computation, which scales with the row's largest magnitude (the f32 sums and
 * the cancellation in x - mean or g - mean(g) lose ~2^-20 of it, not of the single element). */
function expectRowsClose(what: string, out: number[], ref: number[], cols: number, rel = 2 ** -18): void {
  rowsOf(ref, cols).forEach((r, i) => {
    expectClose(`${what} row ${i}`, out.slice(i * cols, (i + 1) * cols), r, rel * maxAbs(r) + 1e-7);
  });
}

function softmaxRef(x: number[], cols: number, log: boolean): number[] {
  return rowsOf(x, cols).flatMap((r) => {
    const m = Math.max(...r);
    const s = sumOf(r.map((v) => Math.exp(v - m)));
    return r.map((v) => (log ? v - m - Math.log(s) : Math.exp(v - m) / s));
  });
}

describe.skipIf(cudaMissing)('bf16 row ops and index ops on cuda', () => {
  test('softmax and logSoftmax: bf16 out, vs f64; backward dx bf16', () => {
    C.tidy(() => {
      const cols = 37;
      for (const log of [false, true]) {
        const x = randBf16([6, cols], log ? 102 : 101, -4, 4);
        const g = randBf16([6, cols], 103);
        x.t.requiresGrad_();
        const y = log ? C.logSoftmax(x.t) : C.softmax(x.t);
        expect(y.dtype).toBe('bf16');
        const ref = softmaxRef(x.v, cols, log);
        expectRowsClose(log ? 'logSoftmax' : 'softmax', values(y), ref, cols);
        y.backward(g.t);
        const gx = x.t.grad as C.Tensor;
        expect(gx.dtype).toBe('bf16');
        // the backward reads the saved bf16 y: reference from those rounded values
        const yv = values(y);
        const dref = rowsOf(yv, cols).flatMap((yr, r) => {
          const gr = g.v.slice(r * cols, (r + 1) * cols);
          if (log) {
            const s = sumOf(gr);
            return yr.map((v, j) => (gr[j] as number) - Math.exp(v) * s);
          }
          const s = sumOf(yr.map((v, j) => v * (gr[j] as number)));
          return yr.map((v, j) => v * ((gr[j] as number) - s));
        });
        expectRowsClose(`${log ? 'logSoftmax' : 'softmax'} backward`, values(gx), dref, cols);
      }
    });
  });

  test('layerNorm with weight and bias: y bf16 (f32 statistics), dx / dweight / dbias bf16 vs f64', () => {
    C.tidy(() => {
      const rows = 5;
      const cols = 24; // a multiple of 4: the f32 kernel would take the vector path, bf16 does not
      const x = randBf16([rows, cols], 111, -3, 3);
      const w = randBf16([cols], 112, 0.5, 1.5);
      const b = randBf16([cols], 113, -0.5, 0.5);
      const g = randBf16([rows, cols], 114);
      for (const t of [x.t, w.t, b.t]) t.requiresGrad_();
      const eps = 1e-5;
      const y = C.layerNorm(x.t, w.t, b.t, eps);
      expect(y.dtype).toBe('bf16');
      const stats = rowsOf(x.v, cols).map((r) => {
        const m = sumOf(r) / cols;
        const v = sumOf(r.map((e) => (e - m) ** 2)) / cols;
        return { m, rs: 1 / Math.sqrt(v + eps) };
      });
      const xhat = x.v.map((v, i) => {
        const st = stats[Math.floor(i / cols)] as { m: number; rs: number };
        return (v - st.m) * st.rs;
      });
      const yref = xhat.map((h, i) => h * (w.v[i % cols] as number) + (b.v[i % cols] as number));
      expectRowsClose('layerNorm y', values(y), yref, cols);
      y.backward(g.t);
      const [gx, gw, gb] = [x.t.grad, w.t.grad, b.t.grad] as C.Tensor[];
      for (const t of [gx, gw, gb]) expect((t as C.Tensor).dtype).toBe('bf16');
      const dxref = rowsOf(xhat, cols).flatMap((hr, r) => {
        const gw_ = hr.map((_, j) => (g.v[r * cols + j] as number) * (w.v[j] as number));
        const s1 = sumOf(gw_) / cols;
        const s2 = sumOf(gw_.map((v, j) => v * (hr[j] as number))) / cols;
        const rs = (stats[r] as { rs: number }).rs;
        return hr.map((h, j) => rs * ((gw_[j] as number) - s1 - h * s2));
      });
      expectRowsClose('layerNorm dx', values(gx as C.Tensor), dxref, cols);
      const dwref = Array.from({ length: cols }, (_, j) =>
        sumOf(Array.from({ length: rows }, (_, r) => (g.v[r * cols + j] as number) * (xhat[r * cols + j] as number))),
      );
      const dbref = Array.from({ length: cols }, (_, j) =>
        sumOf(Array.from({ length: rows }, (_, r) => g.v[r * cols + j] as number)),
      );
      expectClose('layerNorm dweight', values(gw as C.Tensor), dwref, 1e-5);
      expectClose('layerNorm dbias', values(gb as C.Tensor), dbref, 1e-5);
    });
  });

  test('crossEntropy: bf16 logits, f32 loss (mean, smoothing, ignoreIndex), bf16 gradient vs f64', () => {
    C.tidy(() => {
      const rows = 7;
      const classes = 13;
      const x = randBf16([rows, classes], 121, -3, 3);
      const targets = [0, 5, -100, 12, 3, 3, 7];
      const tgt = C.tensor(targets, { dtype: 'i32' }).to('cuda');
      x.t.requiresGrad_();
      const eps = 0.1;
      const loss = C.crossEntropy(x.t, tgt, { labelSmoothing: eps });
      expect(loss.dtype).toBe('f32');
      const counted = targets.filter((t) => t !== -100).length;
      const lse = rowsOf(x.v, classes).map((r) => {
        const m = Math.max(...r);
        return m + Math.log(sumOf(r.map((v) => Math.exp(v - m))));
      });
      const lref =
        sumOf(
          targets.map((t, r) => {
            if (t === -100) return 0;
            const row = x.v.slice(r * classes, (r + 1) * classes);
            const l = lse[r] as number;
            return (1 - eps) * (l - (row[t] as number)) + eps * (l - sumOf(row) / classes);
          }),
        ) / counted;
      const lv = loss.dataSync()[0] as number;
      expect(Math.abs(lv - lref), `loss ${lv} vs f64 ${lref}`).toBeLessThanOrEqual(1e-5 * Math.abs(lref) + 1e-6);
      const none = C.crossEntropy(x.t, tgt, { reduction: 'none' });
      expect(none.dtype).toBe('f32');
      loss.backward();
      const gx = x.t.grad as C.Tensor;
      expect(gx.dtype).toBe('bf16');
      const dref = x.v.map((v, i) => {
        const r = Math.floor(i / classes);
        const t = targets[r] as number;
        if (t === -100) return 0;
        const p = Math.exp(v - (lse[r] as number));
        return (p - eps / classes - (i % classes === t ? 1 - eps : 0)) / counted;
      });
      expectClose('crossEntropy dlogits', values(gx), dref, 1e-7);
    });
  });

  test('embedding (gather) copies the bf16 bits; its backward (indexAdd) sums repeats once-rounded', () => {
    C.tidy(() => {
      const vocab = 10;
      const dim = 8; // rows of 4-multiple length: the vector path of gather
      const w = randBf16([vocab, dim], 131);
      const ids = [3, 7, 3, 0, 9, 3, 7, 1];
      const idsT = C.tensor(ids, { dtype: 'i32' }).to('cuda').reshape([2, 4]);
      w.t.requiresGrad_();
      const e = C.embedding(w.t, idsT);
      expect(e.dtype).toBe('bf16');
      expect(e.shape).toEqual([2, 4, dim]);
      expectExact(
        'embedding rows',
        values(e),
        ids.flatMap((id) => w.v.slice(id * dim, (id + 1) * dim)),
      );
      const g = randBf16([2, 4, dim], 132);
      e.backward(g.t);
      const gw = w.t.grad as C.Tensor;
      expect(gw.dtype).toBe('bf16');
      const ref = new Array<number>(vocab * dim).fill(0);
      ids.forEach((id, k) => {
        for (let j = 0; j < dim; j++) ref[id * dim + j] = (ref[id * dim + j] as number) + (g.v[k * dim + j] as number);
      });
      expectClose('embedding backward', values(gw), ref, 1e-7);
      // odd row length (scalar gather path) through indexSelect on axis 1
      const x = randBf16([3, 5, 3], 133);
      const sel = C.indexSelect(x.t, 1, C.tensor([4, 0, 4], { dtype: 'i32' }).to('cuda'));
      const selRef: number[] = [];
      for (let o = 0; o < 3; o++)
        for (const k of [4, 0, 4]) selRef.push(...x.v.slice((o * 5 + k) * 3, (o * 5 + k + 1) * 3));
      expectExact('indexSelect axis 1', values(sel), selRef);
      expect(() => C.indexSelect(x.t, 1, C.tensor([5], { dtype: 'i32' }).to('cuda'))).toThrow(/index 5 .*out of range/);
    });
  });
});

describe.skipIf(cudaMissing)('bf16 on cuda: every op takes it; clear errors where a dtype does not fit', () => {
  test('the CRATE ops, matmul and random take bf16; bf16 TSSA parameters and SGD on bf16 are refused by name', () => {
    C.tidy(() => {
      const x = randBf16([2, 4, 8], 91).t;
      expect(C.mssa(x, { heads: 2 }).dtype).toBe('bf16'); // test/bf16_mssa_cuda.test.ts
      expect(C.matmul(x, C.transpose(x)).dtype).toBe('bf16'); // test/bf16_ista_cuda.test.ts
      expect(C.randn([3], { dtype: 'bf16', device: 'cuda' }).dtype).toBe('bf16');
      const temp32 = C.ones([2], { device: 'cuda' });
      expect(C.tssa(x, temp32, 2).dtype).toBe('bf16'); // test/bf16_tssa_cuda.test.ts
      expect(() => C.tssa(x, randBf16([2], 94).t, 2)).toThrow(/tssa: 'temp' is bf16 but must be f32 when 'W' is bf16/);
      const p = randBf16([3], 95).t;
      p.requiresGrad = true;
      expect(() => new C.optim.SGD([p], { lr: 0.1 })).toThrow(/param 0 is bf16 on cuda.*SGD has no bf16 update/);
    });
  });

  test('assertFinite finds a NaN / Inf in a bf16 tensor and reports its value', () => {
    C.tidy(() => {
      const a = randBf16([5, 7], 93).t;
      expect(() => C.assertFinite(a, 'finite')).not.toThrow();
      const bad = C.div(a, C.mul(a, C.zeros([5, 7], { device: 'cuda', dtype: 'bf16' }))); // x / 0 -> ±inf
      expect(() => C.assertFinite(bad, 'bad')).toThrow(
        /bad: non-finite value -?Infinity at flat index 0 of a \[5, 7\]/,
      );
    });
  });

  test('mixed bf16 / f32 operands are refused (no implicit promotion)', () => {
    C.tidy(() => {
      const a = randBf16([3], 92).t;
      const b = C.ones([3], { device: 'cuda' });
      expect(() => C.add(a, b)).toThrow(/add: 'a' is bf16 but 'b' is f32/);
      expect(() => C.concat([a, b])).toThrow(/concat: .*bf16.*f32/);
      expect(() => C.where(a, a, b)).toThrow(/where: .*bf16.*f32/);
    });
  });
});
