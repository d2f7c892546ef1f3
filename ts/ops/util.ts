// util.ts: shape helpers shared by the ops: broadcasting, strides, axis normalisation, argument
// checks with messages that name the op, the argument and the shapes.
import type { DType } from '../dtype.js';
import { formatShape, type Shape, Tensor } from '../tensor.js';

export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d] as number;
  }
  return s;
}

export function broadcastShapes(op: string, a: Shape, b: Shape, names = ['a', 'b']): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(
        `${op}: shapes ${formatShape(a)} (${names[0]}) and ${formatShape(b)} (${names[1]}) cannot be broadcast (dim ${i}: ${da} vs ${db})`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Element strides of `shape` read as broadcast to `out` (0 on broadcast dims). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = contiguousStrides(shape);
  const r = new Array<number>(out.length).fill(0);
  const off = out.length - shape.length;
  for (let i = 0; i < shape.length; i++) r[off + i] = shape[i] === 1 && out[off + i] !== 1 ? 0 : (st[i] as number);
  return r;
}

export function normAxis(op: string, axis: number, ndim: number): number {
  if (!Number.isInteger(axis)) throw new TypeError(`${op}: axis must be an integer, got ${axis}`);
  const a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= Math.max(ndim, 1)) {
    throw new RangeError(`${op}: axis ${axis} is out of range for a tensor with ${ndim} dims`);
  }
  return a;
}

export function normAxes(op: string, axes: number | number[] | undefined, ndim: number): number[] {
  if (axes === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const list = (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(op, a, ndim));
  if (new Set(list).size !== list.length) throw new Error(`${op}: repeated axis in [${list.join(', ')}]`);
  return list.sort((x, y) => x - y);
}

export function checkTensor(op: string, t: unknown, name: string): Tensor {
  if (!(t instanceof Tensor)) {
    throw new TypeError(`${op}: argument '${name}' must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  }
  t._h(op);
  return t;
}

export function checkFloat(op: string, t: Tensor, name: string): void {
  if (t.dtype === 'i32') throw new TypeError(`${op}: argument '${name}' must be a float tensor (f32/f64), got i32`);
}

export function checkSame(op: string, a: Tensor, b: Tensor, names: [string, string]): void {
  if (a.device !== b.device) {
    throw new Error(`${op}: '${names[0]}' is on ${a.device} but '${names[1]}' is on ${b.device}`);
  }
  if (a.dtype !== b.dtype) {
    throw new TypeError(`${op}: '${names[0]}' is ${a.dtype} but '${names[1]}' is ${b.dtype}; cast one with .to()`);
  }
}

export function checkShapeEq(op: string, t: Tensor, name: string, shape: Shape): void {
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`${op}: '${name}' has shape ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
  }
}

export function checkNumber(op: string, v: unknown, name: string): number {
  if (typeof v !== 'number') throw new TypeError(`${op}: '${name}' must be a number, got ${typeof v}`);
  return v;
}

export function checkInt(op: string, v: unknown, name: string, min = Number.MIN_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new TypeError(`${op}: '${name}' must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

export function isFloatDType(d: DType): boolean {
  return d === 'f32' || d === 'f64' || d === 'bf16';
}
