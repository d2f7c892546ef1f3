// torch_parity.test.ts: interop with PyTorch checkpoints. The fixtures were written by
// scripts/torch_parity_fixture.py with Debian's torch from the authors' CRATE definition: every
// parameter by its PyTorch name, an input, labels, the logits, the loss and every gradient. Our
// CRATE loads the state dict (strict) and must reproduce logits, loss and all gradients
// (f64 ≤ 1e-6 relative, f32 ≤ 1e-4). Also: loadStateDict's messages on bad state dicts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { Tensor } from '../ts/index.js';
import * as C from '../ts/index.js';
import { loadSafetensors } from '../ts/io/safetensors.js';
import { CRATE } from '../ts/models/crate.js';
import { relErr } from './helpers/harness.js';

const dir = join(__dirname, 'fixtures');

describe.each([
  ['f64', 1e-6],
  ['f32', 1e-4],
] as const)('PyTorch parity, CRATE classifier (%s)', (dtype, tol) => {
  const path = join(dir, `crate_parity_${dtype}.safetensors`);
  test.skipIf(!existsSync(path))('logits, loss and every gradient match', () => {
    const f = loadSafetensors(path);
    const cfg = JSON.parse(f.metadata.config ?? '{}');
    const model = new CRATE({
      imageSize: cfg.image,
      patchSize: cfg.patch,
      numClasses: cfg.classes,
      dim: cfg.dim,
      depth: cfg.depth,
      heads: cfg.heads,
      dimHead: cfg.dim_head,
      channels: cfg.channels,
      dtype,
    });
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(f.tensors)) {
      if (!k.startsWith('grad.') && !['input', 'labels', 'logits', 'loss'].includes(k)) sd[k] = v;
    }
    const res = model.loadStateDict(sd, { strict: true });
    expect(res.missingKeys).toEqual([]);
    expect(res.unexpectedKeys).toEqual([]);
    const t = (k: string) => f.tensors[k] as Tensor;
    const logits = model.forward(t('input'));
    expect(relErr(logits.dataSync(), t('logits').dataSync())).toBeLessThan(tol);
    const loss = C.crossEntropy(logits, t('labels'), { labelSmoothing: 0.1 });
    expect(relErr(loss.dataSync(), t('loss').dataSync())).toBeLessThan(tol);
    loss.backward();
    let checked = 0;
    for (const [name, p] of model.namedParameters()) {
      const g = f.tensors[`grad.${name}`];
      expect(g, `fixture has grad.${name}`).toBeDefined();
      expect(relErr(p.grad?.dataSync() ?? [], (g as Tensor).dataSync()), name).toBeLessThan(tol);
      checked++;
    }
    expect(checked).toBe(Object.keys(sd).length);
    model.dispose();
    for (const x of Object.values(f.tensors)) x.dispose();
  });
});

describe('loadStateDict messages', () => {
  const make = () =>
    new CRATE({ imageSize: 8, patchSize: 4, numClasses: 5, dim: 16, depth: 1, heads: 2, dimHead: 8, channels: 1 });
  test('missing, unexpected and mis-shaped keys', () => {
    const m = make();
    const sd = { ...m.stateDict() };
    delete sd['mlp_head.1.bias'];
    sd['transformer.layers.0.2.extra'] = C.zeros([1]);
    expect(() => m.loadStateDict(sd)).toThrow(
      /strict.*missing keys \[mlp_head\.1\.bias\], unexpected keys \[transformer\.layers\.0\.2\.extra\]/,
    );
    const r = m.loadStateDict(sd, { strict: false });
    expect(r.missingKeys).toEqual(['mlp_head.1.bias']);
    expect(r.unexpectedKeys).toEqual(['transformer.layers.0.2.extra']);
    const bad = { ...m.stateDict(), 'transformer.layers.0.1.fn.weight': C.zeros([3, 3]) };
    expect(() => m.loadStateDict(bad)).toThrow(
      /shape mismatch for transformer\.layers\.0\.1\.fn\.weight: checkpoint \[3, 3\] vs model \[16, 16\]/,
    );
    const ddp = Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [`module.${k}`, v]));
    expect(m.loadStateDict(ddp).missingKeys).toEqual([]);
    m.dispose();
  });
});
