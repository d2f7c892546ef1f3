// evaluate.ts: `crate eval`: rebuild the task (model + data) from a checkpoint's saved config,
// load its weights, and report the task's evaluation (accuracy and loss for classifiers,
// masked-patch MSE for CRATE-MAE, loss per token for language models) with the per-layer R^c and
// sparsity.
import { loadSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import type { LayerStat } from '../viz/plot.js';
import { checkpointPath } from './checkpoint.js';
import { makeTask, type TaskKind } from './tasks.js';
import { DEFAULT_CONFIG, type TrainConfig } from './trainer.js';

export async function evaluateCheckpoint(
  dir: string,
  limitTest = 0,
): Promise<{ kind: TaskKind; model: string; acc: number; loss: number; layers: LayerStat[] }> {
  const f = loadSafetensors(checkpointPath(dir));
  const state = JSON.parse(f.metadata['crate.state'] ?? '{}') as { config?: Partial<TrainConfig> };
  const c: TrainConfig = { ...DEFAULT_CONFIG, ...(state.config ?? {}), limitTest, limitTrain: 1 };
  const task = await makeTask(c);
  try {
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(f.tensors)) if (k.startsWith('model.')) sd[k.slice(6)] = v;
    task.model.loadStateDict(sd);
    const ev = await task.evaluate();
    return { kind: task.kind, model: c.model, acc: ev.acc, loss: ev.loss, layers: task.diagnostics() };
  } finally {
    for (const t of Object.values(f.tensors)) t.dispose();
    await task.close();
  }
}
