// autograd.ts: the tape. Each differentiable op records a GradNode on its output: the inputs,
// a backward closure that maps dL/dout to dL/dinput (null where no gradient flows) and the
// tensors it owns only for backward. backward() walks the graph in reverse topological order,
// accumulates gradients (micrograd-style) and frees what the graph held.
import { native } from './native.js';
import type { Tensor } from './tensor.js';

export interface GradNode {
  op: string;
  inputs: Tensor[];
  /** null once the graph was freed by a backward pass. */
  backward: ((g: Tensor, saved: Tensor[]) => (Tensor | null)[]) | null;
  /**
   * The tensors the backward reads: aliases that share storage with the originals, so the
   * user (or a tidy() scope) may dispose the originals; freed with the node.
   */
  saved: Tensor[];
}

let gradEnabled = true;
let anomaly = false;

/**
 * Anomaly mode (like torch.autograd.detect_anomaly): every op's output, and every gradient in
 * backward, is checked for NaN/Inf, and the first op that produces one is named in the error.
 * Costs one scan per op; for debugging. Returns the previous setting.
 */
export function setAnomalyMode(on: boolean): boolean {
  const prev = anomaly;
  anomaly = on;
  return prev;
}
export function isAnomalyMode(): boolean {
  return anomaly;
}
/** Runs fn with anomaly mode on. */
export function detectAnomaly<T>(fn: () => T): T {
  const prev = setAnomalyMode(true);
  try {
    return fn();
  } finally {
    setAnomalyMode(prev);
  }
}

function checkFinite(t: Tensor, what: () => string): void {
  if (t.dtype === 'i32') return;
  const i = native.findNonFinite(t._h('anomaly'));
  if (i >= 0) {
    const v = t.dataSync()[i];
    throw new Error(
      `anomaly: ${what()} produced ${v} at flat index ${i} of a [${t.shape.join(', ')}] ${t.dtype} tensor`,
    );
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording off (like torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Sets gradient recording on or off; returns the previous value. */
export function setGradEnabled(on: boolean): boolean {
  const prev = gradEnabled;
  gradEnabled = on;
  return prev;
}

/** Whether an op over these inputs must be recorded. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t?.requiresGrad) return true;
  return false;
}

/**
 * Records `out` as produced by `op` from `inputs` when any input requires grad. The backward
 * receives dL/dout and the `saved` tensors (as aliases that live until the graph is freed) and
 * returns dL/dinput per input (null where none flows); it must return new tensors.
 * `owned` are tensors made only for backward: they are handed to the node (or disposed now
 * when nothing is recorded). Returns out.
 */
export function record<S extends Tensor[]>(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  backward: (g: Tensor, saved: S) => (Tensor | null)[],
  saved: [...S] | [] = [],
  owned: Tensor[] = [],
): Tensor {
  if (anomaly) {
    const inputsFinite = inputs.every((t) => t.dtype === 'i32' || native.findNonFinite(t._h(op)) < 0);
    checkFinite(out, () => `op '${op}' (forward, inputs ${inputsFinite ? 'all finite' : 'already non-finite'})`);
  }
  if (!needsGrad(inputs)) {
    for (const t of owned) t.dispose();
    return out;
  }
  const ownedSet = new Set(owned);
  const aliases = saved.map((t) => (ownedSet.has(t) ? t : aliasOf(t)));
  for (const t of owned) {
    if (!aliases.includes(t)) t.dispose();
    else keepTensor(t);
  }
  out.requiresGrad = true;
  const node: GradNode = {
    op,
    inputs,
    backward: backward as (g: Tensor, saved: Tensor[]) => (Tensor | null)[],
    saved: aliases,
  };
  out._node = node;
  registerNode(node);
  return out;
}

/** Releases what a node holds; its backward can no longer run. */
export function freeNode(node: GradNode): void {
  if (!node.backward) return;
  node.backward = null;
  for (const t of node.saved) t.dispose();
  node.saved = [];
}

export function backward(root: Tensor, seed: Tensor | undefined, retainGraph: boolean): void {
  root._h('backward');
  if (!root.requiresGrad) {
    throw new Error('backward: tensor does not require grad (no input had requiresGrad, or it was made under noGrad)');
  }
  if (seed === undefined && root.numel !== 1) {
    throw new Error(
      `backward: a seed gradient is required for a non-scalar tensor of shape [${root.shape.join(', ')}]`,
    );
  }
  if (seed && (seed.shape.join() !== root.shape.join() || seed.dtype !== root.dtype)) {
    throw new Error(
      `backward: seed has shape [${seed.shape.join(', ')}] ${seed.dtype}, expected [${root.shape.join(', ')}] ${root.dtype}`,
    );
  }
  // Topological order (iterative DFS: deep models must not overflow the JS stack).
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1] as [Tensor, number];
    const [t, i] = top;
    const inputs = t._node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i] as Tensor;
      if (c.requiresGrad && !visited.has(c)) {
        visited.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const prevEnabled = setGradEnabled(false);
  const grads = new Map<Tensor, Tensor>();
  try {
    // The seed is aliased, not copied: backward functions never write to their incoming gradient,
    // and accumulateLeaf copies any gradient whose storage is shared before a leaf keeps it.
    grads.set(root, seed ? aliasOf(seed) : onesLikeScalar(root));
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k] as Tensor;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t._node;
      if (!node) {
        // Leaf: accumulate into .grad (kept outside any tidy scope).
        accumulateLeaf(t, g);
        continue;
      }
      if (!node.backward) {
        g.dispose();
        throw new Error(
          `backward: the graph through '${node.op}' was already freed by an earlier backward(); ` +
            'pass { retainGraph: true } to the first backward to run it twice',
        );
      }
      const inGrads = node.backward(g, node.saved);
      if (anomaly) {
        inGrads.forEach((gi, i) => {
          if (gi) checkFinite(gi, () => `the backward of '${node.op}' (gradient of input ${i})`);
        });
      }
      g.dispose();
      node.inputs.forEach((inp, i) => {
        const gi = inGrads[i];
        if (!gi) return;
        if (!inp.requiresGrad) {
          gi.dispose();
          return;
        }
        const prev = grads.get(inp);
        if (prev) {
          grads.set(inp, prev.add(gi));
          prev.dispose();
          gi.dispose();
        } else {
          grads.set(inp, gi);
        }
      });
      if (!retainGraph) freeNode(node);
    }
  } finally {
    for (const g of grads.values()) g.dispose();
    setGradEnabled(prevEnabled);
  }
}

function accumulateLeaf(t: Tensor, g: Tensor): void {
  if (g._ref.refs > 1) {
    // g is a view of storage something else holds (the caller's seed, or the same gradient
    // routed to two leaves by add/reshape backward): .grad must own its buffer, since optimizers
    // and clipping update it in place.
    const own = g.mul(1);
    g.dispose();
    g = own;
  }
  keepTensor(g);
  if (t.grad && !t.grad.isDisposed) {
    const sum = t.grad.add(g);
    keepTensor(sum);
    t.grad.dispose();
    g.dispose();
    t.grad = sum;
  } else {
    t.grad = g;
  }
}

// Late-bound helpers (set by index.ts) to avoid import cycles at module-evaluation time.
let onesLikeScalar: (t: Tensor) => Tensor = () => {
  throw new Error('autograd not initialised');
};
let keepTensor: (t: Tensor) => void = () => {};
let aliasOf: (t: Tensor) => Tensor = (t) => t;
let registerNode: (n: GradNode) => void = () => {};
export function _bindAutograd(hooks: {
  ones: (t: Tensor) => Tensor;
  keep: (t: Tensor) => void;
  alias: (t: Tensor) => Tensor;
  registerNode: (n: GradNode) => void;
}): void {
  onesLikeScalar = hooks.ones;
  keepTensor = hooks.keep;
  aliasOf = hooks.alias;
  registerNode = hooks.registerNode;
}
