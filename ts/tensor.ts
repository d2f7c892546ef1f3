// tensor.ts: the Tensor class: a contiguous, typed buffer on a device plus shape, autograd
// state and the method-style API (t.add(u), t.sum(), ...). Ops live in ops/; methods delegate.

import type { GradNode } from './autograd.js';
import { backward as runBackward } from './autograd.js';
import { DEVICE_CODE } from './device.js';
import { type Device, DTYPE_CODE, type DType, type TypedArray, viewOf } from './dtype.js';
import { retrackTensor, StorageRef, trackTensor, untrackTensor } from './memory.js';
import type { NativeStorage } from './native.js';
import { native } from './native.js';
import * as E from './ops/elementwise.js';
import * as M from './ops/matmul.js';
import * as N from './ops/nn.js';
import * as R from './ops/reduce.js';
import * as L from './ops/shape.js';

export type Shape = readonly number[];
export type NestedArray = number | NestedArray[];
export type Scalar = number;

let nextId = 1;

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${where}: shape must be an array of integers, got ${String(shape)}`);
  for (const s of shape) {
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw new TypeError(`${where}: shape must hold non-negative integers, got ${formatShape(shape as number[])}`);
    }
  }
  if (shape.length > 16) throw new RangeError(`${where}: at most 16 dimensions, got ${shape.length}`);
  const n = shape.reduce((a: number, b: number) => a * b, 1);
  if (n > 2 ** 40) {
    throw new RangeError(`${where}: shape ${formatShape(shape)} has ${n} elements, more than the 2^40 supported`);
  }
  return [...shape];
}

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly dtype: DType;
  /** Where the data lives; changes only through Module.to() (an in-place move of a leaf). */
  device: Device;
  /** Whether gradients are computed for this tensor (leaf) or flow through it (intermediate). */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after backward(). */
  grad: Tensor | null = null;
  /** @internal the op that produced this tensor (null for leaves and under noGrad). */
  _node: GradNode | null = null;
  /** @internal */
  _ref: StorageRef;
  private _disposed = false;

  /** @internal Use the creation functions (tensor, zeros, randn, ...) instead. */
  constructor(ref: StorageRef, shape: Shape, dtype: DType, device: Device) {
    this._ref = ref;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    trackTensor(this, ref);
  }

  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numelOf(this.shape);
  }
  get isDisposed(): boolean {
    return this._disposed;
  }
  /** Size of dimension `dim` (negative counts from the end). */
  size(dim: number): number {
    const d = dim < 0 ? dim + this.ndim : dim;
    const s = this.shape[d];
    if (s === undefined) throw new RangeError(`size: dim ${dim} out of range for shape ${formatShape(this.shape)}`);
    return s;
  }

  /** @internal The native handle, checked live; `op` names the caller in the error. */
  _h(op: string): NativeStorage {
    if (this._disposed) {
      throw new Error(`${op}: tensor #${this.id} ${formatShape(this.shape)} ${this.dtype} was used after dispose()`);
    }
    return this._ref.handle;
  }

  /**
   * @internal Moves a leaf's data to `device` in place: the tensor object (and every reference
   * to it: module fields, optimizer state) stays the same and now holds a copy on `device`.
   * Used by Module.to(); its gradient, if any, is moved too.
   */
  _moveTo(device: Device): void {
    if (this.device === device) return;
    if (this._node) throw new Error('to: only leaf tensors (parameters, buffers) can be moved in place');
    const view = this.detach();
    const moved = E.toDevice(view, device);
    view.dispose();
    const old = this._ref;
    const next = moved._ref.retain();
    this._ref = next;
    retrackTensor(this, next);
    old.release();
    this.device = device;
    moved.dispose();
    if (this.grad) this.grad._moveTo(device);
  }

  /** Frees the tensor's memory now (its storage is freed when no view shares it). Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    untrackTensor(this);
    this._ref.release();
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Copies the data to a new typed array (synchronous). */
  dataSync(): TypedArray {
    const h = this._h('dataSync');
    return viewOf(this.dtype, native.read(h));
  }
  /** Copies the data out; resolves without blocking the event loop on device work. */
  async data(): Promise<TypedArray> {
    // CUDA: the copy runs on the stream and the promise resolves from a host callback, so the
    // event loop keeps running; CPU: resolved at once.
    if (this.device === 'cpu') return this.dataSync();
    const h = this._h('data');
    const keepAlive = this._ref.retain();
    try {
      return viewOf(this.dtype, await native.readAsync(h));
    } finally {
      keepAlive.release();
    }
  }
  /** The value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new Error(`item: tensor has ${this.numel} elements, expected 1`);
    return this.dataSync()[0] as number;
  }
  /** Nested JS arrays (like PyTorch's tolist()). */
  toArray(): NestedArray {
    const d = this.dataSync();
    const build = (dim: number, off: number): NestedArray => {
      if (dim === this.ndim) return d[off] as number;
      const n = this.shape[dim] as number;
      const stride = numelOf(this.shape.slice(dim + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < n; i++) out.push(build(dim + 1, off + i * stride));
      return out;
    };
    return build(0, 0);
  }

  /** Like PyTorch: tensor([[1., 2.], [3., 4.]], dtype=f32). */
  toString(): string {
    if (this._disposed) return `tensor(<disposed> ${formatShape(this.shape)}, dtype=${this.dtype})`;
    const d = this.dataSync();
    const isInt = this.dtype === 'i32';
    const fmt = (v: number): string => {
      if (isInt) return String(v);
      if (Number.isNaN(v)) return 'nan';
      if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
      if (Number.isInteger(v) && Math.abs(v) < 1e8) return `${v}.`;
      const a = Math.abs(v);
      return a !== 0 && (a < 1e-4 || a >= 1e8) ? v.toExponential(4) : String(Number(v.toFixed(4)));
    };
    const strs = Array.from(d, fmt);
    const width = Math.max(1, ...strs.map((s) => s.length));
    const limit = 1000;
    const summarize = this.numel > limit;
    const build = (dim: number, off: number, indent: number): string => {
      if (this.ndim === 0) return strs[0] ?? '';
      const n = this.shape[dim] as number;
      const stride = numelOf(this.shape.slice(dim + 1));
      const idx: (number | null)[] = [];
      if (summarize && n > 6) idx.push(0, 1, 2, null, n - 3, n - 2, n - 1);
      else for (let i = 0; i < n; i++) idx.push(i);
      if (dim === this.ndim - 1) {
        return `[${idx.map((i) => (i === null ? '...' : (strs[off + i] ?? '').padStart(width))).join(', ')}]`;
      }
      const sep = `,${'\n'.repeat(this.ndim - 1 - dim)}${' '.repeat(indent + 1)}`;
      return `[${idx.map((i) => (i === null ? '...' : build(dim + 1, off + i * stride, indent + 1))).join(sep)}]`;
    };
    const extras: string[] = [];
    if (this.dtype !== 'f32') extras.push(`dtype=${this.dtype}`);
    if (this.device !== 'cpu') extras.push(`device='${this.device}'`);
    if (this._node) extras.push(`grad_fn=<${this._node.op}>`);
    else if (this.requiresGrad) extras.push('requires_grad=True');
    return `tensor(${build(0, 0, 7)}${extras.length ? `, ${extras.join(', ')}` : ''})`;
  }

  // ------------------------------------------------------------------ autograd
  /** Marks a leaf as requiring gradients. Returns this. */
  requiresGrad_(flag = true): this {
    if (this._node) throw new Error('requiresGrad_: only leaf tensors can change requiresGrad');
    if (flag && this.dtype === 'i32') throw new TypeError('requiresGrad_: integer tensors cannot require gradients');
    this.requiresGrad = flag;
    return this;
  }
  /** Backpropagates from this tensor. A scalar needs no seed; otherwise pass dL/dthis. */
  backward(seed?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    runBackward(this, seed, opts.retainGraph ?? false);
  }
  /** A new tensor sharing this storage, cut from the graph. */
  detach(): Tensor {
    this._h('detach');
    return new Tensor(this._ref.retain(), this.shape, this.dtype, this.device);
  }
  /** Disposes and clears the gradient. */
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  // ------------------------------------------------------------------ in-place (no autograd)
  /**
   * Overwrites this tensor's data with `src` (same shape and dtype; src may broadcast). Not
   * recorded by autograd: meant for optimizers, initialisers and loading weights. Views that
   * share this storage (reshape) see the change. Returns this.
   */
  copy_(src: Tensor): this {
    const op = 'copy_';
    const dst = this._h(op);
    if (!(src instanceof Tensor)) throw new TypeError(`${op}: src must be a Tensor`);
    const sh = src._h(op);
    if (src.dtype !== this.dtype) throw new TypeError(`${op}: src is ${src.dtype}, this is ${this.dtype}`);
    if (src.device !== this.device) throw new Error(`${op}: src is on ${src.device}, this is on ${this.device}`);
    const off = this.ndim - src.ndim;
    if (off < 0 || src.shape.some((s, i) => s !== 1 && s !== this.shape[off + i])) {
      throw new Error(`${op}: cannot copy ${formatShape(src.shape)} into ${formatShape(this.shape)}`);
    }
    const st: number[] = [];
    let acc = 1;
    for (let d = this.ndim - 1; d >= 0; d--) {
      st[d] = acc;
      acc *= this.shape[d] as number;
    }
    const sst = new Array<number>(this.ndim).fill(0);
    let sacc = 1;
    for (let d = src.ndim - 1; d >= 0; d--) {
      sst[off + d] = src.shape[d] === 1 ? 0 : sacc;
      sacc *= src.shape[d] as number;
    }
    native.stridedCopy(sh, 0, sst, dst, 0, st, [...this.shape], false);
    return this;
  }
  /** Fills with a constant in place (not recorded). Returns this. */
  fill_(value: number): this {
    native.fill(this._h('fill_'), value);
    return this;
  }

  // ------------------------------------------------------------------ method API
  add(o: Tensor | Scalar): Tensor {
    return E.add(this, o);
  }
  sub(o: Tensor | Scalar): Tensor {
    return E.sub(this, o);
  }
  mul(o: Tensor | Scalar): Tensor {
    return E.mul(this, o);
  }
  div(o: Tensor | Scalar): Tensor {
    return E.div(this, o);
  }
  pow(o: Tensor | Scalar): Tensor {
    return E.pow(this, o);
  }
  neg(): Tensor {
    return E.neg(this);
  }
  exp(): Tensor {
    return E.exp(this);
  }
  log(): Tensor {
    return E.log(this);
  }
  sqrt(): Tensor {
    return E.sqrt(this);
  }
  abs(): Tensor {
    return E.abs(this);
  }
  relu(): Tensor {
    return E.relu(this);
  }
  tanh(): Tensor {
    return E.tanh(this);
  }
  sigmoid(): Tensor {
    return E.sigmoid(this);
  }
  square(): Tensor {
    return E.square(this);
  }
  clamp(min: number, max: number): Tensor {
    return E.clamp(this, min, max);
  }
  sum(axes?: number | number[], keepdim = false): Tensor {
    return R.sum(this, axes, keepdim);
  }
  mean(axes?: number | number[], keepdim = false): Tensor {
    return R.mean(this, axes, keepdim);
  }
  max(axes?: number | number[], keepdim = false): Tensor {
    return R.max(this, axes, keepdim);
  }
  reshape(shape: number[]): Tensor {
    return L.reshape(this, shape);
  }
  transpose(a = -2, b = -1): Tensor {
    return L.transpose(this, a, b);
  }
  permute(dims: number[]): Tensor {
    return L.permute(this, dims);
  }
  matmul(o: Tensor): Tensor {
    return M.matmul(this, o);
  }
  softmax(axis = -1): Tensor {
    return N.softmax(this, axis);
  }
  /**
   * Converts to another dtype or moves to another device (a copy either way; a same-dtype cast
   * copies too). Moving keeps the dtype; f64 cannot go to 'cuda'. Gradients flow across a move.
   */
  to(target: DType | Device): Tensor {
    if (target === 'cpu' || target === 'cuda') return E.toDevice(this, target);
    return E.cast(this, target);
  }
}

/** @internal Allocates an uninitialised (or zeroed) tensor. */
export function empty(shape: Shape, dtype: DType, device: Device, zero = false, scratch = false): Tensor {
  if (dtype === 'bf16' && device !== 'cuda') throw new TypeError("dtype 'bf16' is only available on device 'cuda'");
  // f64 on CUDA exists only as kernel scratch (the coding rate's f64 Cholesky factor)
  if (dtype === 'f64' && device === 'cuda' && !scratch) {
    throw new TypeError("dtype 'f64' is not supported on device 'cuda' (use f32)");
  }
  const h = native.empty(DTYPE_CODE[dtype], numelOf(shape), zero, DEVICE_CODE[device]);
  return new Tensor(new StorageRef(h), shape, dtype, device);
}

/** @internal A new tensor object over the same storage with another shape (same numel). */
export function viewAs(t: Tensor, shape: Shape): Tensor {
  t._h('reshape');
  return new Tensor(t._ref.retain(), shape, t.dtype, t.device);
}
