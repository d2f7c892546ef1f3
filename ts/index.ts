// index.ts: the public API of crate-ml.
import { _bindAutograd } from './autograd.js';
import { keep, registerNode } from './memory.js';
import { native } from './native.js';
import { ones } from './ops/creation.js';
import { Tensor } from './tensor.js';

_bindAutograd({
  ones: (t) => keep(ones([...t.shape], { dtype: t.dtype, device: t.device })),
  keep: (t) => {
    keep(t);
  },
  alias: (t) => keep(t.detach()),
  registerNode,
});

export { autocast, isAutocast } from './autocast.js';
export { detectAnomaly, isAnomalyMode, isGradEnabled, noGrad, setAnomalyMode, setGradEnabled } from './autograd.js';
export { cudaAvailable } from './device.js';
export type { Device, DType, TypedArray } from './dtype.js';
export type { MemoryInfo } from './memory.js';
export { keep, memory, tidy } from './memory.js';
export * from './ops/creation.js';
export * from './ops/elementwise.js';
export * from './ops/matmul.js';
export * from './ops/nn.js';
export * from './ops/reduce.js';
export * from './ops/shape.js';
export type { NestedArray, Shape } from './tensor.js';
export { Tensor } from './tensor.js';

/** What the native build holds: CUDA compiled in / found, BLAS, threads, and why things are missing. */
export function info() {
  return native.info();
}
/** Sets the CPU thread count (0 = default: CRATE_NUM_THREADS or all cores). Returns the count. */
export function setNumThreads(n: number): number {
  return native.setNumThreads(n);
}
/** Chooses the CPU GEMM: 'blas' (a system OpenBLAS found at run time) or 'own' (the built-in kernel). */
export function setGemmBackend(b: 'own' | 'blas'): void {
  native.setGemmBackend(b);
}
export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}
export * as data from './data/index.js';
export { decodeSafetensors, encodeSafetensors, loadSafetensors, saveSafetensors } from './io/safetensors.js';
export * as models from './models/index.js';
export * as nn from './nn/index.js';
export { Module } from './nn/module.js';
export * from './objectives/coding_rate.js';
export type { MssaOptions } from './ops/crate.js';
export { ista, istaOvercomplete, istaTied, logdetGram, logdetGramHeads, mssa, tssa, tssaCausal } from './ops/crate.js';
export * as composite from './ops/crate_composite.js';
export * as optim from './optim/index.js';
export type { TrainConfig, TrainResult } from './train/trainer.js';
export { DEFAULT_CONFIG, evaluate, train } from './train/trainer.js';
/** Returns the CPU caching allocator's free blocks to the OS; returns the bytes released. */
/** Waits for all queued CUDA work (no-op without CUDA). */
export function synchronize(): void {
  native.synchronize();
}
/** Lets f32 matmuls on CUDA use TF32 tensor cores (default off, or CRATE_ALLOW_TF32=1). */
export function setAllowTF32(on: boolean): void {
  native.setAllowTF32(on);
}
export function emptyCache(): number {
  return native.emptyCache();
}
