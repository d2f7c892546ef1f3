// evaluate.ts: `crate eval`: rebuild the model from a checkpoint's saved config, load its
// weights, report test accuracy/loss and the per-layer R^c and sparsity.

import { mnistDataset } from '../data/index.js';
import { DataLoader } from '../data/loader.js';
import { loadSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import type { LayerStat } from '../viz/plot.js';
import { checkpointPath } from './checkpoint.js';
import { buildModel, DEFAULT_CONFIG, diagnostics, evaluate, type TrainConfig } from './trainer.js';

export async function evaluateCheckpoint(
  dir: string,
  limitTest = 0,
): Promise<{ acc: number; loss: number; samples: number; layers: LayerStat[] }> {
  const f = loadSafetensors(checkpointPath(dir));
  const state = JSON.parse(f.metadata['crate.state'] ?? '{}') as { config?: Partial<TrainConfig> };
  const c = { ...DEFAULT_CONFIG, ...(state.config ?? {}) };
  if (c.data !== 'mnist')
    throw new Error(`crate eval: only the embedded mnist data is supported here, the checkpoint used ${c.data}`);
  const model = buildModel(c.model, [1, 28, 28], 10);
  const sd: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(f.tensors)) if (k.startsWith('model.')) sd[k.slice(6)] = v;
  model.loadStateDict(sd);
  for (const t of Object.values(f.tensors)) t.dispose();
  const full = mnistDataset('test');
  const test =
    limitTest > 0 && limitTest < full.length
      ? new Proxy(full, { get: (t, k, r) => (k === 'length' ? limitTest : Reflect.get(t, k, r)) })
      : full;
  const tf = [{ type: 'toFloat' as const }, { type: 'normalize' as const, mean: [0.1307], std: [0.3081] }];
  const ev = await evaluate(model, test, tf);
  const dl = new DataLoader(test, { batchSize: Math.min(64, test.length), transform: tf });
  let layers: LayerStat[] = [];
  for await (const b of dl.epoch(0)) {
    layers = diagnostics(model, b.x);
    b.x.dispose();
    b.y.dispose();
    break;
  }
  await dl.close();
  model.dispose();
  return { acc: ev.acc, loss: ev.loss, samples: test.length, layers };
}
