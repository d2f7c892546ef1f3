// diagnostics.ts: the white-box per-layer measurements for any model of the family, as the
// authors take them (CRATE vis_utils/crate_hook.py): forward hooks on each attention block's
// shared projection (the MSSA/TSSA input subspace coordinates) give the coding rate R^c of the
// tokens per head, and hooks on each ISTA block's output give the sparsity (fraction of zeros).
// The measurement runs where the model runs (the per-head log-det has CUDA kernels).
// Layers are numbered in module order (for CRATE-MAE: encoder layers, then decoder layers).
// For the overcomplete and tied ISTA blocks (CRATE-α, causal CRATE) the block output is the
// decoded dictionary product, so its measured sparsity is that of the output, not of the code.
import { noGrad } from '../autograd.js';
import { tidy } from '../memory.js';
import { CausalSelfAttention } from '../models/crate_lm.js';
import { CausalSelfAttentionTSSA, ToSTAttention } from '../models/tost.js';
import { Attention, FeedForward, OvercompleteISTA, TiedISTA } from '../nn/crate_blocks.js';
import type { Module } from '../nn/module.js';
import { measureCodingRate, measureSparsity } from '../objectives/coding_rate.js';
import type { Tensor } from '../tensor.js';
import type { LayerStat } from '../viz/plot.js';

interface Probe {
  /** the module whose output is the per-head projection (B, N, H·p) */
  proj: Module;
  heads: number;
  /** the ISTA block after it, if the layer has one */
  ista: Module | null;
}

/** The attention projections and ISTA blocks of a model, paired layer by layer in module order. */
export function whiteBoxLayers(model: Module): Probe[] {
  const probes: Probe[] = [];
  for (const [, m] of model.modules()) {
    if (m instanceof Attention || m instanceof ToSTAttention) probes.push({ proj: m.qkv, heads: m.heads, ista: null });
    else if (m instanceof CausalSelfAttention || m instanceof CausalSelfAttentionTSSA) {
      probes.push({ proj: m.c_attn, heads: m.heads, ista: null });
    } else if (m instanceof FeedForward || m instanceof OvercompleteISTA || m instanceof TiedISTA) {
      const last = probes[probes.length - 1];
      if (last && last.ista === null) last.ista = m;
    }
  }
  return probes;
}

/**
 * Runs `forward` once in eval mode without gradients and returns R^c (ε = 0.01, the authors'
 * default in the hook code) and sparsity per layer, mean and std over the batch. A layer without
 * an ISTA block (ToST's MLP) reports sparsity NaN.
 */
export function layerDiagnostics(model: Module, forward: () => unknown): LayerStat[] {
  const probes = whiteBoxLayers(model);
  const stats: LayerStat[] = probes.map((_, layer) => ({
    layer,
    rc: Number.NaN,
    rcStd: Number.NaN,
    sparsity: Number.NaN,
    sparsityStd: Number.NaN,
  }));
  const removers: (() => void)[] = [];
  probes.forEach((p, i) => {
    const s = stats[i] as LayerStat;
    removers.push(
      p.proj.registerForwardHook((_m, _in, out) => {
        const r = measureCodingRate(out as Tensor, p.heads, 0.01);
        s.rc = r.mean;
        s.rcStd = r.std;
      }),
    );
    if (p.ista) {
      removers.push(
        p.ista.registerForwardHook((_m, _in, out) => {
          const r = measureSparsity(out as Tensor);
          s.sparsity = r.mean;
          s.sparsityStd = r.std;
        }),
      );
    }
  });
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() =>
      tidy(() => {
        forward();
      }),
    );
  } finally {
    model.train(wasTraining);
    for (const r of removers) r();
  }
  return stats;
}
