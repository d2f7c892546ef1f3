// registry.ts: one entry per op: input makers, shapes that straddle tile and vector widths,
// an independent f64 reference (plain loops in ref.ts) and tolerances. ops.test.ts derives
// the forward checks (f64 and f32), finite-difference gradient checks and leak checks from it;
// bench/registry.mjs times every op on its `perf` case (a training-sized shape).

import type { Tensor } from '../../ts/index.js';
import * as C from '../../ts/index.js';
import type { Ref } from './ref.js';
import * as R from './ref.js';

export type Gen = 'randn' | 'pos' | 'away0' | 'unit';
export interface Input {
  shape: number[];
  gen?: Gen;
  /** integer input (i32): values drawn from [0, intMax) or given */
  intMax?: number;
  values?: number[];
  /** whether the gradient w.r.t. this input is checked (default: float inputs) */
  grad?: boolean;
}
export interface Case {
  label: string;
  inputs: Input[];
  // biome-ignore lint/suspicious/noExplicitAny: per-op arguments
  args?: any;
}
/** The shape an op is timed at by bench/registry.mjs (sized like a training step's). */
export interface PerfCase extends Case {
  /** napkin-math FLOPs of the forward; omitted for memory-bound ops (those report GB/s only) */
  flops?: number;
}
export interface OpSpec {
  name: string;
  cases: Case[];
  perf: PerfCase;
  // biome-ignore lint/suspicious/noExplicitAny: per-op arguments
  run: (x: Tensor[], args: any) => Tensor;
  // biome-ignore lint/suspicious/noExplicitAny: per-op arguments
  ref: (x: Ref[], args: any) => Ref;
  tol?: { f64?: number; f32?: number };
  gradTol?: number;
  /** no gradient check (comparisons, integer outputs) */
  noGrad?: boolean;
}

const S = (label: string, ...shapes: number[][]): Case => ({ label, inputs: shapes.map((shape) => ({ shape })) });
const withGen = (c: Case, gen: Gen): Case => ({ ...c, inputs: c.inputs.map((i) => ({ ...i, gen })) });

// shapes that straddle vector widths (8 floats in AVX2) and tiles
const ELEMENTWISE_SHAPES: Case[] = [
  S('scalar', []),
  S('1', [1]),
  S('7', [7]),
  S('9', [9]),
  S('33x31', [33, 31]),
  S('2x3x129', [2, 3, 129]),
];
const BROADCAST_PAIRS: Case[] = [
  S('same 7x9', [7, 9], [7, 9]),
  S('row 33x8 + 8', [33, 8], [8]),
  S('col 9x1 + 1x31', [9, 1], [1, 31]),
  S('3-d 2x1x127 + 5x1', [2, 1, 127], [5, 1]),
  S('scalar tensor', [4, 3], []),
];

function unarySpec(
  name: string,
  fn: (t: Tensor) => Tensor,
  f: (x: number) => number,
  gen: Gen = 'randn',
  tol?: OpSpec['tol'],
): OpSpec {
  return {
    name,
    cases: ELEMENTWISE_SHAPES.map((c) => withGen(c, gen)),
    perf: withGen(S('4096x1024', [4096, 1024]), gen),
    run: ([x]) => fn(x as Tensor),
    ref: ([x]) => R.map1(x as Ref, f),
    ...(tol ? { tol } : {}),
  };
}

function binarySpec(
  name: string,
  fn: (a: Tensor, b: Tensor) => Tensor,
  f: (a: number, b: number) => number,
  gen: [Gen, Gen] = ['randn', 'randn'],
  noGrad = false,
): OpSpec {
  const withGens = (c: Case): Case => ({ ...c, inputs: c.inputs.map((i, k) => ({ ...i, gen: gen[k] as Gen })) });
  return {
    name,
    cases: BROADCAST_PAIRS.map(withGens),
    perf: withGens(S('4096x1024 + 1024 (row broadcast)', [4096, 1024], [1024])),
    run: ([a, b]) => fn(a as Tensor, b as Tensor),
    ref: ([a, b]) => R.map2(a as Ref, b as Ref, f),
    noGrad,
  };
}

const SQ2PI = Math.sqrt(2 / Math.PI);
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);

export const REGISTRY: OpSpec[] = [
  // ---------------------------------------------------------------- elementwise
  binarySpec(
    'add',
    (a, b) => C.add(a, b),
    (a, b) => a + b,
  ),
  binarySpec(
    'sub',
    (a, b) => C.sub(a, b),
    (a, b) => a - b,
  ),
  binarySpec(
    'mul',
    (a, b) => C.mul(a, b),
    (a, b) => a * b,
  ),
  binarySpec(
    'div',
    (a, b) => C.div(a, b),
    (a, b) => a / b,
    ['randn', 'pos'],
  ),
  binarySpec(
    'pow',
    (a, b) => C.pow(a, b),
    (a, b) => a ** b,
    ['pos', 'randn'],
  ),
  binarySpec(
    'maximum',
    (a, b) => C.maximum(a, b),
    (a, b) => Math.max(a, b),
    ['away0', 'randn'],
  ),
  binarySpec(
    'minimum',
    (a, b) => C.minimum(a, b),
    (a, b) => Math.min(a, b),
    ['away0', 'randn'],
  ),
  binarySpec(
    'gt',
    (a, b) => C.gt(a, b),
    (a, b) => (a > b ? 1 : 0),
    ['randn', 'randn'],
    true,
  ),
  binarySpec(
    'le',
    (a, b) => C.le(a, b),
    (a, b) => (a <= b ? 1 : 0),
    ['randn', 'randn'],
    true,
  ),
  unarySpec('neg', C.neg, (x) => -x),
  unarySpec('exp', C.exp, Math.exp),
  unarySpec('log', C.log, Math.log, 'pos'),
  unarySpec('sqrt', C.sqrt, Math.sqrt, 'pos'),
  unarySpec('abs', C.abs, Math.abs, 'away0'),
  unarySpec('relu', C.relu, (x) => Math.max(x, 0), 'away0'),
  unarySpec('tanh', C.tanh, Math.tanh),
  unarySpec('sigmoid', C.sigmoid, (x) => 1 / (1 + Math.exp(-x))),
  unarySpec(
    'gelu',
    (x) => C.gelu(x),
    (x) => 0.5 * x * (1 + R.erf(x / Math.SQRT2)),
  ),
  unarySpec(
    'gelu(tanh)',
    (x) => C.gelu(x, { approximate: 'tanh' }),
    (x) => 0.5 * x * (1 + Math.tanh(SQ2PI * (x + 0.044715 * x ** 3))),
  ),
  unarySpec('square', C.square, (x) => x * x),
  unarySpec(
    'pow scalar 3',
    (x) => C.pow(x, 3),
    (x) => x ** 3,
  ),
  unarySpec('pow scalar 0.5', (x) => C.pow(x, 0.5), Math.sqrt, 'pos'),
  unarySpec(
    'clamp',
    (x) => C.clamp(x, -0.5, 0.7),
    (x) => Math.min(Math.max(x, -0.5), 0.7),
    'away0',
  ),
  unarySpec(
    'add scalar',
    (x) => C.add(x, 2.5),
    (x) => x + 2.5,
  ),
  unarySpec(
    'mul scalar',
    (x) => C.mul(x, -3),
    (x) => -3 * x,
  ),
  unarySpec(
    'div scalar',
    (x) => C.div(x, 4),
    (x) => x / 4,
  ),
  {
    name: 'where',
    perf: {
      label: '4096x1024',
      inputs: [{ shape: [4096, 1024], gen: 'randn', grad: false }, { shape: [4096, 1024] }, { shape: [4096, 1024] }],
    },
    cases: [
      { label: '7x9', inputs: [{ shape: [7, 9], gen: 'randn', grad: false }, { shape: [7, 9] }, { shape: [7, 9] }] },
      { label: 'broadcast', inputs: [{ shape: [33, 1], gen: 'randn', grad: false }, { shape: [31] }, { shape: [] }] },
    ],
    run: ([c, a, b]) => {
      const m = C.gt(c as Tensor, 0);
      const r = C.where(m, a as Tensor, b as Tensor);
      m.dispose();
      return r;
    },
    ref: ([c, a, b]) => R.map3(c as Ref, a as Ref, b as Ref, (cv, x, y) => (cv > 0 ? x : y)),
  },
  // ---------------------------------------------------------------- reductions
  ...(
    [
      ['sum', (t: Tensor, ax?: number[], k?: boolean) => C.sum(t, ax, k), sum],
      ['mean', (t: Tensor, ax?: number[], k?: boolean) => C.mean(t, ax, k), (v: number[]) => sum(v) / v.length],
      ['max', (t: Tensor, ax?: number[], k?: boolean) => C.max(t, ax, k), (v: number[]) => Math.max(...v)],
      ['min', (t: Tensor, ax?: number[], k?: boolean) => C.min(t, ax, k), (v: number[]) => Math.min(...v)],
      [
        'var',
        (t: Tensor, ax?: number[], k?: boolean) => C.variance(t, ax, { keepdim: k ?? false }),
        (v: number[]) => {
          const m = sum(v) / v.length;
          return sum(v.map((x) => (x - m) ** 2)) / (v.length - 1);
        },
      ],
    ] as const
  ).map(
    ([name, fn, f]): OpSpec => ({
      name: `reduce ${name}`,
      perf: { label: 'last axis 4096x1024', inputs: [{ shape: [4096, 1024] }], args: { axes: [1], keep: true } },
      cases: [
        { label: 'all 33x9', inputs: [{ shape: [33, 9] }], args: { axes: undefined, keep: false } },
        { label: 'last 7x129', inputs: [{ shape: [7, 129] }], args: { axes: [1], keep: true } },
        { label: 'first 31x8 (bias grad)', inputs: [{ shape: [31, 8] }], args: { axes: [0], keep: false } },
        { label: 'middle 3x17x5', inputs: [{ shape: [3, 17, 5] }], args: { axes: [1], keep: false } },
        { label: 'outer 4x3x5', inputs: [{ shape: [4, 3, 5] }], args: { axes: [0, 2], keep: true } },
      ],
      run: ([x], a) => fn(x as Tensor, a.axes, a.keep),
      ref: ([x], a) => R.reduceRef(x as Ref, a.axes ?? (x as Ref).shape.map((_, i) => i), a.keep, f),
    }),
  ),
  // ---------------------------------------------------------------- matmul
  {
    name: 'matmul',
    // CRATE-T's MLP-sized token GEMM: (B·N = 2080 tokens) × 384 → 1536
    perf: {
      label: '2080x384 @ 384x1536',
      inputs: [{ shape: [2080, 384] }, { shape: [384, 1536] }],
      args: {},
      flops: 2 * 2080 * 384 * 1536,
    },
    cases: [
      { label: '1x1x1', inputs: [{ shape: [1, 1] }, { shape: [1, 1] }], args: {} },
      { label: '7x33 @ 33x9', inputs: [{ shape: [7, 33] }, { shape: [33, 9] }], args: {} },
      { label: '129x31 @ 31x17', inputs: [{ shape: [129, 31] }, { shape: [31, 17] }], args: {} },
      { label: 'transA 33x7', inputs: [{ shape: [33, 7] }, { shape: [33, 9] }], args: { transA: true } },
      { label: 'transB', inputs: [{ shape: [9, 31] }, { shape: [8, 31] }], args: { transB: true } },
      {
        label: 'transA transB',
        inputs: [{ shape: [31, 9] }, { shape: [8, 31] }],
        args: { transA: true, transB: true },
      },
      { label: 'batched', inputs: [{ shape: [3, 7, 9] }, { shape: [3, 9, 8] }], args: {} },
      { label: 'broadcast batch', inputs: [{ shape: [2, 1, 7, 8] }, { shape: [3, 8, 9] }], args: {} },
      {
        label: 'shared weight (linear layout)',
        inputs: [{ shape: [2, 5, 9] }, { shape: [7, 9] }],
        args: { transB: true },
      },
      { label: 'batched transA', inputs: [{ shape: [2, 9, 7] }, { shape: [9, 5] }], args: { transA: true } },
      { label: 'vector', inputs: [{ shape: [9] }, { shape: [9, 4] }], args: {} },
    ],
    run: ([a, b], o) => C.matmul(a as Tensor, b as Tensor, o),
    ref: ([a, b], o) => {
      let A = a as Ref;
      let B = b as Ref;
      const va = A.shape.length === 1;
      if (va) A = { data: A.data, shape: [1, A.shape[0] as number] };
      if (B.shape.length === 1) B = { data: B.data, shape: [B.shape[0] as number, 1] };
      const r = R.matmulRef(A, B, o.transA, o.transB);
      return va ? { data: r.data, shape: r.shape.slice(1) } : r;
    },
    tol: { f32: 2e-5 },
  },
  {
    name: 'linear',
    perf: {
      label: '32x65x384 -> 384 (bias)',
      inputs: [{ shape: [32, 65, 384] }, { shape: [384, 384] }, { shape: [384] }],
      flops: 2 * 32 * 65 * 384 * 384,
    },
    cases: [
      { label: 'bias', inputs: [{ shape: [2, 5, 9] }, { shape: [7, 9] }, { shape: [7] }] },
      { label: '33 features', inputs: [{ shape: [17, 33] }, { shape: [31, 33] }, { shape: [31] }] },
    ],
    run: ([x, w, b]) => C.linear(x as Tensor, w as Tensor, b as Tensor),
    ref: ([x, w, b]) => {
      const y = R.matmulRef(x as Ref, w as Ref, false, true);
      return R.map2(y, b as Ref, (p, q) => p + q);
    },
    tol: { f32: 2e-5 },
  },
  // ---------------------------------------------------------------- layout
  {
    name: 'reshape',
    cases: [{ label: '6x4 -> 3x-1', inputs: [{ shape: [6, 4] }], args: [3, -1] }],
    perf: { label: '4096x1024 -> 1024x-1', inputs: [{ shape: [4096, 1024] }], args: [1024, -1] },
    run: ([x], s) => C.reshape(x as Tensor, s),
    ref: ([x], s) => ({ data: (x as Ref).data, shape: [s[0], (x as Ref).data.length / s[0]] }),
  },
  {
    name: 'permute',
    // MSSA's head split of CRATE-B tokens: (B, N, H, p) -> (B, H, N, p)
    perf: { label: '32x197x12x64 (0,2,1,3)', inputs: [{ shape: [32, 197, 12, 64] }], args: [0, 2, 1, 3] },
    cases: [
      { label: '2x3x5 (2,0,1)', inputs: [{ shape: [2, 3, 5] }], args: [2, 0, 1] },
      { label: '9x33 transpose', inputs: [{ shape: [9, 33] }], args: [1, 0] },
      { label: '2x3x4x5 (0,2,1,3)', inputs: [{ shape: [2, 3, 4, 5] }], args: [0, 2, 1, 3] },
    ],
    run: ([x], d) => C.permute(x as Tensor, d),
    ref: ([x], d) => R.permuteRef(x as Ref, d),
  },
  {
    name: 'slice',
    perf: { label: 'axis1 0:512 of 4096x1024', inputs: [{ shape: [4096, 1024] }], args: [1, 0, 512, 1] },
    cases: [
      { label: 'axis1 2:7', inputs: [{ shape: [3, 9] }], args: [1, 2, 7, 1] },
      { label: 'axis0 step2', inputs: [{ shape: [33, 4] }], args: [0, 1, 30, 2] },
      { label: 'negative start', inputs: [{ shape: [5, 8] }], args: [1, -3, undefined, 1] },
    ],
    run: ([x], [a, s, e, st]) => C.slice(x as Tensor, a, s, e, st),
    ref: ([x], [a, s, e, st]) => {
      const n = (x as Ref).shape[a] as number;
      return R.sliceRef(x as Ref, a, s < 0 ? s + n : s, e ?? n, st);
    },
  },
  {
    name: 'concat',
    // the class token in front of the patch tokens: (B, 1, d) ++ (B, N, d)
    perf: {
      label: 'axis1 32x1x768 ++ 32x196x768',
      inputs: [{ shape: [32, 1, 768] }, { shape: [32, 196, 768] }],
      args: 1,
    },
    cases: [
      { label: 'axis0', inputs: [{ shape: [2, 5] }, { shape: [7, 5] }, { shape: [1, 5] }], args: 0 },
      { label: 'axis1', inputs: [{ shape: [3, 2, 4] }, { shape: [3, 9, 4] }], args: 1 },
      { label: 'axis -1', inputs: [{ shape: [4, 3] }, { shape: [4, 1] }], args: -1 },
    ],
    run: (xs, a) => C.concat(xs, a),
    ref: (xs, a) => R.concatRef(xs, a < 0 ? a + (xs[0] as Ref).shape.length : a),
  },
  {
    name: 'expand',
    perf: { label: '1x1024 -> 4096x1024', inputs: [{ shape: [1, 1024] }], args: [4096, 1024] },
    cases: [{ label: '3x1 -> 2x3x5', inputs: [{ shape: [3, 1] }], args: [2, 3, 5] }],
    run: ([x], s) => C.expand(x as Tensor, s),
    ref: ([x], s) => R.map2(x as Ref, R.ref(s), (p) => p),
  },
  {
    name: 'indexSelect',
    perf: {
      label: 'axis0 8192 rows of 8192x384',
      inputs: [{ shape: [8192, 384] }, { shape: [8192], intMax: 8192 }],
      args: 0,
    },
    cases: [
      {
        label: 'axis0 repeats',
        inputs: [{ shape: [7, 5] }, { shape: [9], intMax: 7 }],
        args: 0,
      },
      { label: 'axis1', inputs: [{ shape: [3, 33, 2] }, { shape: [4], values: [32, 0, 5, 5] }], args: 1 },
    ],
    run: ([x, i], a) => C.indexSelect(x as Tensor, a, i as Tensor),
    ref: ([x, i], a) => R.gatherRef(x as Ref, a, Array.from((i as Ref).data)),
  },
  {
    name: 'embedding',
    cases: [{ label: '2x3 ids into 11x8', inputs: [{ shape: [11, 8] }, { shape: [2, 3], intMax: 11 }] }],
    perf: { label: '8x1024 ids into 8192x384', inputs: [{ shape: [8192, 384] }, { shape: [8, 1024], intMax: 8192 }] },
    run: ([w, i]) => C.embedding(w as Tensor, i as Tensor),
    ref: ([w, i]) => {
      const r = R.gatherRef(w as Ref, 0, Array.from((i as Ref).data));
      return { data: r.data, shape: [...(i as Ref).shape, (w as Ref).shape[1] as number] };
    },
  },
  // ---------------------------------------------------------------- nn
  {
    name: 'softmax',
    perf: { label: '8192x512', inputs: [{ shape: [8192, 512] }], args: -1 },
    cases: [
      { label: '1x1', inputs: [{ shape: [1, 1] }], args: -1 },
      { label: '7x33', inputs: [{ shape: [7, 33] }], args: -1 },
      { label: '3x129', inputs: [{ shape: [3, 129] }], args: -1 },
      { label: 'axis0 5x4', inputs: [{ shape: [5, 4] }], args: 0 },
    ],
    run: ([x], a) => C.softmax(x as Tensor, a),
    ref: ([x], a) =>
      a === 0
        ? R.permuteRef(R.softmaxRef(R.permuteRef(x as Ref, [1, 0]), false), [1, 0])
        : R.softmaxRef(x as Ref, false),
  },
  {
    name: 'logSoftmax',
    perf: { label: '8192x512', inputs: [{ shape: [8192, 512] }] },
    cases: [
      { label: '7x33', inputs: [{ shape: [7, 33] }] },
      { label: '2x3x9', inputs: [{ shape: [2, 3, 9] }] },
    ],
    run: ([x]) => C.logSoftmax(x as Tensor),
    ref: ([x]) => R.softmaxRef(x as Ref, true),
  },
  {
    name: 'layerNorm',
    perf: {
      label: 'affine 8192x384',
      inputs: [{ shape: [8192, 384] }, { shape: [384] }, { shape: [384] }],
      args: 1e-5,
    },
    cases: [
      { label: 'affine 7x33', inputs: [{ shape: [7, 33] }, { shape: [33] }, { shape: [33] }], args: 1e-5 },
      { label: 'affine 2x3x129', inputs: [{ shape: [2, 3, 129] }, { shape: [129] }, { shape: [129] }], args: 1e-6 },
      { label: 'no affine 5x8', inputs: [{ shape: [5, 8] }], args: 1e-5 },
    ],
    run: ([x, w, b], eps) => C.layerNorm(x as Tensor, w ?? null, b ?? null, eps),
    ref: ([x, w, b], eps) => R.layerNormRef(x as Ref, w ?? null, b ?? null, eps),
    tol: { f32: 1e-4 },
  },
  {
    name: 'crossEntropy',
    perf: { label: 'mean 8192x1000', inputs: [{ shape: [8192, 1000] }, { shape: [8192], intMax: 1000 }], args: {} },
    cases: [
      { label: 'mean 9x7', inputs: [{ shape: [9, 7] }, { shape: [9], intMax: 7 }], args: {} },
      {
        label: 'smoothing 0.1, ignore',
        inputs: [{ shape: [6, 33] }, { shape: [6], values: [1, -100, 32, 0, 5, -100] }],
        args: { labelSmoothing: 0.1 },
      },
      { label: 'sum 1x1', inputs: [{ shape: [1, 1] }, { shape: [1], values: [0] }], args: { reduction: 'sum' } },
      {
        label: 'none 2x3x5',
        inputs: [{ shape: [2, 3, 5] }, { shape: [2, 3], intMax: 5 }],
        args: { reduction: 'none' },
      },
    ],
    run: ([x, t], o) => C.crossEntropy(x as Tensor, t as Tensor, o),
    ref: ([x, t], o) =>
      R.crossEntropyRef(x as Ref, t as Ref, o.labelSmoothing ?? 0, -100, (o.reduction ?? 'mean') as 'mean'),
  },
];
