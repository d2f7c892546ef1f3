// bf16.ts: bf16 on the host for the tests of bf16 CUDA tensors (test/bf16_*.test.ts): bits <-> values,
// round-to-nearest-even of an f64, random bf16 tensors with their values, closeness checks against
// f64 references (one bf16 rounding of tolerance), and row-major index helpers.
import { expect } from 'vitest';
import * as C from '../../ts/index.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16BitsToNumber(bits: number): number {
  u32[0] = bits << 16;
  return f32[0] as number;
}

/** f64 -> the nearest bf16 value (ties to even), as a number; overflow gives ±Infinity. */
export function roundBf16(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const a = Math.abs(v);
  let e = Math.max(Math.floor(Math.log2(a)), -126);
  while (e > -126 && 2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 7); // 8 significant bits (subnormals: the fixed ulp 2^-133)
  const q = a / ulp; // exact: ulp is a power of two
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const out = r * ulp;
  return Math.sign(v) * (out >= 2 ** 128 ? Number.POSITIVE_INFINITY : out);
}

/** The values of a bf16 tensor, as numbers. */
export function values(t: C.Tensor): number[] {
  expect(t.dtype).toBe('bf16');
  return Array.from(t.dataSync() as Uint16Array, bf16BitsToNumber);
}

/** A bf16 cuda tensor of pseudo-random values in [lo, hi) (rounded to bf16) and those values. */
export function randBf16(shape: number[], seed: number, lo = -2, hi = 2): { t: C.Tensor; v: number[] } {
  const src = C.uniform(shape, lo, hi, { seed }).to('cuda');
  const t = src.to('bf16');
  src.dispose();
  return { t, v: values(t) };
}

/** |out - ref| <= 2^-8 |ref| (one bf16 rounding, plus f32 noise) + abs; NaN matches NaN. */
export function expectClose(what: string, out: number[], ref: number[], abs = 1e-6): void {
  expect(out.length).toBe(ref.length);
  const bad = out.flatMap((o, i) => {
    const r = ref[i] as number;
    if (Number.isNaN(r) ? Number.isNaN(o) : Math.abs(o - r) <= 2 ** -8 * Math.abs(r) * (1 + 2 ** -10) + abs) return [];
    return [`[${i}] got ${o}, f64 reference ${r} (bf16 ${roundBf16(r)})`];
  });
  expect(bad.slice(0, 5), `${what}: ${bad.length} values off`).toEqual([]);
}

export function expectExact(what: string, out: number[], ref: number[]): void {
  expect(out.length).toBe(ref.length);
  const bad = out.flatMap((o, i) => (Object.is(o, ref[i]) ? [] : [`[${i}] got ${o}, expected ${ref[i]}`]));
  expect(bad.slice(0, 5), `${what}: ${bad.length} values differ`).toEqual([]);
}

/** Row-major index helpers for the references. */
export function strides(shape: number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = (s[d + 1] as number) * (shape[d + 1] as number);
  return s;
}
export function unravel(i: number, shape: number[]): number[] {
  const st = strides(shape);
  return shape.map((_, d) => Math.floor(i / (st[d] as number)) % (shape[d] as number));
}
/** Element of x (shape xs) that index idx of the broadcast shape reads. */
export function bcast(x: number[], xs: number[], idx: number[]): number {
  const off = idx.length - xs.length;
  const st = strides(xs);
  let k = 0;
  xs.forEach((s, d) => {
    k += (s === 1 ? 0 : (idx[d + off] as number)) * (st[d] as number);
  });
  return x[k] as number;
}
