// cifar.ts: readers of the CIFAR-10 (1 label byte + 3072 pixel bytes per record) and CIFAR-100
// (coarse label, fine label, 3072 pixel bytes) binary versions. Pixels are stored channel-major
// (1024 R, 1024 G, 1024 B, rows of 32), i.e. already CHW [3, 32, 32].
import { readFileSync } from 'node:fs';
import { TensorDataset } from './dataset.js';

export const CIFAR_PIXELS = 3 * 32 * 32;
export const CIFAR_SAMPLE_SHAPE: readonly number[] = Object.freeze([3, 32, 32]);

export interface Cifar10 {
  n: number;
  /** n x 3072 uint8 pixels (CHW per image). */
  images: Uint8Array;
  labels: Uint8Array;
}
export interface Cifar100 {
  n: number;
  images: Uint8Array;
  coarseLabels: Uint8Array;
  fineLabels: Uint8Array;
}

function records(buf: Uint8Array, rec: number, name: string, what: string): number {
  if (buf.length === 0 || buf.length % rec !== 0) {
    throw new Error(
      `${name}: ${buf.length} bytes is not a whole number of ${what} records (${rec} bytes each)${buf.length % rec ? '; truncated or not a binary batch' : ''}`,
    );
  }
  return buf.length / rec;
}

/** Parses one CIFAR-10 binary batch (data_batch_N.bin / test_batch.bin). */
export function parseCifar10(buf: Uint8Array, name = 'CIFAR-10 buffer'): Cifar10 {
  const rec = 1 + CIFAR_PIXELS;
  const n = records(buf, rec, name, 'CIFAR-10');
  const images = new Uint8Array(n * CIFAR_PIXELS);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * rec;
    const y = buf[o] as number;
    if (y >= 10) throw new Error(`${name}: record ${i} has label ${y}, CIFAR-10 labels are 0..9`);
    labels[i] = y;
    images.set(buf.subarray(o + 1, o + rec), i * CIFAR_PIXELS);
  }
  return { n, images, labels };
}

/** Parses one CIFAR-100 binary file (train.bin / test.bin). */
export function parseCifar100(buf: Uint8Array, name = 'CIFAR-100 buffer'): Cifar100 {
  const rec = 2 + CIFAR_PIXELS;
  const n = records(buf, rec, name, 'CIFAR-100');
  const images = new Uint8Array(n * CIFAR_PIXELS);
  const coarseLabels = new Uint8Array(n);
  const fineLabels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * rec;
    const c = buf[o] as number;
    const f = buf[o + 1] as number;
    if (c >= 20) throw new Error(`${name}: record ${i} has coarse label ${c}, CIFAR-100 coarse labels are 0..19`);
    if (f >= 100) throw new Error(`${name}: record ${i} has fine label ${f}, CIFAR-100 fine labels are 0..99`);
    coarseLabels[i] = c;
    fineLabels[i] = f;
    images.set(buf.subarray(o + 2, o + rec), i * CIFAR_PIXELS);
  }
  return { n, images, coarseLabels, fineLabels };
}

function read(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`CIFAR file ${path}: cannot read it (${(e as Error).message})`);
  }
}

function concatU8(arrs: Uint8Array[]): Uint8Array {
  const a = new Uint8Array(arrs.reduce((s, x) => s + x.length, 0));
  let o = 0;
  for (const x of arrs) {
    a.set(x, o);
    o += x.length;
  }
  return a;
}

/** Reads and concatenates CIFAR-10 batch files (e.g. data_batch_1.bin ... data_batch_5.bin). */
export function readCifar10(paths: string | readonly string[]): Cifar10 {
  const list = typeof paths === 'string' ? [paths] : paths;
  const parts = list.map((p) => parseCifar10(read(p), `CIFAR-10 file ${p}`));
  return {
    n: parts.reduce((s, p) => s + p.n, 0),
    images: concatU8(parts.map((p) => p.images)),
    labels: concatU8(parts.map((p) => p.labels)),
  };
}

/** Reads and concatenates CIFAR-100 files. */
export function readCifar100(paths: string | readonly string[]): Cifar100 {
  const list = typeof paths === 'string' ? [paths] : paths;
  const parts = list.map((p) => parseCifar100(read(p), `CIFAR-100 file ${p}`));
  return {
    n: parts.reduce((s, p) => s + p.n, 0),
    images: concatU8(parts.map((p) => p.images)),
    coarseLabels: concatU8(parts.map((p) => p.coarseLabels)),
    fineLabels: concatU8(parts.map((p) => p.fineLabels)),
  };
}

/** A dataset of uint8 [3, 32, 32] images and their labels (CIFAR-100: fine labels unless `coarse`). */
export function cifarDataset(data: Cifar10 | Cifar100, opts: { coarse?: boolean } = {}): TensorDataset {
  const labels = 'labels' in data ? data.labels : opts.coarse ? data.coarseLabels : data.fineLabels;
  return new TensorDataset(data.images, labels, CIFAR_SAMPLE_SHAPE);
}
