// idx.ts: reader and writer of the IDX format used by MNIST and Fashion-MNIST (magic 0x0000,
// a dtype byte, a dimension count, big-endian u32 dims, big-endian data), plain or gzip-compressed.
// Sizes are checked against the file length before any value is read.
import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { atomicWrite } from '../io/safetensors.js';

export type IdxDType = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDType;
  shape: number[];
  /** Values in row-major order, in host byte order. */
  data: IdxData;
}

const CODES: Record<number, [IdxDType, number]> = {
  8: ['u8', 1],
  9: ['i8', 1],
  11: ['i16', 2],
  12: ['i32', 4],
  13: ['f32', 4],
  14: ['f64', 8],
};
const CODE_OF: Record<IdxDType, number> = { u8: 0x08, i8: 0x09, i16: 0x0b, i32: 0x0c, f32: 0x0d, f64: 0x0e };

/** Largest decompressed size accepted from a .gz (guards against gzip bombs). */
const MAX_GUNZIP = 2 ** 31 - 1;

export function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Parses IDX bytes (gunzipped first when they start with the gzip magic). `name` labels errors. */
export function parseIdx(input: Uint8Array, name = 'IDX buffer'): IdxArray {
  let buf = input;
  if (isGzip(buf)) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: MAX_GUNZIP });
    } catch (e) {
      throw new Error(`${name}: not a valid gzip stream (${(e as Error).message})`);
    }
  }
  if (buf.length < 4) throw new Error(`${name}: ${buf.length} bytes, too short for an IDX header`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new Error(
      `${name}: bad IDX magic 0x${[...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join('')} (expected 0x0000 then a dtype byte)`,
    );
  }
  const code = buf[2] as number;
  const info = CODES[code];
  if (!info) throw new Error(`${name}: unknown IDX dtype byte 0x${code.toString(16).padStart(2, '0')}`);
  const [dtype, size] = info;
  const ndim = buf[3] as number;
  if (ndim === 0) throw new Error(`${name}: IDX file declares 0 dimensions`);
  const headerLen = 4 + 4 * ndim;
  if (buf.length < headerLen) throw new Error(`${name}: truncated IDX header (${ndim} dims need ${headerLen} bytes)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const shape: number[] = [];
  let numel = 1;
  for (let d = 0; d < ndim; d++) {
    const s = dv.getUint32(4 + 4 * d, false);
    shape.push(s);
    numel *= s;
  }
  const want = numel * size;
  const have = buf.length - headerLen;
  if (want !== have) {
    throw new Error(
      `${name}: IDX shape [${shape.join(', ')}] ${dtype} needs ${want} data bytes but the file has ${have}${have < want ? ' (truncated)' : ''}`,
    );
  }
  let data: IdxData;
  switch (dtype) {
    case 'u8':
      data = new Uint8Array(buf.subarray(headerLen, headerLen + numel)); // a copy that owns its buffer
      break;
    case 'i8':
      data = new Int8Array(new Uint8Array(buf.subarray(headerLen, headerLen + numel)).buffer);
      break;
    case 'i16': {
      const a = new Int16Array(numel);
      for (let i = 0; i < numel; i++) a[i] = dv.getInt16(headerLen + 2 * i, false);
      data = a;
      break;
    }
    case 'i32': {
      const a = new Int32Array(numel);
      for (let i = 0; i < numel; i++) a[i] = dv.getInt32(headerLen + 4 * i, false);
      data = a;
      break;
    }
    case 'f32': {
      const a = new Float32Array(numel);
      for (let i = 0; i < numel; i++) a[i] = dv.getFloat32(headerLen + 4 * i, false);
      data = a;
      break;
    }
    case 'f64': {
      const a = new Float64Array(numel);
      for (let i = 0; i < numel; i++) a[i] = dv.getFloat64(headerLen + 8 * i, false);
      data = a;
      break;
    }
  }
  return { dtype, shape, data };
}

/** Reads an IDX file (.gz or plain, detected from the bytes). */
export function readIdx(path: string): IdxArray {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new Error(`IDX file ${path}: cannot read it (${(e as Error).message})`);
  }
  return parseIdx(buf, `IDX file ${path}`);
}

function dtypeOf(data: IdxData): IdxDType {
  if (data instanceof Uint8Array) return 'u8';
  if (data instanceof Int8Array) return 'i8';
  if (data instanceof Int16Array) return 'i16';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Float64Array) return 'f64';
  throw new TypeError('encodeIdx: data must be a Uint8/Int8/Int16/Int32/Float32/Float64Array');
}

/** Serialises to IDX bytes (gzip-compressed when opts.gzip). The dtype follows the array type. */
export function encodeIdx(arr: { shape: readonly number[]; data: IdxData }, opts: { gzip?: boolean } = {}): Buffer {
  const dtype = dtypeOf(arr.data);
  const shape = arr.shape;
  if (shape.length === 0 || shape.length > 255) throw new RangeError('encodeIdx: need 1 to 255 dimensions');
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel !== arr.data.length) {
    throw new RangeError(`encodeIdx: shape [${shape.join(', ')}] needs ${numel} values, got ${arr.data.length}`);
  }
  const size = arr.data.BYTES_PER_ELEMENT;
  const headerLen = 4 + 4 * shape.length;
  const out = Buffer.alloc(headerLen + numel * size);
  out[2] = CODE_OF[dtype];
  out[3] = shape.length;
  shape.forEach((s, d) => {
    if (!Number.isInteger(s) || s < 0 || s >= 2 ** 32) throw new RangeError(`encodeIdx: bad dim ${s}`);
    out.writeUInt32BE(s, 4 + 4 * d);
  });
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const d = arr.data;
  for (let i = 0; i < numel; i++) {
    const v = d[i] as number;
    const o = headerLen + i * size;
    switch (dtype) {
      case 'u8':
        dv.setUint8(o, v);
        break;
      case 'i8':
        dv.setInt8(o, v);
        break;
      case 'i16':
        dv.setInt16(o, v, false);
        break;
      case 'i32':
        dv.setInt32(o, v, false);
        break;
      case 'f32':
        dv.setFloat32(o, v, false);
        break;
      case 'f64':
        dv.setFloat64(o, v, false);
        break;
    }
  }
  return opts.gzip ? gzipSync(out) : out;
}

/** Writes an IDX file atomically (gzip-compressed when opts.gzip). */
export function writeIdx(
  path: string,
  arr: { shape: readonly number[]; data: IdxData },
  opts: { gzip?: boolean } = {},
): void {
  atomicWrite(path, [encodeIdx(arr, opts)]);
}
