// checkpoint.ts: training checkpoints in one safetensors file: model weights (by the authors'
// parameter names, prefixed `model.`), optimizer state (`optim.`), and in the metadata the step,
// epoch, loader position, RNG state, schedule and config. Written atomically (temp file, fsync,
// rename) with a sha256 of the data, so a crash mid-write keeps the previous checkpoint and a
// corrupt file is detected on load.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import { getRngState, setRngState } from '../ops/creation.js';
import { type OptimizerStateDict, optimizerStateFromTensors, optimizerStateToTensors } from '../optim/optimizer.js';

/** What checkpoints need of an optimizer. */
export interface Stateful {
  stateDict(): OptimizerStateDict;
  loadStateDict(sd: OptimizerStateDict): void;
}

import type { Tensor } from '../tensor.js';

export interface TrainState {
  /** optimizer steps done */
  step: number;
  /** the next batch to train on */
  epoch: number;
  batch: number;
  /** the run's config (restored on resume) */
  config: Record<string, unknown>;
  /** whatever else the trainer wants back (best accuracy, history) */
  extra?: Record<string, unknown>;
}

export const CHECKPOINT_FILE = 'checkpoint.safetensors';

export function checkpointPath(dir: string): string {
  return join(dir, CHECKPOINT_FILE);
}

export function saveCheckpoint(dir: string, model: Module, opt: Stateful, state: TrainState): string {
  const tensors: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(model.stateDict())) tensors[`model.${k}`] = v;
  const o = optimizerStateToTensors(opt.stateDict());
  for (const [k, v] of Object.entries(o.tensors)) tensors[`optim.${k}`] = v;
  const path = checkpointPath(dir);
  saveSafetensors(path, tensors, {
    'crate.kind': 'checkpoint',
    'crate.state': JSON.stringify(state),
    'crate.optim': o.meta,
    'crate.rng': JSON.stringify(getRngState()),
  });
  return path;
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(checkpointPath(dir));
}

/** Restores model, optimizer and RNG; returns the saved TrainState. Throws clearly on corrupt files. */
export function loadCheckpoint(dir: string, model: Module, opt: Stateful | null): TrainState {
  const path = checkpointPath(dir);
  const f = loadSafetensors(path);
  try {
    const meta = f.metadata;
    if (meta['crate.kind'] !== 'checkpoint' || !meta['crate.state']) {
      throw new Error(`${path} is not a crate training checkpoint (no crate.state metadata)`);
    }
    const modelSd: Record<string, Tensor> = {};
    const optSd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(f.tensors)) {
      if (k.startsWith('model.')) modelSd[k.slice(6)] = v;
      else if (k.startsWith('optim.')) optSd[k.slice(6)] = v;
    }
    model.loadStateDict(modelSd, { strict: true });
    if (opt) opt.loadStateDict(optimizerStateFromTensors(optSd, meta['crate.optim'] ?? '{}'));
    if (meta['crate.rng']) setRngState(JSON.parse(meta['crate.rng']));
    return JSON.parse(meta['crate.state']) as TrainState;
  } finally {
    for (const t of Object.values(f.tensors)) t.dispose();
  }
}
