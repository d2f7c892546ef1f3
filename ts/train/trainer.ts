// trainer.ts: the training loop behind `crate train`, for every task of tasks.ts (classification,
// masked autoencoding, causal language modelling): seeded model init,
// AdamW/SGD/Lion with weight-decay exclusion, per-step warmup + cosine, label smoothing,
// global-norm clipping, gradient accumulation, per-epoch evaluation with the white-box
// diagnostics (per-layer R^c and sparsity, the authors' measurement), JSON-lines metrics,
// atomic checkpoints and exact resume, and a clean stop on a non-finite loss.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { autocast } from '../autocast.js';
import { tidy } from '../memory.js';
import type { Module } from '../nn/module.js';
import { manualSeed } from '../ops/creation.js';
import { AdamW, clipGradNorm, decayGroups, Lion, SGD, warmupCosine } from '../optim/index.js';
import { type LayerStat, type TrainHistory, trainingFigure, writeFigure } from '../viz/plot.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { makeTask, modelEntry } from './tasks.js';

export { buildModel, DEMO_PRESETS, evaluateClassifier as evaluate } from './tasks.js';

export interface TrainConfig {
  model: string;
  /** images: 'mnist' (embedded) or 'cifar10' (binary batches in dataDir); language models: 'text' */
  data: 'mnist' | 'cifar10' | 'folder' | 'text';
  /** --data folder: side of the square the images are resized to */
  imageSize?: number;
  /** LM: a UTF-8 text file instead of the embedded corpus */
  textFile?: string;
  /** MAE: fraction of patches masked */
  maskRatio: number;
  /** where the model trains: 'cpu' or 'cuda' */
  device: 'cpu' | 'cuda';
  /** bf16 autocast for the matrix products (CUDA only; f32 master weights) */
  amp: boolean;
  /** folder of the CIFAR-10 binary batches (data_batch_*.bin, test_batch.bin) */
  dataDir?: string;
  epochs: number;
  batchSize: number;
  lr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  optimizer: 'adamw' | 'sgd' | 'lion';
  labelSmoothing: number;
  clip: number;
  accumulate: number;
  seed: number;
  /** train on the first n samples only (0 = all) */
  limitTrain: number;
  limitTest: number;
  /** where metrics.jsonl, the checkpoint and the figure go */
  outDir: string;
  resume: boolean;
  /** save a checkpoint every n steps as well as after each epoch (0 = per epoch only) */
  saveEvery: number;
  /** samples used for the per-layer R^c / sparsity diagnostics */
  diagSamples: number;
  /** stop after this many optimizer steps (0 = run all epochs); for tests and resume checks */
  maxSteps: number;
  augment: boolean;
}

export const DEFAULT_CONFIG: TrainConfig = {
  model: 'crate-demo',
  data: 'mnist',
  epochs: 3,
  batchSize: 128,
  lr: 1e-3,
  minLr: 1e-5,
  warmupEpochs: 0.25,
  weightDecay: 0.05,
  optimizer: 'adamw',
  labelSmoothing: 0.1,
  clip: 1.0,
  accumulate: 1,
  seed: 0,
  limitTrain: 0,
  limitTest: 0,
  outDir: 'runs/crate-demo',
  resume: false,
  saveEvery: 0,
  diagSamples: 64,
  maxSteps: 0,
  augment: false,
  maskRatio: 0.75,
  device: 'cpu',
  amp: false,
};

export interface EpochReport {
  epoch: number;
  trainLoss: number;
  testLoss: number;
  acc: number;
  seconds: number;
  samplesPerSec: number;
  layers: LayerStat[];
}
export interface TrainResult {
  status: 'done' | 'stopped' | 'nonfinite';
  epochs: EpochReport[];
  steps: number;
  losses: number[];
  /** top-1 test accuracy after the last epoch (NaN for MAE and language models) */
  finalAcc: number;
  /** test loss after the last epoch */
  finalLoss: number;
  /** language models: text sampled from the trained model */
  sample?: string;
  seconds: number;
  files: string[];
}

export interface TrainHooks {
  onStep?: (s: {
    step: number;
    epoch: number;
    batch: number;
    batches: number;
    loss: number;
    lr: number;
    samplesPerSec: number;
  }) => void;
  onEpoch?: (r: EpochReport) => void;
  log?: (line: string) => void;
}

type AnyOptimizer = AdamW | SGD | Lion;

function makeOptimizer(c: TrainConfig, model: Module): AnyOptimizer {
  const groups = decayGroups(model.namedParameters(), { weightDecay: c.weightDecay });
  if (c.optimizer === 'adamw') return new AdamW(groups, { lr: c.lr, betas: [0.9, 0.999] });
  if (c.optimizer === 'lion') return new Lion(groups, { lr: c.lr });
  if (c.optimizer === 'sgd') return new SGD(groups, { lr: c.lr, momentum: 0.9, nesterov: true });
  throw new Error(`train: unknown optimizer '${String(c.optimizer)}' (adamw, sgd, lion)`);
}

export async function train(partial: Partial<TrainConfig>, hooks: TrainHooks = {}): Promise<TrainResult> {
  const t0 = performance.now();
  let c: TrainConfig = { ...DEFAULT_CONFIG, ...partial };
  // language models read text whatever the (image) default data is
  if (modelEntry(c.model).task === 'lm') c = { ...c, data: 'text' };
  else if (c.data === 'text')
    throw new Error(`train: --data text needs a language model, '${c.model}' is an image model`);
  const log = hooks.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  mkdirSync(c.outDir, { recursive: true });
  const metricsPath = join(c.outDir, 'metrics.jsonl');
  const metric = (o: object) =>
    appendFileSync(metricsPath, `${JSON.stringify({ time: new Date().toISOString(), ...o })}\n`);

  const resuming = c.resume && hasCheckpoint(c.outDir);
  manualSeed(c.seed);
  if (c.amp && c.device !== 'cuda') throw new Error('train: --amp (bf16 autocast) needs --device cuda');
  const withAmp = <T>(fn: () => T): T => (c.amp ? autocast(() => tidy(fn)) : tidy(fn));
  const task = await makeTask(c);
  const model = task.model;
  const opt = makeOptimizer(c, model);
  let step = 0;
  let startEpoch = 0;
  let startBatch = 0;
  const history: TrainHistory = { steps: [], evals: [] };
  const epochs: EpochReport[] = [];
  if (resuming) {
    const st = loadCheckpoint(c.outDir, model, opt);
    step = st.step;
    startEpoch = st.epoch;
    startBatch = st.batch;
    const h = st.extra?.history as TrainHistory | undefined;
    if (h) {
      history.steps.push(...h.steps);
      history.evals.push(...h.evals);
    }
    // epochs/limits may be extended on resume; the rest of the saved config wins
    c = {
      ...c,
      ...(st.config as Partial<TrainConfig>),
      epochs: c.epochs,
      maxSteps: c.maxSteps,
      outDir: c.outDir,
      resume: true,
    };
    log(
      `[crate] resumed from ${join(c.outDir, 'checkpoint.safetensors')} at step ${step} (epoch ${startEpoch}, batch ${startBatch})`,
    );
  } else {
    writeFileSync(metricsPath, '');
  }
  const batches = task.numBatches;
  const stepsPerEpoch = Math.floor(batches / c.accumulate);
  const totalSteps = stepsPerEpoch * c.epochs;
  const sched = warmupCosine({
    baseLr: c.lr,
    warmupSteps: Math.min(Math.round(c.warmupEpochs * stepsPerEpoch), totalSteps),
    totalSteps,
    minLr: c.minLr,
  });
  log(
    `[crate] ${c.model} (${(model.numParameters() / 1e6).toFixed(3)}M params, ${task.kind}) on ${task.describe}, ` +
      `${c.epochs} epochs × ${stepsPerEpoch} steps, batch ${c.batchSize}${c.accumulate > 1 ? `×${c.accumulate}` : ''}, ${c.optimizer} lr ${c.lr}`,
  );
  const saveState = (epoch: number, batch: number) =>
    saveCheckpoint(c.outDir, model, opt, { step, epoch, batch, config: { ...c }, extra: { history } });
  if (!resuming) {
    const layers = task.diagnostics();
    history.evals.push({ epoch: 0, acc: Number.NaN, layers });
    metric({ type: 'eval', epoch: 0, layers });
  }

  let status: TrainResult['status'] = 'done';
  const losses: number[] = [];
  outer: for (let epoch = startEpoch; epoch < c.epochs; epoch++) {
    const te = performance.now();
    let seen = 0;
    let lossSum = 0;
    let lossCount = 0;
    let micro = 0;
    let accLoss = 0;
    const first = epoch === startEpoch ? startBatch : 0;
    for await (const b of task.batches(epoch, first)) {
      const lr = sched(step);
      for (const g of opt.paramGroups) g.lr = lr;
      const loss = withAmp(() => {
        const l = task.loss(b, epoch);
        // backward is queued before the loss is read, so that on cuda the device runs it while the
        // host waits (one stream sync per step, at the end). A non-finite loss gives non-finite
        // gradients that are never applied: the step stops below and zeroes them.
        if (c.accumulate > 1) {
          const scaled = l.mul(1 / c.accumulate);
          scaled.backward();
        } else l.backward();
        return l.item();
      });
      b.dispose();
      if (!Number.isFinite(loss)) {
        status = 'nonfinite';
        log(
          `[crate] non-finite loss (${loss}) at step ${step}, epoch ${epoch}, batch ${b.index}: stopping; the last checkpoint is kept`,
        );
        metric({ type: 'stop', reason: 'nonfinite-loss', step, epoch, batch: b.index });
        model.zeroGrad();
        break outer;
      }
      accLoss += loss;
      micro++;
      seen += task.samplesPerBatch;
      if (micro < c.accumulate) continue;
      if (c.clip > 0) clipGradNorm(model.parameters(), c.clip);
      opt.step();
      opt.zeroGrad();
      step++;
      const stepLoss = accLoss / micro;
      micro = 0;
      accLoss = 0;
      losses.push(stepLoss);
      lossSum += stepLoss;
      lossCount++;
      const elapsed = (performance.now() - te) / 1000;
      const sps = seen / Math.max(elapsed, 1e-9);
      history.steps.push({ step, loss: stepLoss });
      metric({ type: 'step', step, epoch, batch: b.index, loss: stepLoss, lr, samplesPerSec: sps });
      hooks.onStep?.({ step, epoch, batch: b.index + 1, batches, loss: stepLoss, lr, samplesPerSec: sps });
      if (c.saveEvery > 0 && step % c.saveEvery === 0) saveState(epoch, b.index + 1);
      if (c.maxSteps > 0 && step >= c.maxSteps) {
        saveState(epoch, b.index + 1);
        status = 'stopped';
        break outer;
      }
    }
    const seconds = (performance.now() - te) / 1000;
    const ev = await task.evaluate();
    const layers = task.diagnostics();
    const rep: EpochReport = {
      epoch: epoch + 1,
      trainLoss: lossSum / Math.max(lossCount, 1),
      testLoss: ev.loss,
      acc: ev.acc,
      seconds,
      samplesPerSec: seen / Math.max(seconds, 1e-9),
      layers,
    };
    epochs.push(rep);
    history.evals.push({ epoch: epoch + 1, acc: ev.acc, testLoss: ev.loss, layers });
    metric({ type: 'eval', ...rep });
    hooks.onEpoch?.(rep);
    saveState(epoch + 1, 0);
  }
  const files = [join(c.outDir, 'metrics.jsonl'), join(c.outDir, 'checkpoint.safetensors')];
  if (history.evals.length > 1) {
    files.push(...(await writeFigure(join(c.outDir, 'report'), trainingFigure(`${c.model} on ${c.data}`, history))));
  }
  const result: TrainResult = {
    status,
    epochs,
    steps: step,
    losses,
    finalAcc: epochs[epochs.length - 1]?.acc ?? Number.NaN,
    finalLoss: epochs[epochs.length - 1]?.testLoss ?? Number.NaN,
    seconds: (performance.now() - t0) / 1000,
    files,
  };
  if (task.sample) result.sample = task.sample();
  await task.close();
  opt.dispose();
  return result;
}
