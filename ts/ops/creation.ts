// creation.ts: tensor factories (tensor, zeros, ones, full, arange, rand, randn, uniform, ...)
// and the global seeded generator (manualSeed). Every factory takes dtype, device, requiresGrad.
import { DEVICE_CODE, resolveDevice } from '../device.js';
import { checkDType, type Device, DTYPE_CODE, type DType, dtypeOfArray } from '../dtype.js';
import { StorageRef } from '../memory.js';
import { native } from '../native.js';
import { checkShape, empty, formatShape, type NestedArray, numelOf, type Shape, Tensor } from '../tensor.js';

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}
export interface RandomOptions extends CreateOptions {
  /** Draw from this seed instead of the global generator. */
  seed?: number;
}

function opts(where: string, o: CreateOptions | undefined, fallback: DType = 'f32'): { dtype: DType; device: Device } {
  const dtype = o?.dtype === undefined ? fallback : checkDType(o.dtype, where);
  const device = resolveDevice(o?.device, where);
  return { dtype, device };
}

function finish(t: Tensor, o: CreateOptions | undefined): Tensor {
  if (o?.requiresGrad) t.requiresGrad_(true);
  return t;
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0] as NestedArray;
  }
  return shape;
}

function flatten(data: NestedArray, shape: number[], where: string): number[] {
  const out: number[] = [];
  const walk = (v: NestedArray, d: number): void => {
    if (d === shape.length) {
      if (typeof v !== 'number') throw new TypeError(`${where}: ragged or non-numeric nested array at depth ${d}`);
      out.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) {
      throw new TypeError(`${where}: ragged nested array: expected length ${shape[d]} at depth ${d}`);
    }
    for (const x of v) walk(x, d + 1);
  };
  walk(data, 0);
  return out;
}

/**
 * Creates a tensor from a number, nested arrays or a typed array (copied).
 * `shape` is required for flat typed arrays that are not 1-D.
 */
export function tensor(
  data: NestedArray | Float32Array | Float64Array | Int32Array,
  options: CreateOptions & { shape?: number[] } = {},
): Tensor {
  const where = 'tensor';
  let shape: number[];
  let flat: ArrayLike<number>;
  let inferred: DType = 'f32';
  if (ArrayBuffer.isView(data)) {
    inferred = dtypeOfArray(data) ?? 'f32';
    flat = data;
    shape = options.shape ? checkShape(options.shape, where) : [data.length];
  } else if (typeof data === 'number' || Array.isArray(data)) {
    shape = inferShape(data);
    flat = typeof data === 'number' ? [data] : flatten(data, shape, where);
    if (options.shape) {
      const s = checkShape(options.shape, where);
      if (numelOf(s) !== flat.length) {
        throw new Error(`${where}: shape ${formatShape(s)} does not match ${flat.length} values`);
      }
      shape = s;
    }
  } else {
    throw new TypeError(`${where}: data must be a number, a nested array or a typed array, got ${typeof data}`);
  }
  if (numelOf(shape) !== flat.length) {
    throw new Error(`${where}: shape ${formatShape(shape)} needs ${numelOf(shape)} values, got ${flat.length}`);
  }
  const { dtype, device } = opts(where, options, inferred);
  let src: ArrayBufferView;
  if (dtype === 'f32') src = flat instanceof Float32Array ? flat : Float32Array.from(flat);
  else if (dtype === 'f64') src = flat instanceof Float64Array ? flat : Float64Array.from(flat);
  else if (dtype === 'i32') {
    for (let i = 0; i < flat.length; i++) {
      const v = flat[i] as number;
      if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
        throw new TypeError(`${where}: value ${v} at index ${i} is not a 32-bit integer (dtype i32)`);
      }
    }
    src = flat instanceof Int32Array ? flat : Int32Array.from(flat);
  } else throw new TypeError(`${where}: dtype ${dtype} is not supported on ${device}`);
  if (dtype === 'f64' && device === 'cuda')
    throw new TypeError(`${where}: dtype 'f64' is not supported on device 'cuda' (use f32)`);
  const h = native.fromBuffer(DTYPE_CODE[dtype], src, DEVICE_CODE[device]);
  return finish(new Tensor(new StorageRef(h), shape, dtype, device), options);
}

export function scalar(v: number, options: CreateOptions = {}): Tensor {
  return full([], v, options);
}

export function full(shape: number[], value: number, options: CreateOptions = {}): Tensor {
  const s = checkShape(shape, 'full');
  const { dtype, device } = opts('full', options);
  if (typeof value !== 'number') throw new TypeError(`full: value must be a number, got ${typeof value}`);
  const t = empty(s, dtype, device, value === 0);
  if (value !== 0) native.fill(t._h('full'), value);
  return finish(t, options);
}

export function zeros(shape: number[], options: CreateOptions = {}): Tensor {
  resolveDevice(options.device, 'zeros');
  return full(checkShape(shape, 'zeros'), 0, options);
}
export function ones(shape: number[], options: CreateOptions = {}): Tensor {
  resolveDevice(options.device, 'ones');
  return full(checkShape(shape, 'ones'), 1, options);
}
export function zerosLike(t: Tensor, options: CreateOptions = {}): Tensor {
  return zeros([...t.shape], { dtype: t.dtype, device: t.device, ...options });
}
export function onesLike(t: Tensor, options: CreateOptions = {}): Tensor {
  return ones([...t.shape], { dtype: t.dtype, device: t.device, ...options });
}
export function fullLike(t: Tensor, value: number, options: CreateOptions = {}): Tensor {
  return full([...t.shape], value, { dtype: t.dtype, device: t.device, ...options });
}

/** Values start, start+step, ... below end (like torch.arange). */
export function arange(start: number, end?: number, step = 1, options: CreateOptions = {}): Tensor {
  let lo = start;
  let hi = end;
  if (hi === undefined) {
    hi = lo;
    lo = 0;
  }
  if (![lo, hi, step].every(Number.isFinite) || step === 0) {
    throw new RangeError(`arange: start, end and step must be finite and step non-zero, got ${lo}, ${hi}, ${step}`);
  }
  const n = Math.max(0, Math.ceil((hi - lo) / step));
  const { dtype, device } = opts('arange', options);
  const t = empty([n], dtype, device);
  native.arange(t._h('arange'), lo, step);
  return finish(t, options);
}

// ------------------------------------------------------------------ generator
const generator = { seed: 0x5eed, offset: 0 };

/** Seeds the global generator used by rand/randn/uniform/dropout and module init. */
export function manualSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TypeError(`manualSeed: seed must be a non-negative integer`);
  generator.seed = seed;
  generator.offset = 0;
}
/** The generator state (seed and counter offset), for checkpoints. */
export function getRngState(): { seed: number; offset: number } {
  return { ...generator };
}
export function setRngState(s: { seed: number; offset: number }): void {
  generator.seed = s.seed;
  generator.offset = s.offset;
}

/** @internal Draws the (seed, offset) for n values, advancing the global counter. */
export function nextRandom(n: number, seed?: number): [number, number] {
  if (seed !== undefined) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new TypeError(`random: seed must be a non-negative integer`);
    return [seed, 0];
  }
  const off = generator.offset;
  generator.offset += n;
  return [generator.seed, off];
}

function randomFill(where: string, kind: number, shape: number[], a: number, b: number, o: RandomOptions): Tensor {
  const s = checkShape(shape, where);
  const { dtype, device } = opts(where, o);
  if (dtype === 'i32') throw new TypeError(`${where}: dtype must be a float type, got i32`);
  const t = empty(s, dtype, device);
  const [seed, offset] = nextRandom(t.numel, o.seed);
  native.random(t._h(where), kind, seed, offset, a, b);
  return finish(t, o);
}

/** Uniform in [0, 1). */
export function rand(shape: number[], options: RandomOptions = {}): Tensor {
  return randomFill('rand', 0, shape, 0, 1, options);
}
/** Uniform in [low, high). */
export function uniform(shape: number[], low: number, high: number, options: RandomOptions = {}): Tensor {
  return randomFill('uniform', 0, shape, low, high, options);
}
/** Normal with mean 0 and std 1 (or the given mean/std). */
export function randn(shape: number[], options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return randomFill('randn', 1, shape, options.mean ?? 0, options.std ?? 1, options);
}
/** 1 with probability p, else 0. */
export function bernoulli(shape: number[], p: number, options: RandomOptions = {}): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`bernoulli: p must be in [0, 1], got ${p}`);
  return randomFill('bernoulli', 2, shape, p, 0, options);
}

export type { Shape };
