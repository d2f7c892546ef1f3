// native.ts: loads the C++ addon (prebuild or local build via node-gyp-build) and types it.
// If nothing loads, the error lists every place that was tried and what to do next.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MemoryInfo } from './memory.js';

/** A native buffer handle. Only the tensor layer creates and disposes these. */
export interface NativeStorage {
  dispose(): void;
  readonly disposed: boolean;
  readonly byteLength: number;
}

export interface NativeInfo {
  version: string;
  cudaCompiled: boolean;
  cudaLibrary: string | null;
  cudaAvailable: boolean;
  cudaReason: string | null;
  cuda?: {
    deviceCount: number;
    driverVersion: number;
    runtimeVersion: number;
    compiledArchs: string;
    name?: string;
    computeCapability?: string;
    smCount?: number;
    totalMemory?: number;
  };
  blasLibrary: string | null;
  blasReason: string | null;
  gemmBackend: 'own' | 'blas';
  /** the build the vectorised CPU kernels run: AVX2+FMA, or 16-byte vectors (also with CRATE_CPU_VECTOR=generic) */
  cpuVector: 'avx2' | 'generic';
  threads: number;
}

type S = NativeStorage;
type Nullable<T> = T | null;

/** The raw addon. Shapes/strides are element counts; outputs are preallocated by the caller. */
export interface NativeAddon {
  info(): NativeInfo;
  memory(): { cpu: MemoryInfo['cpu']; cuda: MemoryInfo['cuda'] };
  setNumThreads(n: number): number;
  setGemmBackend(b: 'own' | 'blas'): void;
  empty(dtype: number, numel: number, zero: boolean, device?: number): S;
  fromBuffer(dtype: number, data: ArrayBufferView, device?: number): S;
  read(x: S): ArrayBuffer;
  readAsync(x: S): Promise<ArrayBuffer>;
  synchronize(): void;
  setAllowTF32(on: boolean): void;
  fill(out: S, value: number): void;
  arange(out: S, start: number, step: number): void;
  random(out: S, kind: number, seed: number, offset: number, a: number, b: number): void;
  unary(op: number, x: S, out: S, alpha: number, beta: number): void;
  unaryBackward(op: number, x: Nullable<S>, y: Nullable<S>, g: S, out: S, alpha: number, beta: number): void;
  binary(op: number, a: S, aStr: number[], b: S, bStr: number[], out: S, shape: number[]): void;
  where(c: S, cStr: number[], a: S, aStr: number[], b: S, bStr: number[], out: S, shape: number[]): void;
  cast(x: S, out: S): void;
  findNonFinite(x: S): number;
  reduce(op: number, x: S, shape: number[], reduced: number[], out: S): void;
  stridedCopy(
    src: S,
    srcOff: number,
    srcStr: number[],
    dst: S,
    dstOff: number,
    dstStr: number[],
    shape: number[],
    accumulate: boolean,
  ): void;
  /** checked (default true): report an out-of-range index (on CUDA one host wait); false: the caller validated. */
  gather(x: S, idx: S, out: S, outer: number, dim: number, inner: number, k: number, checked?: boolean): void;
  indexAdd(g: S, idx: S, dx: S, outer: number, dim: number, inner: number, k: number): void;
  matmulBf16(
    a: S,
    b: S,
    out: S,
    batchShape: number[],
    aBStr: number[],
    bBStr: number[],
    M: number,
    N: number,
    K: number,
    transA: boolean,
    transB: boolean,
  ): void;
  matmul(
    a: S,
    b: S,
    out: S,
    batchShape: number[],
    aBStr: number[],
    bBStr: number[],
    M: number,
    N: number,
    K: number,
    transA: boolean,
    transB: boolean,
  ): void;
  softmax(x: S, out: S, rows: number, cols: number, log: boolean): void;
  softmaxBackward(y: S, g: S, out: S, rows: number, cols: number, log: boolean): void;
  layerNorm(
    x: S,
    w: Nullable<S>,
    b: Nullable<S>,
    y: S,
    mean: S,
    rstd: S,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  layerNormBackward(
    x: S,
    w: Nullable<S>,
    mean: S,
    rstd: S,
    g: S,
    dx: S,
    dw: Nullable<S>,
    db: Nullable<S>,
    rows: number,
    cols: number,
  ): void;
  crossEntropy(
    logits: S,
    target: S,
    lossRow: S,
    lse: S,
    rows: number,
    classes: number,
    smoothing: number,
    ignoreIndex: number,
    countToHost: boolean,
  ): number;
  crossEntropyBackward(
    logits: S,
    target: S,
    lse: S,
    gRow: S,
    out: S,
    rows: number,
    classes: number,
    smoothing: number,
    ignoreIndex: number,
  ): void;
  // biome-ignore lint/suspicious/noExplicitAny: CRATE kernel entry points are typed in ops/crate.ts
  [crateOp: string]: any;
}

/** The package root (where package.json and build/ live). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return dirname(dirname(fileURLToPath(import.meta.url)));
})();

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  const override = process.env.CRATE_ADDON_PATH;
  if (override) {
    try {
      return require(override) as NativeAddon;
    } catch (e) {
      attempts.push(`CRATE_ADDON_PATH=${override}: ${(e as Error).message}`);
    }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    const path = nodeGypBuild.resolve(packageRoot);
    try {
      return require(path) as NativeAddon;
    } catch (e) {
      attempts.push(`${path}: ${(e as Error).message}`);
    }
  } catch (e) {
    attempts.push(`node-gyp-build (build/Release, build/Debug, prebuilds/): ${(e as Error).message}`);
  }
  throw new Error(
    [
      `crate: could not load the native addon (${process.platform}-${process.arch}, node ${process.version}, N-API 8).`,
      'Tried:',
      ...attempts.map((a) => `  - ${a}`),
      'To fix: run `npm run build:native` (needs cmake and a C++17 compiler) or `npm run build:gyp`',
      '(node-gyp, CPU only), or point CRATE_ADDON_PATH at a built crate.node.',
    ].join('\n'),
  );
}

export const native: NativeAddon = loadAddon();
