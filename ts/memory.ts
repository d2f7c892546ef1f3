// memory.ts: deterministic release of native memory: tidy() scopes, keep(), live counts, and a
// FinalizationRegistry backstop for tensors that were never disposed.
import { freeNode, type GradNode } from './autograd.js';
import type { NativeStorage } from './native.js';
import { native } from './native.js';

/** A native buffer shared by a tensor and its reshaped views; freed when the last one goes. */
export class StorageRef {
  refs = 1;
  constructor(readonly handle: NativeStorage) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) this.handle.dispose();
  }
}

interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

let liveTensors = 0;
interface Scope {
  tensors: Set<Disposable>;
  nodes: GradNode[];
}
const scopes: Scope[] = [];

/** Called by autograd.record(): graph nodes made inside a tidy() are freed with it. */
export function registerNode(n: GradNode): void {
  scopes[scopes.length - 1]?.nodes.push(n);
}

const backstop = new FinalizationRegistry<StorageRef>((ref) => {
  liveTensors--;
  ref.release();
});

/** Called by the Tensor constructor. */
export function trackTensor(t: Disposable & object, ref: StorageRef): void {
  liveTensors++;
  backstop.register(t, ref, t);
  scopes[scopes.length - 1]?.tensors.add(t);
}

/** Points the GC backstop of a live tensor at its new storage (Tensor._moveTo). */
export function retrackTensor(t: Disposable & object, ref: StorageRef): void {
  backstop.unregister(t);
  backstop.register(t, ref, t);
}

/** Called by Tensor.dispose(). */
export function untrackTensor(t: Disposable & object): void {
  liveTensors--;
  backstop.unregister(t);
  for (const s of scopes) s.tensors.delete(t);
}

/** Removes a tensor from every open tidy() scope so it survives them. Returns it. */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.tensors.delete(t);
  return t;
}

function collectTensors(v: unknown, out: Set<unknown>, depth = 0): void {
  if (v === null || typeof v !== 'object' || depth > 8) return;
  if ('isDisposed' in v && 'dispose' in v && 'shape' in v) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) {
    for (const x of v) collectTensors(x, out, depth + 1);
    return;
  }
  if (v instanceof Map) {
    for (const x of v.values()) collectTensors(x, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collectTensors(x, out, depth + 1);
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except the tensors it returns (found in
 * the returned value, arrays, plain objects and Maps) and those passed to keep(). Autograd graph
 * nodes made inside are freed too unless a returned tensor's graph still needs them (so
 * `const loss = tidy(() => model.forward(x)); loss.backward()` works). fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tensors: new Set(), nodes: [] };
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    closeScope(scope, new Set(), null);
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    closeScope(scope, new Set(), null);
    throw new TypeError('tidy: fn returned a Promise; tidy() only takes synchronous functions');
  }
  const returned = new Set<unknown>();
  collectTensors(result, returned);
  closeScope(scope, returned, scopes[scopes.length - 1] ?? null);
  return result;
}

function closeScope(scope: Scope, returned: Set<unknown>, parent: Scope | null): void {
  // Nodes reachable from the returned tensors stay alive (for a later backward).
  const reachable = new Set<GradNode>();
  const stack: unknown[] = [...returned];
  while (stack.length) {
    const t = stack.pop() as { _node?: GradNode | null };
    const n = t?._node;
    if (n && !reachable.has(n)) {
      reachable.add(n);
      stack.push(...n.inputs);
    }
  }
  for (const n of scope.nodes) {
    if (reachable.has(n)) parent?.nodes.push(n);
    else freeNode(n);
  }
  for (const t of scope.tensors) {
    if (returned.has(t)) parent?.tensors.add(t);
    else if (!t.isDisposed) t.dispose();
  }
}

export interface MemoryInfo {
  /** Tensors created and not yet disposed (or garbage collected). */
  numTensors: number;
  /** cachedBytes: freed host blocks the caching allocator keeps for reuse (`emptyCache()` returns them). */
  cpu: { buffers: number; bytes: number; peakBytes: number; cachedBytes: number };
  cuda: {
    buffers: number;
    bytes: number;
    peakBytes: number;
    /** With a usable CUDA library: the caching allocator's cached bytes, the device's free and
     * total bytes, the times the cache was emptied to satisfy a request, and the blocking waits
     * of the host on the device so far (device→host reads, synchronize, device-side checks read
     * back): a training step on CUDA should make about one. */
    cachedBytes?: number;
    deviceFreeBytes?: number;
    deviceTotalBytes?: number;
    oomRetries?: number;
    hostSyncs?: number;
  };
}

/** Live tensor count and native bytes per device. */
export function memory(): MemoryInfo {
  const m = native.memory();
  return { numTensors: liveTensors, cpu: m.cpu, cuda: m.cuda };
}
