// elementwise.ts: broadcasting binary ops, unary math, comparisons, where, clamp, cast.
// Gradients of broadcast inputs are summed back to the input shape (sumTo).
import { record } from '../autograd.js';
import { DEVICE_CODE, resolveDevice } from '../device.js';
import { type Device, DTYPE_CODE, type DType } from '../dtype.js';
import { StorageRef } from '../memory.js';
import { native } from '../native.js';
import { empty, formatShape, type Scalar, type Shape, Tensor, viewAs } from '../tensor.js';
import { reduceSum } from './reduce.js';
import { broadcastShapes, broadcastStrides, checkFloat, checkSame, checkTensor } from './util.js';

export const UNARY = {
  neg: 0,
  exp: 1,
  log: 2,
  sqrt: 3,
  abs: 4,
  relu: 5,
  gelu: 6,
  gelu_tanh: 7,
  tanh: 8,
  sigmoid: 9,
  pow_scalar: 10,
  clamp: 11,
  affine: 12,
  sign: 13,
  square: 14,
  rsqrt: 15,
  sin: 16,
  cos: 17,
} as const;
type UnaryName = keyof typeof UNARY;

const BINARY = { add: 0, sub: 1, mul: 2, div: 3, pow: 4, maximum: 5, minimum: 6 } as const;
const COMPARE = { eq: 7, ne: 8, lt: 9, le: 10, gt: 11, ge: 12 } as const;

/** Sums a gradient over the broadcast dims so it has `shape` again (always a new tensor). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((s, i) => s === shape[i])) return viewAs(g, shape);
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const r = reduceSum(g, axes);
  const out = viewAs(r, shape);
  r.dispose();
  return out;
}

// ------------------------------------------------------------------ unary
function unaryRaw(op: string, code: number, x: Tensor, alpha = 0, beta = 0): Tensor {
  const y = empty(x.shape, x.dtype, x.device);
  native.unary(code, x._h(op), y._h(op), alpha, beta);
  return y;
}

function unary(name: UnaryName, x: Tensor, alpha = 0, beta = 0, useX = true, useY = false): Tensor {
  checkTensor(name, x, 'x');
  checkFloat(name, x, 'x');
  const code = UNARY[name];
  const y = unaryRaw(name, code, x, alpha, beta);
  return record(
    y,
    name,
    [x],
    (g, [s]) => {
      const dx = empty(x.shape, x.dtype, x.device);
      native.unaryBackward(
        code,
        useX ? s._h(name) : null,
        useY ? s._h(name) : null,
        g._h(name),
        dx._h(name),
        alpha,
        beta,
      );
      return [dx];
    },
    [useY ? y : x],
  );
}

export const neg = (x: Tensor): Tensor => unary('neg', x, 0, 0, false);
export const exp = (x: Tensor): Tensor => unary('exp', x, 0, 0, false, true);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x, 0, 0, false, true);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x, 0, 0, false, true);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x, 0, 0, false, true);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x, 0, 0, false, true);
export const square = (x: Tensor): Tensor => unary('square', x);
export const sign = (x: Tensor): Tensor => unary('sign', x);
export const sin = (x: Tensor): Tensor => unary('sin', x);
export const cos = (x: Tensor): Tensor => unary('cos', x);
/** GELU; approximate 'tanh' uses the tanh form (as GPT-2), 'none' the exact erf form. */
export function gelu(x: Tensor, opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
  return unary(opts.approximate === 'tanh' ? 'gelu_tanh' : 'gelu', x);
}
/** min(max(x, lo), hi); the gradient is 1 inside [lo, hi], 0 outside. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  if (typeof lo !== 'number' || typeof hi !== 'number' || lo > hi) {
    throw new RangeError(`clamp: need numbers min <= max, got ${lo}, ${hi}`);
  }
  return unary('clamp', x, lo, hi);
}
/** x * alpha + beta in one pass. */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  return unary('affine', x, alpha, beta, false);
}

// ------------------------------------------------------------------ binary
function binaryRaw(op: string, code: number, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = empty(shape, a.dtype, a.device);
  native.binary(
    code,
    a._h(op),
    broadcastStrides(a.shape, shape),
    b._h(op),
    broadcastStrides(b.shape, shape),
    out._h(op),
    shape,
  );
  return out;
}

function asTensor(op: string, v: Tensor | Scalar, like: Tensor, name: string): Tensor {
  if (v instanceof Tensor) {
    v._h(op);
    checkSame(op, like, v, ['a', name]);
    return v;
  }
  if (typeof v !== 'number') throw new TypeError(`${op}: '${name}' must be a Tensor or a number, got ${typeof v}`);
  const t = empty([], like.dtype, like.device);
  native.fill(t._h(op), v);
  return t;
}

function binary(name: keyof typeof BINARY, a: Tensor, bIn: Tensor | Scalar): Tensor {
  checkTensor(name, a, 'a');
  const b = asTensor(name, bIn, a, 'b');
  const out = binaryRaw(name, BINARY[name], a, b);
  const owned = bIn instanceof Tensor ? [] : [b];
  if (a.dtype === 'i32') {
    for (const t of owned) t.dispose();
    return out;
  }
  return record<Tensor[]>(
    out,
    name,
    [a, b],
    (g, saved) => {
      const sa = saved[0] as Tensor;
      const sb = saved[1] as Tensor;
      const so = saved[2] as Tensor;
      switch (name) {
        case 'add':
          return [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? sumTo(g, b.shape) : null];
        case 'sub':
          return [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? negSumTo(g, b.shape) : null];
        case 'mul':
          return [a.requiresGrad ? mulSumTo(g, sb, a.shape) : null, b.requiresGrad ? mulSumTo(g, sa, b.shape) : null];
        case 'div': {
          const da = a.requiresGrad ? divSumTo(g, sb, a.shape) : null;
          let db: Tensor | null = null;
          if (b.requiresGrad) {
            // -g * a / b^2 = -(g * out) / b
            const t1 = binaryRaw('div', BINARY.mul, g, so);
            const t2 = binaryRaw('div', BINARY.div, t1, sb);
            t1.dispose();
            db = negSumTo(t2, b.shape);
            t2.dispose();
          }
          return [da, db];
        }
        case 'pow': {
          // d/da = b * a^(b-1) = b * out / a ; d/db = out * log(a)
          let da: Tensor | null = null;
          let db: Tensor | null = null;
          if (a.requiresGrad) {
            const bm1 = unaryRaw('pow', UNARY.affine, sb, 1, -1);
            const p = binaryRaw('pow', BINARY.pow, sa, bm1);
            const t = binaryRaw('pow', BINARY.mul, p, sb);
            const gt = binaryRaw('pow', BINARY.mul, g, t);
            da = sumTo(gt, a.shape);
            for (const x of [bm1, p, t, gt]) x.dispose();
          }
          if (b.requiresGrad) {
            const la = unaryRaw('pow', UNARY.log, sa);
            const t = binaryRaw('pow', BINARY.mul, so, la);
            const gt = binaryRaw('pow', BINARY.mul, g, t);
            db = sumTo(gt, b.shape);
            for (const x of [la, t, gt]) x.dispose();
          }
          return [da, db];
        }
        case 'maximum':
        case 'minimum': {
          // The gradient goes to the selected input (to a on ties).
          const sel = binaryRaw(name, name === 'maximum' ? COMPARE.ge : COMPARE.le, sa, sb);
          const ga = binaryRaw(name, BINARY.mul, g, sel);
          const gb = binaryRaw(name, BINARY.sub, g, ga);
          sel.dispose();
          const r = [a.requiresGrad ? sumTo(ga, a.shape) : null, b.requiresGrad ? sumTo(gb, b.shape) : null];
          ga.dispose();
          gb.dispose();
          return r;
        }
      }
    },
    name === 'div' || name === 'pow' ? [a, b, out] : [a, b],
    owned,
  );
}

function negSumTo(g: Tensor, shape: Shape): Tensor {
  const s = sumTo(g, shape);
  const n = unaryRaw('neg', UNARY.neg, s);
  s.dispose();
  return n;
}
function mulSumTo(g: Tensor, other: Tensor, shape: Shape): Tensor {
  const t = binaryRaw('mul', BINARY.mul, g, other);
  const s = sumTo(t, shape);
  t.dispose();
  return s;
}
function divSumTo(g: Tensor, other: Tensor, shape: Shape): Tensor {
  const t = binaryRaw('div', BINARY.div, g, other);
  const s = sumTo(t, shape);
  t.dispose();
  return s;
}

function scalarFast(name: 'add' | 'sub' | 'mul' | 'div', a: Tensor, b: number): Tensor | null {
  if (a.dtype === 'i32') return null;
  switch (name) {
    case 'add':
      return affine(a, 1, b);
    case 'sub':
      return affine(a, 1, -b);
    case 'mul':
      return affine(a, b, 0);
    case 'div':
      return affine(a, 1 / b, 0);
  }
}

export function add(a: Tensor, b: Tensor | Scalar): Tensor {
  checkTensor('add', a, 'a');
  return (typeof b === 'number' && scalarFast('add', a, b)) || binary('add', a, b);
}
export function sub(a: Tensor, b: Tensor | Scalar): Tensor {
  checkTensor('sub', a, 'a');
  return (typeof b === 'number' && scalarFast('sub', a, b)) || binary('sub', a, b);
}
export function mul(a: Tensor, b: Tensor | Scalar): Tensor {
  checkTensor('mul', a, 'a');
  return (typeof b === 'number' && scalarFast('mul', a, b)) || binary('mul', a, b);
}
export function div(a: Tensor, b: Tensor | Scalar): Tensor {
  checkTensor('div', a, 'a');
  return (typeof b === 'number' && scalarFast('div', a, b)) || binary('div', a, b);
}
/** a^b; a number exponent uses the scalar-power kernel. */
export function pow(a: Tensor, b: Tensor | Scalar): Tensor {
  checkTensor('pow', a, 'a');
  if (typeof b === 'number' && a.dtype !== 'i32') return unary('pow_scalar', a, b, 0);
  return binary('pow', a, b);
}
export const maximum = (a: Tensor, b: Tensor | Scalar): Tensor => binary('maximum', a, b);
export const minimum = (a: Tensor, b: Tensor | Scalar): Tensor => binary('minimum', a, b);

function compare(name: keyof typeof COMPARE, a: Tensor, bIn: Tensor | Scalar): Tensor {
  checkTensor(name, a, 'a');
  const b = asTensor(name, bIn, a, 'b');
  const out = binaryRaw(name, COMPARE[name], a, b);
  if (!(bIn instanceof Tensor)) b.dispose();
  return out;
}
/** 1 where a == b else 0 (same dtype as a; no gradient). */
export const eq = (a: Tensor, b: Tensor | Scalar): Tensor => compare('eq', a, b);
export const ne = (a: Tensor, b: Tensor | Scalar): Tensor => compare('ne', a, b);
export const lt = (a: Tensor, b: Tensor | Scalar): Tensor => compare('lt', a, b);
export const le = (a: Tensor, b: Tensor | Scalar): Tensor => compare('le', a, b);
export const gt = (a: Tensor, b: Tensor | Scalar): Tensor => compare('gt', a, b);
export const ge = (a: Tensor, b: Tensor | Scalar): Tensor => compare('ge', a, b);

/** cond != 0 ? a : b, broadcasting all three. cond must have the dtype of a and b. */
export function where(cond: Tensor, a: Tensor | Scalar, b: Tensor | Scalar): Tensor {
  const op = 'where';
  checkTensor(op, cond, 'cond');
  const like = a instanceof Tensor ? a : b instanceof Tensor ? b : cond;
  const ta = asTensor(op, a, like, 'a');
  const tb = asTensor(op, b, like, 'b');
  let c = cond;
  if (cond.dtype !== ta.dtype) c = cast(cond, ta.dtype);
  const shape = broadcastShapes(op, broadcastShapes(op, c.shape, ta.shape, ['cond', 'a']), tb.shape, ['cond/a', 'b']);
  const out = empty(shape, ta.dtype, ta.device);
  native.where(
    c._h(op),
    broadcastStrides(c.shape, shape),
    ta._h(op),
    broadcastStrides(ta.shape, shape),
    tb._h(op),
    broadcastStrides(tb.shape, shape),
    out._h(op),
    shape,
  );
  const zero = empty([], ta.dtype, ta.device, true);
  const res = record(
    out,
    op,
    [ta, tb],
    (g, [sc, sz]) => {
      const gaFull = ta.requiresGrad ? where(sc, g, sz) : null;
      const gbFull = tb.requiresGrad ? where(sc, sz, g) : null;
      const r = [gaFull ? sumTo(gaFull, ta.shape) : null, gbFull ? sumTo(gbFull, tb.shape) : null];
      gaFull?.dispose();
      gbFull?.dispose();
      return r;
    },
    [c, zero],
    c !== cond ? [c, zero] : [zero],
  );
  if (!(a instanceof Tensor)) ta.dispose();
  if (!(b instanceof Tensor)) tb.dispose();
  return res;
}

/** Converts to `dtype` (always a new tensor). Gradients flow between float dtypes. */
/** @internal A cast that is not recorded on the tape (autocast's bf16 copies). */
export function castRaw(x: Tensor, dtype: DType): Tensor {
  const y = empty(x.shape, dtype, x.device);
  native.cast(x._h('cast'), y._h('cast'));
  return y;
}

export function cast(x: Tensor, dtype: DType): Tensor {
  checkTensor('cast', x, 'x');
  if (!(dtype in DTYPE_CODE)) throw new TypeError(`cast: unknown dtype ${String(dtype)}`);
  const y = castRaw(x, dtype);
  if (dtype === 'i32' || x.dtype === 'i32') return y;
  return record(y, 'cast', [x], (g) => [cast(g, x.dtype)]);
}

/** A copy of x on `device` (same dtype); the gradient flows back to x's device. */
export function toDevice(x: Tensor, device: Device): Tensor {
  checkTensor('to', x, 'x');
  const dev = resolveDevice(device, 'to');
  if (x.dtype === 'f64' && dev === 'cuda')
    throw new TypeError("to: dtype 'f64' is not supported on device 'cuda' (use f32)");
  if (dev === x.device) return cast(x, x.dtype);
  // through host memory: read (device->host) then upload (host->device)
  const bytes = native.read(x._h('to'));
  const y = new Tensor(
    new StorageRef(native.fromBuffer(DTYPE_CODE[x.dtype], new Uint8Array(bytes), DEVICE_CODE[dev])),
    x.shape,
    x.dtype,
    dev,
  );
  if (x.dtype === 'i32') return y;
  return record(y, 'to', [x], (g) => [toDevice(g, x.device)]);
}

/** Throws if x holds NaN or Inf, naming `what` and the first bad index. */
export function assertFinite(x: Tensor, what: string): void {
  const i = native.findNonFinite(x._h(what));
  if (i >= 0) {
    let v = x.dataSync()[i] as number;
    if (x.dtype === 'bf16') v = new Float32Array(new Uint32Array([v << 16]).buffer)[0] as number; // bf16 bits
    throw new Error(`${what}: non-finite value ${v} at flat index ${i} of a ${formatShape(x.shape)} tensor`);
  }
}
