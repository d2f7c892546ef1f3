// safetensors.test.ts: round trips, a hand-made spec file, every malformed-header case, checksum
// detection of truncation and bit flips, and atomic writes (a writer killed with SIGKILL mid-save,
// and failures injected into the write path) that leave the previous file intact.
import { spawn } from 'node:child_process';
import fs, { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import * as C from '../ts/index.js';
import {
  CHECKSUM_KEY,
  decodeSafetensors,
  encodeSafetensors,
  inspectSafetensors,
  loadSafetensors,
  saveSafetensors,
} from '../ts/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'crate-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** A file from a header object (or raw header text) and data bytes, with the 8-byte length prefix. */
function craft(
  header: unknown,
  data: Uint8Array | number[] = [],
  opts: { raw?: Uint8Array; len?: bigint } = {},
): Buffer {
  const h = opts.raw ?? Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.len ?? BigInt(h.length));
  return Buffer.concat([len, h, Buffer.from(data)]);
}

function values(t: C.Tensor): number[] {
  return Array.from(t.dataSync());
}

describe('round trip', () => {
  test('f32, f64, i32, 0-d and empty tensors with metadata', () => {
    const before = C.memory().numTensors;
    const src = {
      w: C.tensor(
        [
          [1.5, -2, 3.25],
          [4, 5, 6e-8],
        ],
        { dtype: 'f32' },
      ),
      d: C.tensor([Math.PI, -1e300, 5e-324], { dtype: 'f64' }),
      ids: C.tensor([0, -1, 2147483647, -2147483648], { dtype: 'i32' }),
      scalar: C.tensor(7.25, { dtype: 'f64' }),
      empty: C.zeros([0, 3]),
      'odd name/with.dots': C.tensor([1], { dtype: 'i32' }),
    };
    const path = join(dir, 'rt.safetensors');
    saveSafetensors(path, src, { epoch: '3' });
    const { tensors, metadata } = loadSafetensors(path);
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(src).sort());
    for (const [k, t] of Object.entries(src)) {
      const u = tensors[k] as C.Tensor;
      expect(u.shape).toEqual(t.shape);
      expect(u.dtype).toBe(t.dtype);
      expect(values(u)).toEqual(values(t));
    }
    expect(metadata.epoch).toBe('3');
    expect(metadata.format).toBe('pt');
    expect(metadata[CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
    // Data starts 8-byte aligned; every tensor is aligned to its element size.
    const buf = readFileSync(path);
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    for (const e of inspectSafetensors(path).entries) expect(e.begin % (e.dtype === 'F64' ? 8 : 4)).toBe(0);
    // encode / decode agree with the file.
    expect(Buffer.compare(encodeSafetensors(src, { epoch: '3' }), buf)).toBe(0);
    const dec = decodeSafetensors(buf);
    expect(values(dec.tensors.w as C.Tensor)).toEqual(values(src.w));
    for (const t of [...Object.values(src), ...Object.values(tensors), ...Object.values(dec.tensors)]) t.dispose();
    expect(C.memory().numTensors).toBe(before);
  });

  test('dtype conversion on load', () => {
    const path = join(dir, 'conv.safetensors');
    const a = C.tensor([1.5, 2.5], { dtype: 'f64' });
    const i = C.tensor([3], { dtype: 'i32' });
    saveSafetensors(path, { a, i });
    const { tensors } = loadSafetensors(path, { dtype: 'f32' });
    expect(tensors.a?.dtype).toBe('f32');
    expect(values(tensors.a as C.Tensor)).toEqual([1.5, 2.5]);
    expect(tensors.i?.dtype).toBe('i32');
  });
});

describe('hand-made files following the spec', () => {
  test('F32, BF16, F16, I64, U8, BOOL, I8 entries and padded header parse', () => {
    const data = new Uint8Array(64);
    const dv = new DataView(data.buffer);
    for (const [k, v] of [1, -2.5, 3, 0.125].entries()) dv.setFloat32(4 * k, v, true); // a: [0, 16)
    dv.setBigInt64(16, -5n, true); // c: [16, 32)
    dv.setBigInt64(24, 2147483647n, true);
    dv.setUint16(32, 0x3fc0, true); // b: BF16 1.5 [32, 36)
    dv.setUint16(34, 0xc000, true); // BF16 -2
    dv.setUint16(36, 0x3c00, true); // h: F16 1 [36, 42)
    dv.setUint16(38, 0xb800, true); // F16 -0.5
    dv.setUint16(40, 0x0001, true); // F16 smallest subnormal 2^-24
    data.set([200, 7], 42); // u: U8 [42, 44)
    data.set([1, 0], 44); // m: BOOL [44, 46)
    data.set([0xff, 0x80], 46); // s: I8 [46, 48) = -1, -128
    const header = {
      a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
      c: { dtype: 'I64', shape: [2], data_offsets: [16, 32] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [32, 36] },
      h: { dtype: 'F16', shape: [3], data_offsets: [36, 42] },
      u: { dtype: 'U8', shape: [2], data_offsets: [42, 44] },
      m: { dtype: 'BOOL', shape: [2], data_offsets: [44, 46] },
      s: { dtype: 'I8', shape: [2, 1], data_offsets: [46, 48] },
      e: { dtype: 'F32', shape: [0], data_offsets: [48, 48] },
      z: { dtype: 'F32', shape: [], data_offsets: [48, 52] },
      __metadata__: { source: 'hand' },
    };
    dv.setFloat32(48, 9, true);
    const text = `${JSON.stringify(header)}       `; // right-padded with spaces, as the spec allows
    const file = join(dir, 'hand.safetensors');
    writeFileSync(file, craft(text, data.subarray(0, 52)));
    const { tensors, metadata } = loadSafetensors(file);
    expect(metadata).toEqual({ source: 'hand' });
    expect(tensors.a?.shape).toEqual([2, 2]);
    expect(values(tensors.a as C.Tensor)).toEqual([1, -2.5, 3, 0.125]);
    expect(tensors.c?.dtype).toBe('i32');
    expect(values(tensors.c as C.Tensor)).toEqual([-5, 2147483647]);
    expect(tensors.b?.dtype).toBe('f32');
    expect(values(tensors.b as C.Tensor)).toEqual([1.5, -2]);
    expect(values(tensors.h as C.Tensor)).toEqual([1, -0.5, 2 ** -24]);
    expect(values(tensors.u as C.Tensor)).toEqual([200, 7]);
    expect(values(tensors.m as C.Tensor)).toEqual([1, 0]);
    expect(values(tensors.s as C.Tensor)).toEqual([-1, -128]);
    expect(tensors.e?.shape).toEqual([0]);
    expect(tensors.z?.shape).toEqual([]);
    expect(tensors.z?.item()).toBe(9);
  });

  test('the byte layout written matches the spec exactly', () => {
    const t = C.tensor([1, 2], { dtype: 'f32' });
    const buf = encodeSafetensors({ x: t });
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    expect(header.x).toEqual({ dtype: 'F32', shape: [2], data_offsets: [0, 8] });
    expect(buf.subarray(8 + n).equals(Buffer.from(new Float32Array([1, 2]).buffer))).toBe(true);
    expect(
      buf
        .subarray(8, 8 + n)
        .toString()
        .trimEnd()
        .endsWith('}'),
    ).toBe(true);
  });
});

describe('untrusted files are rejected with a clear error', () => {
  const f32 = (shape: number[], offs: number[]) => ({ dtype: 'F32', shape, data_offsets: offs });
  const cases: [string, Buffer, RegExp][] = [
    ['empty file', Buffer.alloc(0), /too short/],
    ['header length past the end', craft({}, [], { len: 1000n }), /past the end of the file/],
    ['header length over 100 MB', craft({}, [], { len: 100_000_001n }), /exceeds the 100000000-byte limit/],
    ['header length 2^63', craft({}, [], { len: 2n ** 63n }), /exceeds/],
    ['non-UTF-8 header', craft(null, [], { raw: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) }), /not valid UTF-8/],
    ['invalid JSON', craft('{"a": {"dtype": "F32",'), /invalid JSON header/],
    ['trailing garbage', craft('{} x'), /trailing characters/],
    ['not an object', craft('[1, 2]'), /must start with '\{'/],
    ['entry not an object', craft({ a: 5 }), /entry must be an object/],
    ['metadata not strings', craft({ __metadata__: { a: 1 } }), /must be a string/],
    ['nested too deep', craft({ __metadata__: { a: { b: { c: {} } } } }), /nests deeper than 4/],
    ['very deep nesting', craft(`{"a":${'['.repeat(100000)}`), /nests deeper/],
    [
      'unknown dtype',
      craft({ a: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)),
      /unknown dtype "F128"/,
    ],
    [
      'shape/bytes mismatch',
      craft({ a: f32([3], [0, 8]) }, new Uint8Array(8)),
      /needs 12 bytes but data_offsets \[0, 8\] hold 8/,
    ],
    ['offsets out of range', craft({ a: f32([4], [0, 16]) }, new Uint8Array(8)), /out of range/],
    ['end before begin', craft({ a: f32([0], [8, 4]) }, new Uint8Array(8)), /end before they begin/],
    ['overlapping offsets', craft({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, new Uint8Array(12)), /overlap/],
    [
      'hole between tensors',
      craft({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Uint8Array(12)),
      /hole at \[4, 8\)/,
    ],
    [
      'bytes after the last tensor',
      craft({ a: f32([1], [0, 4]) }, new Uint8Array(8)),
      /describes 4 data bytes but the data buffer has 8/,
    ],
    [
      'duplicate keys',
      craft(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        new Uint8Array(4),
      ),
      /duplicate key "a"/,
    ],
    ['negative shape', craft({ a: f32([-1], [0, 0]) }), /non-negative integers/],
    ['fractional shape', craft({ a: f32([1.5], [0, 6]) }, new Uint8Array(6)), /non-negative integers/],
    [
      'string shape',
      craft({ a: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, new Uint8Array(8)),
      /'shape' must be an array/,
    ],
    ['huge shape', craft({ a: f32([2 ** 40, 2 ** 40], [0, 4]) }, new Uint8Array(4)), /needs .* bytes/],
    ['bad offsets', craft({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, new Uint8Array(4)), /data_offsets/],
    [
      'I64 out of i32 range',
      craft({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, [0, 0, 0, 0, 1, 0, 0, 0]),
      /does not fit in i32/,
    ],
    ['unsupported F8', craft({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, [1]), /cannot load/],
  ];
  test.each(cases)('%s', (_name, buf, msg) => {
    const before = C.memory().numTensors;
    const file = join(dir, 'bad.safetensors');
    writeFileSync(file, buf);
    let err: Error | null = null;
    try {
      loadSafetensors(file);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toContain(file);
    expect(err?.message).toMatch(msg);
    expect(C.memory().numTensors).toBe(before);
  });

  test('a header key named __proto__ is data, not a prototype', () => {
    const file = join(dir, 'proto.safetensors');
    writeFileSync(file, craft('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)));
    const { tensors } = loadSafetensors(file);
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(tensors)).toBe(Object.prototype);
  });

  test('a missing file names the file', () => {
    expect(() => loadSafetensors(join(dir, 'nope.safetensors'))).toThrow(/nope\.safetensors: cannot read it/);
  });
});

describe('checksum', () => {
  const make = (name: string) => {
    const path = join(dir, name);
    const t = C.arange(0, 64, 1, { dtype: 'f32' });
    saveSafetensors(path, { t });
    t.dispose();
    return path;
  };
  test('a truncated file is detected', () => {
    const path = make('trunc.safetensors');
    const buf = readFileSync(path);
    writeFileSync(path, buf.subarray(0, buf.length - 5));
    expect(() => loadSafetensors(path)).toThrow(/checksum mismatch: the file is corrupt or truncated/);
    // Without verification the layout check still refuses it.
    expect(() => loadSafetensors(path, { verify: false })).toThrow(/out of range/);
  });
  test('a flipped data bit is detected', () => {
    const path = make('flip.safetensors');
    const buf = readFileSync(path);
    buf[buf.length - 10] = (buf[buf.length - 10] as number) ^ 0x04;
    writeFileSync(path, buf);
    expect(() => loadSafetensors(path)).toThrow(/checksum mismatch: the file is corrupt or truncated/);
    const { tensors } = loadSafetensors(path, { verify: false });
    expect(values(tensors.t as C.Tensor)).not.toEqual(Array.from({ length: 64 }, (_, i) => i));
  });
});

describe('atomic writes', () => {
  const v1 = () => ({ w: C.full([1000], 1) });
  const v2 = () => ({ w: C.full([1000], 2) });
  const first = (path: string) => (loadSafetensors(path).tensors.w as C.Tensor).dataSync()[0];
  const tmpFiles = (d: string) => readdirSync(d).filter((f) => f.includes('.tmp-'));

  test('a failure half-way through writing leaves the previous file and no temp file', () => {
    const d = mkdtempSync(join(dir, 'a-'));
    const path = join(d, 'ckpt.safetensors');
    saveSafetensors(path, v1());
    let calls = 0;
    const real = fs.writeSync;
    vi.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      if (++calls > 1) throw new Error('disk full (injected)');
      const [fd, buf, off, len] = args as [number, Uint8Array, number, number];
      return real(fd, buf, off, Math.ceil(len / 2)); // a short write, then the failure
    }) as typeof fs.writeSync);
    expect(() => saveSafetensors(path, v2())).toThrow(/disk full/);
    vi.restoreAllMocks();
    expect(first(path)).toBe(1);
    expect(tmpFiles(d)).toEqual([]);
  });

  test('a crash before the rename leaves the previous file', () => {
    const d = mkdtempSync(join(dir, 'b-'));
    const path = join(d, 'ckpt.safetensors');
    saveSafetensors(path, v1());
    vi.spyOn(fs, 'renameSync').mockImplementation(() => {
      throw new Error('power cut (injected)');
    });
    expect(() => saveSafetensors(path, v2())).toThrow(/power cut/);
    vi.restoreAllMocks();
    expect(first(path)).toBe(1);
    saveSafetensors(path, v2());
    expect(first(path)).toBe(2);
  });

  test('the file and its directory are fsynced, then the temp file is renamed', () => {
    const d = mkdtempSync(join(dir, 'c-'));
    const path = join(d, 'ckpt.safetensors');
    const events: string[] = [];
    const realFsync = fs.fsyncSync;
    const realRename = fs.renameSync;
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      events.push('fsync');
      realFsync(fd);
    });
    vi.spyOn(fs, 'renameSync').mockImplementation((a, b) => {
      events.push(`rename ${String(a).replace(d, '')} -> ${String(b).replace(d, '')}`);
      realRename(a, b);
    });
    saveSafetensors(path, v1());
    expect(events[0]).toBe('fsync');
    expect(events[1]).toMatch(/^rename \/ckpt\.safetensors\.tmp-\d+-[0-9a-f]+ -> \/ckpt\.safetensors$/);
    expect(events[2]).toBe('fsync');
  });

  test('a writer killed with SIGKILL mid-save leaves a loadable file', async () => {
    const d = mkdtempSync(join(dir, 'k-'));
    const path = join(d, 'ckpt.safetensors');
    saveSafetensors(path, v1());
    // The child runs the TypeScript sources through a transpiling module hook.
    const hooks = `
      import { readFileSync } from 'node:fs'; import { fileURLToPath } from 'node:url'; import { createRequire } from 'node:module';
      const ts = createRequire(${JSON.stringify(pathToFileURL(join(process.cwd(), 'package.json')).href)})('typescript');
      export async function resolve(s, c, n) { try { return await n(s, c); } catch (e) {
        if (s.endsWith('.js') && c.parentURL?.endsWith('.ts')) return n(s.slice(0, -3) + '.ts', c); throw e; } }
      export async function load(u, c, n) { if (!u.endsWith('.ts')) return n(u, c);
        const f = fileURLToPath(u);
        return { format: 'module', shortCircuit: true, source: ts.transpileModule(readFileSync(f, 'utf8'),
          { fileName: f, compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText }; }`;
    const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));`;
    const indexUrl = pathToFileURL(join(process.cwd(), 'ts/index.ts')).href;
    const stUrl = pathToFileURL(join(process.cwd(), 'ts/io/safetensors.ts')).href;
    const script = `
      const C = await import(${JSON.stringify(indexUrl)});
      const { saveSafetensors } = await import(${JSON.stringify(stUrl)});
      const big = C.full([24 * 1024 * 1024], 2); // 96 MB per save
      process.stdout.write('ready\\n');
      for (;;) saveSafetensors(${JSON.stringify(path)}, { w: big });`;
    const child = spawn(
      process.execPath,
      ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', script],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: process.env,
      },
    );
    let stderr = '';
    child.stderr.on('data', (b) => {
      stderr += String(b);
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b) => {
        if (String(b).includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
    });
    // Kill it while a temp file is being written (polling until one exists, part-written).
    const t0 = Date.now();
    let sawPartial = false;
    while (Date.now() - t0 < 20000) {
      const tmp = tmpFiles(d)[0];
      if (tmp) {
        try {
          const size = fs.statSync(join(d, tmp)).size;
          if (size > 0 && size < 24 * 1024 * 1024 * 4) {
            sawPartial = true;
            break;
          }
        } catch {}
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(sawPartial).toBe(true);
    // The target is the old file or a complete new one, never a torn one; it verifies.
    const { tensors } = loadSafetensors(path);
    const w = tensors.w as C.Tensor;
    expect([1000, 24 * 1024 * 1024]).toContain(w.numel);
    expect(tmpFiles(d).length).toBeLessThanOrEqual(1); // a killed writer cannot clean up its temp file
  }, 60_000);
});
