// safetensors.ts: reader and writer of the safetensors format (8-byte LE header length, JSON
// header, little-endian row-major byte buffer). Files are untrusted input: the header is parsed
// by a strict, depth-bounded JSON parser and every offset, shape and dtype is checked before a
// byte is read. Writes are atomic (temp file, fsync, rename, fsync of the directory) and carry a
// sha256 of the data buffer in __metadata__ so corruption and truncation are reported.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { DType } from '../dtype.js';
import { tensor } from '../ops/creation.js';
import { cast } from '../ops/elementwise.js';
import { Tensor } from '../tensor.js';

/** Largest header accepted (as the reference implementation: 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;
/** A legal header nests 3 deep (root / entry / shape); anything past this bound is rejected. */
export const MAX_HEADER_DEPTH = 4;
/** The __metadata__ key holding the hex sha256 of the data buffer (written by saveSafetensors). */
export const CHECKSUM_KEY = 'crate.sha256';

/** Element size in bytes of every safetensors dtype. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
});

const OUT_DTYPE: Record<DType, string> = { f32: 'F32', f64: 'F64', i32: 'I32', bf16: 'BF16' };
const LITTLE_ENDIAN = endianness() === 'LE';

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

export interface LoadOptions {
  /** Convert every loaded float tensor to this dtype (integer tensors stay i32). */
  dtype?: 'f32' | 'f64';
  /** Check the data checksum when the file has one (default true). */
  verify?: boolean;
}

/** Header entry after validation. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

// ------------------------------------------------------------------ strict JSON
type Json = null | boolean | number | string | Json[] | JsonObject;
/** Objects are Maps: keys are data, never properties (no __proto__ games), and duplicates are seen. */
type JsonObject = Map<string, Json>;

class HeaderError extends Error {}

/**
 * A strict RFC 8259 parser for the header: rejects duplicate keys, nesting past `maxDepth`,
 * unpaired surrogates in escapes, and anything after the value except spaces (the padding).
 */
function parseHeaderJson(text: string, maxDepth: number): Json {
  let i = 0;
  const fail = (what: string): never => {
    throw new HeaderError(`invalid JSON header at character ${i}: ${what}`);
  };
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const parseString = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
            out += String.fromCharCode(Number.parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail(`bad escape \\${e ?? ''}`);
        }
        start = i;
        continue;
      }
      i++;
    }
  };
  const parseNumber = (): number => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) fail('bad number');
    const s = (m as RegExpExecArray)[0];
    i += s.length;
    return Number(s);
  };
  const parseValue = (depth: number): Json => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth >= maxDepth) throw new HeaderError(`header nests deeper than ${maxDepth} levels`);
    }
    if (c === '{') {
      i++;
      const obj: JsonObject = new Map();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const k = parseString();
        if (obj.has(k)) throw new HeaderError(`duplicate key ${JSON.stringify(k)} in header`);
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj.set(k, parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    return fail(c === undefined ? 'unexpected end' : `unexpected character ${JSON.stringify(c)}`);
  };
  const v = parseValue(0);
  ws();
  if (i !== text.length) fail('trailing characters after the header object');
  return v;
}

// ------------------------------------------------------------------ header validation
function describe(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'an object';
  return typeof v;
}

function isNonNegInt(v: Json): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

interface ParsedHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  headerLen: number;
}

/** Reads and validates the 8-byte length and the JSON header; entries are checked one by one. */
function parseHeader(buf: Uint8Array, fileLen: number): ParsedHeader {
  if (fileLen < 8) throw new HeaderError(`file is ${fileLen} bytes, too short for the 8-byte header length`);
  const dv = new DataView(buf.buffer, buf.byteOffset, Math.min(buf.byteLength, 8));
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    throw new HeaderError(`header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(n64);
  if (8 + n > fileLen) {
    throw new HeaderError(
      `header length ${n} runs past the end of the file (${fileLen} bytes): truncated or not safetensors`,
    );
  }
  if (n < 2) throw new HeaderError(`header length ${n} is too small for a JSON object`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(8, 8 + n));
  } catch {
    throw new HeaderError('header is not valid UTF-8');
  }
  if (text[0] !== '{') throw new HeaderError(`header must start with '{', got ${JSON.stringify(text.slice(0, 8))}`);
  const root = parseHeaderJson(text, MAX_HEADER_DEPTH);
  if (!(root instanceof Map)) throw new HeaderError(`header must be a JSON object, got ${describe(root)}`);

  const metadata: Record<string, string> = Object.create(null);
  const entries: SafetensorsEntry[] = [];
  for (const [name, v] of root) {
    if (name === '__metadata__') {
      if (!(v instanceof Map)) throw new HeaderError(`__metadata__ must be an object of strings, got ${describe(v)}`);
      for (const [k, s] of v) {
        if (typeof s !== 'string') {
          throw new HeaderError(`__metadata__[${JSON.stringify(k)}] must be a string, got ${describe(s)}`);
        }
        metadata[k] = s;
      }
      continue;
    }
    const at = `tensor ${JSON.stringify(name)}`;
    if (!(v instanceof Map)) throw new HeaderError(`${at}: entry must be an object, got ${describe(v)}`);
    const dtype = v.get('dtype');
    const shape = v.get('shape');
    const offs = v.get('data_offsets');
    if (typeof dtype !== 'string') throw new HeaderError(`${at}: 'dtype' must be a string`);
    const size = Object.hasOwn(SAFETENSORS_DTYPES, dtype) ? SAFETENSORS_DTYPES[dtype] : undefined;
    if (size === undefined) throw new HeaderError(`${at}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape)) throw new HeaderError(`${at}: 'shape' must be an array, got ${describe(shape ?? null)}`);
    if (!shape.every(isNonNegInt)) {
      throw new HeaderError(`${at}: shape must hold non-negative integers, got ${JSON.stringify(shape.map(String))}`);
    }
    if (shape.length > 16) throw new HeaderError(`${at}: ${shape.length} dimensions (at most 16 are supported)`);
    if (!Array.isArray(offs) || offs.length !== 2 || !isNonNegInt(offs[0] ?? null) || !isNonNegInt(offs[1] ?? null)) {
      throw new HeaderError(`${at}: 'data_offsets' must be [begin, end] non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new HeaderError(`${at}: data_offsets [${begin}, ${end}] end before they begin`);
    let numel = 1;
    for (const s of shape as number[]) numel *= s;
    const want = numel * size;
    if (!Number.isSafeInteger(want) || want !== end - begin) {
      throw new HeaderError(
        `${at}: shape [${shape.join(', ')}] ${dtype} needs ${want} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  return { entries, metadata, headerLen: n };
}

/** Offsets must tile [0, dataLen) exactly: in range, no overlap, no hole, nothing after. */
function checkLayout(entries: SafetensorsEntry[], dataLen: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.end > dataLen) {
      throw new HeaderError(
        `tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] are out of range: the data buffer has ${dataLen} bytes (truncated file?)`,
      );
    }
    if (e.begin < pos) {
      throw new HeaderError(
        `tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap another tensor`,
      );
    }
    if (e.begin > pos) {
      throw new HeaderError(
        `tensor ${JSON.stringify(e.name)}: data_offsets begin at ${e.begin} leaving a hole at [${pos}, ${e.begin})`,
      );
    }
    pos = e.end;
  }
  if (pos !== dataLen) {
    throw new HeaderError(`the header describes ${pos} data bytes but the data buffer has ${dataLen}`);
  }
}

function sha256Hex(parts: Iterable<Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

// ------------------------------------------------------------------ decoding values
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Little-endian bytes of one tensor → a typed array the tensor layer accepts. */
function decodeValues(e: SafetensorsEntry, bytes: Uint8Array): Float32Array | Float64Array | Int32Array {
  const n = bytes.byteLength / (SAFETENSORS_DTYPES[e.dtype] as number);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = `tensor ${JSON.stringify(e.name)}`;
  switch (e.dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      const out = new Float64Array(n);
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    case 'I32': {
      const out = new Int32Array(n);
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      return out;
    }
    case 'BF16': {
      const u = new Uint32Array(n);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return new Float32Array(u.buffer);
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return out;
    }
    case 'BOOL':
    case 'U8':
      return Int32Array.from(bytes);
    case 'I8':
      return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
      return out;
    }
    case 'I16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true);
      return out;
    }
    case 'U32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = dv.getUint32(4 * i, true);
        if (v > 0x7fffffff) throw new HeaderError(`${at}: U32 value ${v} at index ${i} does not fit in i32`);
        out[i] = v;
      }
      return out;
    }
    case 'I64':
    case 'U64': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = e.dtype === 'I64' ? dv.getBigInt64(8 * i, true) : dv.getBigUint64(8 * i, true);
        if (v < -2147483648n || v > 2147483647n) {
          throw new HeaderError(`${at}: ${e.dtype} value ${v} at index ${i} does not fit in i32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    default:
      throw new HeaderError(`${at}: dtype ${e.dtype} is valid safetensors but crate-ml cannot load it`);
  }
}

function decodeInto(buf: Uint8Array, where: string, opts: LoadOptions): SafetensorsFile {
  const made: Tensor[] = [];
  try {
    const { entries, metadata, headerLen } = parseHeader(buf, buf.byteLength);
    const data = buf.subarray(8 + headerLen);
    const expected = metadata[CHECKSUM_KEY];
    if (expected !== undefined && opts.verify !== false) {
      const got = sha256Hex([data]);
      if (got !== expected.toLowerCase()) {
        const described = entries.reduce((m, e) => Math.max(m, e.end), 0);
        throw new HeaderError(
          `checksum mismatch: the file is corrupt or truncated (sha256 of the ${data.byteLength}-byte data buffer is ${got.slice(0, 16)}…, expected ${expected.slice(0, 16)}…; the header describes ${described} bytes)`,
        );
      }
    }
    checkLayout(entries, data.byteLength);
    const tensors: Record<string, Tensor> = Object.create(null);
    for (const e of entries) {
      const vals = decodeValues(e, data.subarray(e.begin, e.end));
      let t = tensor(vals, { shape: e.shape });
      made.push(t);
      if (opts.dtype && t.dtype !== 'i32' && t.dtype !== opts.dtype) {
        const c = cast(t, opts.dtype);
        made.push(c);
        t.dispose();
        t = c;
      }
      tensors[e.name] = t;
    }
    return { tensors: { ...tensors }, metadata: { ...metadata } };
  } catch (err) {
    for (const t of made) t.dispose();
    if (err instanceof HeaderError) throw new Error(`${where}: ${err.message}`);
    throw err;
  }
}

/** Parses a safetensors byte buffer (validated like a file; see loadSafetensors). */
export function decodeSafetensors(buf: Uint8Array, opts: LoadOptions = {}): SafetensorsFile {
  return decodeInto(buf, 'decodeSafetensors', opts);
}

/** Validates and lists a file's entries and metadata without creating tensors. */
export function inspectSafetensors(path: string): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  const buf = readWhole(path);
  try {
    const { entries, metadata, headerLen } = parseHeader(buf, buf.byteLength);
    checkLayout(entries, buf.byteLength - 8 - headerLen);
    return { entries, metadata: { ...metadata } };
  } catch (err) {
    if (err instanceof HeaderError) throw new Error(`safetensors file ${path}: ${err.message}`);
    throw err;
  }
}

function readWhole(path: string): Buffer {
  let size: number;
  try {
    size = fs.statSync(path).size;
  } catch (e) {
    throw new Error(`safetensors file ${path}: cannot read it (${(e as Error).message})`);
  }
  // 2^31 - 1 bytes is what one readFileSync can return on every platform Node supports.
  if (size > 2 ** 31 - 1) throw new Error(`safetensors file ${path}: ${size} bytes is larger than the 2 GiB supported`);
  return fs.readFileSync(path);
}

/**
 * Loads a safetensors file. The file is untrusted: a bad header length, non-UTF-8 or invalid
 * JSON, deep nesting, unknown dtypes, shape/byte mismatches, out-of-range, overlapping or
 * non-covering offsets, duplicate keys and bad shapes are errors naming the file. With a
 * checksum in __metadata__ (and verify !== false) the data is verified first. F32/F64/I32 load
 * natively, BF16/F16 as f32, integer types as i32 (when every value fits).
 */
export function loadSafetensors(path: string, opts: LoadOptions = {}): SafetensorsFile {
  return decodeInto(readWhole(path), `safetensors file ${path}`, opts);
}

// ------------------------------------------------------------------ encoding
interface Prepared {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

function tensorBytes(t: Tensor): Uint8Array {
  const d = t.dataSync();
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  if (LITTLE_ENDIAN || d.BYTES_PER_ELEMENT === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  const k = d.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += k) for (let j = 0; j < k; j++) out[i + j] = bytes[i + k - 1 - j] as number;
  return out;
}

function checkInputs(where: string, tensors: Record<string, Tensor>, metadata: Record<string, string>): string[] {
  if (tensors === null || typeof tensors !== 'object') throw new TypeError(`${where}: tensors must be an object`);
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === '__metadata__') throw new Error(`${where}: '__metadata__' is reserved and cannot name a tensor`);
    const t = tensors[name];
    if (!(t instanceof Tensor)) throw new TypeError(`${where}: ${JSON.stringify(name)} is not a Tensor`);
    t._h(where);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new TypeError(`${where}: metadata[${JSON.stringify(k)}] must be a string`);
  }
  return names;
}

/** Lays tensors out largest element size first (each stays aligned to its size), then by name. */
function layout(names: string[], tensors: Record<string, Tensor>): { name: string; t: Tensor; size: number }[] {
  return names
    .map((name) => {
      const t = tensors[name] as Tensor;
      return { name, t, size: SAFETENSORS_DTYPES[OUT_DTYPE[t.dtype]] as number };
    })
    .sort((a, b) => b.size - a.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function buildHeader(
  parts: { name: string; dtype: string; shape: number[]; n: number }[],
  meta: Record<string, string>,
) {
  const header: Record<string, unknown> = { __metadata__: meta };
  let off = 0;
  for (const p of parts) {
    header[p.name] = { dtype: p.dtype, shape: p.shape, data_offsets: [off, off + p.n] };
    off += p.n;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  return out;
}

function prepare(where: string, tensors: Record<string, Tensor>, metadata: Record<string, string>) {
  const names = checkInputs(where, tensors, metadata);
  const parts: Prepared[] = layout(names, tensors).map(({ name, t }) => ({
    name,
    dtype: OUT_DTYPE[t.dtype],
    shape: [...t.shape],
    bytes: tensorBytes(t),
  }));
  const meta: Record<string, string> = {
    ...metadata,
    format: metadata.format ?? 'pt',
    [CHECKSUM_KEY]: sha256Hex(parts.map((p) => p.bytes)),
  };
  const head = buildHeader(
    parts.map((p) => ({ name: p.name, dtype: p.dtype, shape: p.shape, n: p.bytes.byteLength })),
    meta,
  );
  return { head, parts };
}

/**
 * Serialises tensors to safetensors bytes: the header is padded with spaces so the data starts
 * 8-byte aligned; __metadata__ holds the given metadata plus format "pt" and the data sha256.
 */
export function encodeSafetensors(tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const { head, parts } = prepare('encodeSafetensors', tensors, metadata);
  return Buffer.concat([head, ...parts.map((p) => p.bytes)]);
}

/**
 * Writes tensors to `path` atomically: the bytes go to `path.tmp-<pid>-<rand>` in the same
 * directory, which is fsynced and renamed over `path`, then the directory is fsynced. A crash at
 * any point leaves either the previous file or the complete new one.
 */
export function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
): void {
  const { head, parts } = prepare('saveSafetensors', tensors, metadata);
  atomicWrite(path, [head, ...parts.map((p) => p.bytes)]);
}

/** Writes `chunks` to `path` through a synced temporary file and a rename (see saveSafetensors). */
export function atomicWrite(path: string, chunks: Iterable<Uint8Array>): void {
  const dir = dirname(path);
  const tmp = join(dir, `${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  let fd: number | null = fs.openSync(tmp, 'wx', 0o644);
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += fs.writeSync(fd, c, off, c.byteLength - off);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {}
    }
    try {
      fs.unlinkSync(tmp);
    } catch {}
    throw e;
  }
  syncDir(dir);
}

function syncDir(dir: string): void {
  let dfd: number | null = null;
  try {
    dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
  } catch {
    // Directories cannot be opened or fsynced on some platforms (Windows); the rename stands.
  } finally {
    if (dfd !== null) fs.closeSync(dfd);
  }
}
