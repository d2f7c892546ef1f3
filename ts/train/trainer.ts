// trainer.ts: the image-classification training loop behind `crate train`: seeded model init,
// AdamW/SGD/Lion with weight-decay exclusion, per-step warmup + cosine, label smoothing,
// global-norm clipping, gradient accumulation, per-epoch evaluation with the white-box
// diagnostics (per-layer R^c and sparsity, the authors' measurement), JSON-lines metrics,
// atomic checkpoints and exact resume, and a clean stop on a non-finite loss.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../autograd.js';
import {
  cifarDataset,
  DataLoader,
  type Dataset,
  mnistDataset,
  readCifar10,
  type TransformSpec,
} from '../data/index.js';
import { keep, tidy } from '../memory.js';
import { type CRATE, CRATE_PRESETS, crateFromPreset } from '../models/crate.js';
import { measureCodingRate, measureSparsity } from '../objectives/coding_rate.js';
import { manualSeed } from '../ops/creation.js';
import { crossEntropy } from '../ops/nn.js';
import { AdamW, clipGradNorm, decayGroups, Lion, SGD, warmupCosine } from '../optim/index.js';
import type { Tensor } from '../tensor.js';
import { type LayerStat, type TrainHistory, trainingFigure, writeFigure } from '../viz/plot.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';

export interface TrainConfig {
  model: string;
  data: 'mnist' | 'cifar10';
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
};

/** Small CRATE configs for the embedded data (the published presets are for 224×224 ImageNet). */
export const DEMO_PRESETS: Record<
  string,
  { dim: number; depth: number; heads: number; dimHead: number; patch: number }
> = {
  'crate-demo': { dim: 96, depth: 4, heads: 4, dimHead: 24, patch: 7 },
  'crate-mini': { dim: 64, depth: 2, heads: 2, dimHead: 32, patch: 7 },
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
  finalAcc: number;
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

interface Data {
  train: Dataset;
  test: Dataset;
  shape: [number, number, number];
  classes: number;
  transform: TransformSpec[];
  evalTransform: TransformSpec[];
}

function subset(ds: Dataset, n: number): Dataset {
  if (!n || n >= ds.length) return ds;
  return new Proxy(ds, { get: (t, k, r) => (k === 'length' ? n : Reflect.get(t, k, r)) });
}

function loadData(c: TrainConfig): Data {
  if (c.data === 'mnist') {
    const norm: TransformSpec = { type: 'normalize', mean: [0.1307], std: [0.3081] };
    return {
      train: subset(mnistDataset('train'), c.limitTrain),
      test: subset(mnistDataset('test'), c.limitTest),
      shape: [1, 28, 28],
      classes: 10,
      transform: c.augment
        ? [{ type: 'toFloat' }, { type: 'randomCrop', size: 28, padding: 2 }, norm]
        : [{ type: 'toFloat' }, norm],
      evalTransform: [{ type: 'toFloat' }, norm],
    };
  }
  if (c.data === 'cifar10') {
    if (!c.dataDir) throw new Error('train: --data cifar10 needs --data-dir with data_batch_1.bin … test_batch.bin');
    const trainFiles = [1, 2, 3, 4, 5].map((i) => join(c.dataDir as string, `data_batch_${i}.bin`));
    const norm: TransformSpec = { type: 'normalize', mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
    return {
      train: subset(cifarDataset(readCifar10(trainFiles)), c.limitTrain),
      test: subset(cifarDataset(readCifar10(join(c.dataDir, 'test_batch.bin'))), c.limitTest),
      shape: [3, 32, 32],
      classes: 10,
      transform: c.augment
        ? [{ type: 'toFloat' }, { type: 'randomCrop', size: 32, padding: 4 }, { type: 'randomHorizontalFlip' }, norm]
        : [{ type: 'toFloat' }, norm],
      evalTransform: [{ type: 'toFloat' }, norm],
    };
  }
  throw new Error(`train: unknown dataset '${String(c.data)}' (mnist, cifar10)`);
}

export function buildModel(name: string, shape: [number, number, number], classes: number): CRATE {
  const [ch, hw] = shape;
  const demo = DEMO_PRESETS[name];
  if (demo) {
    const patch = hw % demo.patch === 0 ? demo.patch : 4;
    return crateFromPreset('crate-tiny', {
      ...demo,
      imageSize: hw,
      patchSize: patch,
      numClasses: classes,
      channels: ch,
    });
  }
  if (CRATE_PRESETS[name])
    return crateFromPreset(name, {
      imageSize: hw,
      patchSize: hw % 16 === 0 ? 16 : 4,
      numClasses: classes,
      channels: ch,
    });
  throw new Error(
    `train: unknown model '${name}' (${[...Object.keys(DEMO_PRESETS), ...Object.keys(CRATE_PRESETS)].join(', ')})`,
  );
}

type AnyOptimizer = AdamW | SGD | Lion;

function makeOptimizer(c: TrainConfig, model: CRATE): AnyOptimizer {
  const groups = decayGroups(model.namedParameters(), { weightDecay: c.weightDecay });
  if (c.optimizer === 'adamw') return new AdamW(groups, { lr: c.lr, betas: [0.9, 0.999] });
  if (c.optimizer === 'lion') return new Lion(groups, { lr: c.lr });
  if (c.optimizer === 'sgd') return new SGD(groups, { lr: c.lr, momentum: 0.9, nesterov: true });
  throw new Error(`train: unknown optimizer '${String(c.optimizer)}' (adamw, sgd, lion)`);
}

/** Accuracy and mean loss over a dataset (no gradients). */
export async function evaluate(
  model: CRATE,
  ds: Dataset,
  transform: TransformSpec[],
  batchSize = 500,
): Promise<{ acc: number; loss: number }> {
  const loader = new DataLoader(ds, { batchSize, transform });
  let correct = 0;
  let lossSum = 0;
  let n = 0;
  model.eval();
  try {
    for await (const b of loader.epoch(0)) {
      const r = noGrad(() =>
        tidy(() => {
          const logits = model.forward(b.x);
          const l = crossEntropy(logits, b.y, { reduction: 'sum' }).item();
          const d = logits.dataSync();
          const y = b.y.dataSync();
          const C = logits.shape[1] as number;
          let ok = 0;
          for (let i = 0; i < y.length; i++) {
            let arg = 0;
            for (let j = 1; j < C; j++) if ((d[i * C + j] as number) > (d[i * C + arg] as number)) arg = j;
            if (arg === y[i]) ok++;
          }
          return { l, ok, n: y.length };
        }),
      );
      lossSum += r.l;
      correct += r.ok;
      n += r.n;
      b.x.dispose();
      b.y.dispose();
    }
  } finally {
    await loader.close();
    model.train();
  }
  return { acc: correct / Math.max(n, 1), loss: lossSum / Math.max(n, 1) };
}

/** Per-layer R^c (input side of each MSSA, as vis_utils hooks qkv) and sparsity (ISTA output). */
export function diagnostics(model: CRATE, x: Tensor): LayerStat[] {
  const depth = model.config.depth;
  const stats: LayerStat[] = Array.from({ length: depth }, (_, layer) => ({
    layer,
    rc: 0,
    rcStd: 0,
    sparsity: 0,
    sparsityStd: 0,
  }));
  const removers: (() => void)[] = [];
  for (let i = 0; i < depth; i++) {
    const { attn, ista } = model.transformer.layer(i);
    removers.push(
      attn.fn.qkv.registerForwardHook((_m, _in, out) => {
        const r = measureCodingRate(out as Tensor, model.config.heads, 0.01);
        (stats[i] as LayerStat).rc = r.mean;
        (stats[i] as LayerStat).rcStd = r.std;
      }),
      ista.registerForwardHook((_m, _in, out) => {
        const s = measureSparsity(out as Tensor);
        (stats[i] as LayerStat).sparsity = s.mean;
        (stats[i] as LayerStat).sparsityStd = s.std;
      }),
    );
  }
  model.eval();
  try {
    noGrad(() => tidy(() => model.forward(x).dispose()));
  } finally {
    model.train();
    for (const r of removers) r();
  }
  return stats;
}

export async function train(partial: Partial<TrainConfig>, hooks: TrainHooks = {}): Promise<TrainResult> {
  const t0 = performance.now();
  let c: TrainConfig = { ...DEFAULT_CONFIG, ...partial };
  const log = hooks.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  mkdirSync(c.outDir, { recursive: true });
  const metricsPath = join(c.outDir, 'metrics.jsonl');
  const metric = (o: object) =>
    appendFileSync(metricsPath, `${JSON.stringify({ time: new Date().toISOString(), ...o })}\n`);

  const resuming = c.resume && hasCheckpoint(c.outDir);
  manualSeed(c.seed);
  const data = loadData(c);
  const model = buildModel(c.model, data.shape, data.classes);
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
  const loader = new DataLoader(data.train, {
    batchSize: c.batchSize,
    shuffle: true,
    seed: c.seed,
    dropLast: true,
    transform: data.transform,
    prefetch: true,
  });
  const batches = loader.numBatches;
  const stepsPerEpoch = Math.floor(batches / c.accumulate);
  const totalSteps = stepsPerEpoch * c.epochs;
  const sched = warmupCosine({
    baseLr: c.lr,
    warmupSteps: Math.min(Math.round(c.warmupEpochs * stepsPerEpoch), totalSteps),
    totalSteps,
    minLr: c.minLr,
  });
  const diagLoader = new DataLoader(data.test, {
    batchSize: Math.min(c.diagSamples, data.test.length),
    transform: data.evalTransform,
  });
  let diagX: Tensor | null = null;
  for await (const b of diagLoader.epoch(0)) {
    diagX = keep(b.x);
    b.y.dispose();
    break;
  }
  await diagLoader.close();
  if (!diagX) throw new Error('train: empty test set');
  log(
    `[crate] ${c.model} (${(model.numParameters() / 1e6).toFixed(3)}M params) on ${c.data}: ${data.train.length} train / ${data.test.length} test, ` +
      `${c.epochs} epochs × ${stepsPerEpoch} steps, batch ${c.batchSize}${c.accumulate > 1 ? `×${c.accumulate}` : ''}, ${c.optimizer} lr ${c.lr}`,
  );
  const saveState = (epoch: number, batch: number) =>
    saveCheckpoint(c.outDir, model, opt, { step, epoch, batch, config: { ...c }, extra: { history } });
  if (!resuming) {
    const layers = diagnostics(model, diagX);
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
    for await (const b of loader.epoch(epoch, { startBatch: first })) {
      const lr = sched(step);
      for (const g of opt.paramGroups) g.lr = lr;
      const loss = tidy(() => {
        const l = crossEntropy(model.forward(b.x), b.y, { labelSmoothing: c.labelSmoothing });
        const v = l.item();
        if (Number.isFinite(v)) {
          if (c.accumulate > 1) {
            const scaled = l.mul(1 / c.accumulate);
            scaled.backward();
          } else l.backward();
        }
        return v;
      });
      b.x.dispose();
      b.y.dispose();
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
      seen += c.batchSize;
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
    const ev = await evaluate(model, data.test, data.evalTransform);
    const layers = diagnostics(model, diagX);
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
    history.evals.push({ epoch: epoch + 1, acc: ev.acc, layers });
    metric({ type: 'eval', ...rep });
    hooks.onEpoch?.(rep);
    saveState(epoch + 1, 0);
  }
  await loader.close();
  diagX.dispose();
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
    seconds: (performance.now() - t0) / 1000,
    files,
  };
  model.dispose();
  opt.dispose();
  return result;
}
