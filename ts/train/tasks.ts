// tasks.ts: what `crate train` trains, behind one interface the training loop drives: image
// classification (CRATE, CRATE-α, ToST), masked autoencoding (CRATE-MAE) and causal language
// modelling (causal CRATE, causal ToST). A task owns its model, data, per-batch loss, evaluation
// and white-box diagnostics; batches are a pure function of (seed, epoch, index) so a resumed
// run sees exactly the batches an uninterrupted one would.

import { readFileSync } from 'node:fs';
import { noGrad } from '../autograd.js';
import { loadDefaultCorpus, trainValSplit } from '../data/corpus.js';
import {
  cifarDataset,
  DataLoader,
  type Dataset,
  ImageFolder,
  mnistDataset,
  readCifar10,
  type TransformSpec,
} from '../data/index.js';
import { ByteTokenizer, CorpusSampler } from '../data/text.js';
import type { Device } from '../dtype.js';
import { keep, tidy } from '../memory.js';
import { CRATE_PRESETS, crateFromPreset } from '../models/crate.js';
import { CRATE_ALPHA_PRESETS, crateAlphaFromPreset } from '../models/crate_alpha.js';
import { type CausalLM, CRATE_LM_PRESETS, crateLMFromPreset } from '../models/crate_lm.js';
import { CRATE_MAE_PRESETS, type CrateMAE, crateMaeFromPreset } from '../models/crate_mae.js';
import { TOST_LM_PRESETS, TOST_PRESETS, tostFromPreset, tostLMFromPreset } from '../models/tost.js';
import type { Module } from '../nn/module.js';
import { tensor } from '../ops/creation.js';
import { crossEntropy } from '../ops/nn.js';
import type { Tensor } from '../tensor.js';
import type { LayerStat } from '../viz/plot.js';
import { layerDiagnostics } from './diagnostics.js';

export type TaskKind = 'classify' | 'mae' | 'lm';

export interface TaskBatch {
  x: Tensor;
  y: Tensor;
  index: number;
  dispose(): void;
}

export interface EvalResult {
  /** mean loss over the evaluation set (cross-entropy; masked-patch MSE for MAE) */
  loss: number;
  /** top-1 accuracy for classification, NaN otherwise */
  acc: number;
}

export interface Task {
  readonly kind: TaskKind;
  readonly model: Module;
  /** e.g. 'mnist: 60000 train / 10000 test' */
  readonly describe: string;
  readonly numBatches: number;
  readonly samplesPerBatch: number;
  batches(epoch: number, startBatch: number): AsyncIterable<TaskBatch>;
  /** Scalar training loss of one batch, with the graph attached. */
  loss(b: TaskBatch, epoch: number): Tensor;
  evaluate(): Promise<EvalResult>;
  diagnostics(): LayerStat[];
  /** LM: text generated from a prompt by the current model */
  sample?(prompt?: string, tokens?: number): string;
  close(): Promise<void>;
}

/** The settings a task reads (a subset of TrainConfig). */
export interface TaskConfig {
  model: string;
  data: string;
  dataDir?: string;
  batchSize: number;
  seed: number;
  limitTrain: number;
  limitTest: number;
  diagSamples: number;
  augment: boolean;
  labelSmoothing: number;
  /** MAE: fraction of patches masked (0.75) */
  maskRatio: number;
  /** LM: a UTF-8 text file to train on instead of the embedded corpus */
  textFile?: string;
  /** --data folder: images are resized to imageSize × imageSize (32) */
  imageSize?: number;
  /** where the model and batches live (default cpu) */
  device?: Device;
}

/** A batch's tensors on `device` (the host batch is freed with it). */
function onDevice(b: TaskBatch, device: Device): TaskBatch {
  if (device === 'cpu') return b;
  const x = b.x.to(device);
  const y = b.y.to(device);
  b.dispose();
  return {
    x,
    y,
    index: b.index,
    dispose: () => {
      x.dispose();
      y.dispose();
    },
  };
}

/** A tensor on `device`; the original is freed when it was moved. */
function moveTo(t: Tensor, device: Device): Tensor {
  if (t.device === device) return t;
  const m = t.to(device);
  t.dispose();
  return m;
}

// ------------------------------------------------------------------ image data

interface ImageData {
  name: string;
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

export async function loadImageData(
  c: Pick<TaskConfig, 'data' | 'dataDir' | 'limitTrain' | 'limitTest' | 'augment' | 'imageSize'>,
): Promise<ImageData> {
  if (c.data === 'folder') {
    // torchvision's ImageFolder layout: <dataDir>/train/<class>/*.png|jpg…, <dataDir>/test/<class>/…
    if (!c.dataDir) throw new Error('train: --data folder needs --data-dir with train/<class>/ and test/<class>/');
    const size = c.imageSize ?? 32;
    const [train, test] = await Promise.all([
      ImageFolder.open(`${c.dataDir}/train`, { size: [size, size] }),
      ImageFolder.open(`${c.dataDir}/test`, { size: [size, size] }),
    ]);
    if (train.classes.join() !== test.classes.join()) {
      throw new Error(`train: train/ and test/ class folders differ: [${train.classes}] vs [${test.classes}]`);
    }
    const norm: TransformSpec = { type: 'normalize', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    return {
      name: `folder ${c.dataDir}`,
      train: subset(train, c.limitTrain),
      test: subset(test, c.limitTest),
      shape: [3, size, size],
      classes: train.classes.length,
      transform: c.augment
        ? [
            { type: 'toFloat' },
            { type: 'randomCrop', size, padding: Math.round(size / 8) },
            { type: 'randomHorizontalFlip' },
            norm,
          ]
        : [{ type: 'toFloat' }, norm],
      evalTransform: [{ type: 'toFloat' }, norm],
    };
  }
  if (c.data === 'mnist') {
    const norm: TransformSpec = { type: 'normalize', mean: [0.1307], std: [0.3081] };
    return {
      name: 'mnist',
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
    const dir = c.dataDir;
    const trainFiles = [1, 2, 3, 4, 5].map((i) => `${dir}/data_batch_${i}.bin`);
    const norm: TransformSpec = { type: 'normalize', mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
    return {
      name: 'cifar10',
      train: subset(cifarDataset(readCifar10(trainFiles)), c.limitTrain),
      test: subset(cifarDataset(readCifar10(`${dir}/test_batch.bin`)), c.limitTest),
      shape: [3, 32, 32],
      classes: 10,
      transform: c.augment
        ? [{ type: 'toFloat' }, { type: 'randomCrop', size: 32, padding: 4 }, { type: 'randomHorizontalFlip' }, norm]
        : [{ type: 'toFloat' }, norm],
      evalTransform: [{ type: 'toFloat' }, norm],
    };
  }
  throw new Error(`train: unknown image dataset '${String(c.data)}' (mnist, cifar10, folder)`);
}

// ------------------------------------------------------------------ models by name

/** A model the CLI can build: its task and a constructor from the data's shape. */
export interface ModelEntry {
  task: TaskKind;
  summary: string;
  /** classification / MAE: image shape (C, H, W) and classes; LM: vocabulary size in `classes` */
  build(shape: [number, number, number], classes: number): Module & { forward(...a: never[]): unknown };
}

/** Small CRATE configs for the embedded data (the published presets are for 224×224 ImageNet). */
export const DEMO_PRESETS: Record<
  string,
  { dim: number; depth: number; heads: number; dimHead: number; patch: number }
> = {
  'crate-demo': { dim: 96, depth: 4, heads: 4, dimHead: 24, patch: 7 },
  'crate-mini': { dim: 64, depth: 2, heads: 2, dimHead: 32, patch: 7 },
};

const registry = new Map<string, ModelEntry>();

/** Adds a model name to `crate train --model` (the model families register themselves below). */
export function registerModel(name: string, e: ModelEntry): void {
  registry.set(name, e);
}
export function modelNames(): string[] {
  return [...registry.keys()];
}
export function modelEntry(name: string): ModelEntry {
  const e = registry.get(name);
  if (!e) throw new Error(`train: unknown model '${name}'; choose one of ${modelNames().join(', ')}`);
  return e;
}

for (const [name, demo] of Object.entries(DEMO_PRESETS)) {
  registerModel(name, {
    task: 'classify',
    summary: `CRATE classifier, dim ${demo.dim}, depth ${demo.depth}, ${demo.heads} heads (for 28×28/32×32 data)`,
    build: ([ch, hw], classes) =>
      crateFromPreset('crate-tiny', {
        ...demo,
        imageSize: hw,
        patchSize: hw % demo.patch === 0 ? demo.patch : 4,
        numClasses: classes,
        channels: ch,
      }),
  });
}
for (const name of Object.keys(CRATE_PRESETS)) {
  registerModel(name, {
    task: 'classify',
    summary: `CRATE classifier, published preset ${name}`,
    build: ([ch, hw], classes) =>
      crateFromPreset(name, { imageSize: hw, patchSize: hw % 16 === 0 ? 16 : 4, numClasses: classes, channels: ch }),
  });
}

for (const [name, p] of Object.entries(CRATE_ALPHA_PRESETS)) {
  registerModel(name, {
    task: 'classify',
    summary: `CRATE-α classifier (overcomplete ISTA ×${p.overcomplete ?? 4}), dim ${p.dim}, depth ${p.depth}, ${p.heads} heads`,
    build: ([ch, hw], classes) =>
      crateAlphaFromPreset(name, {
        imageSize: hw,
        channels: ch,
        numClasses: classes,
        patchSize: hw % p.patchSize === 0 ? p.patchSize : hw % 16 === 0 ? 16 : 4,
      }),
  });
}
for (const [name, p] of Object.entries(CRATE_MAE_PRESETS)) {
  registerModel(name, {
    task: 'mae',
    summary: `CRATE-MAE masked autoencoder, dim ${p.dim}, depth ${p.depth}+${p.decoderDepth ?? p.depth}, ${p.heads} heads`,
    build: ([ch, hw]) =>
      crateMaeFromPreset(name, {
        imageSize: hw,
        channels: ch,
        patchSize: hw % p.patchSize === 0 ? p.patchSize : hw % 16 === 0 ? 16 : 4,
      }),
  });
}
for (const [name, p] of Object.entries(CRATE_LM_PRESETS)) {
  registerModel(name, {
    task: 'lm',
    summary: `causal CRATE language model, dim ${p.dim}, depth ${p.depth}, ${p.heads} heads, block ${p.blockSize}`,
    build: (_shape, vocab) => crateLMFromPreset(name, { vocabSize: vocab }),
  });
}

for (const [name, p] of Object.entries(TOST_PRESETS)) {
  registerModel(name, {
    task: 'classify',
    summary: `ToST classifier (TSSA, linear in tokens), dim ${p.dim}, depth ${p.depth}, ${p.heads} heads`,
    build: ([ch, hw], classes) =>
      tostFromPreset(name, {
        imageSize: hw,
        channels: ch,
        numClasses: classes,
        ...(hw % p.patchSize === 0 ? {} : { patchSize: hw % 16 === 0 ? 16 : 4, patchEmbed: 'linear' as const }),
      }),
  });
}
for (const [name, p] of Object.entries(TOST_LM_PRESETS)) {
  registerModel(name, {
    task: 'lm',
    summary: `causal ToST language model (causal TSSA), dim ${p.dim}, depth ${p.depth}, ${p.heads} heads, block ${p.blockSize}`,
    build: (_shape, vocab) => tostLMFromPreset(name, { vocabSize: vocab }),
  });
}

/** A classifier by model name for images of `shape` (kept for callers of the old trainer API). */
export function buildModel(name: string, shape: [number, number, number], classes: number): Module {
  const e = modelEntry(name);
  if (e.task !== 'classify') throw new Error(`buildModel: '${name}' is a ${e.task} model, not a classifier`);
  return e.build(shape, classes);
}

// ------------------------------------------------------------------ classification

type Classifier = Module & { forward(x: Tensor): Tensor };

/** Accuracy and mean cross-entropy of a classifier over a dataset (no gradients). */
export async function evaluateClassifier(
  model: Classifier,
  ds: Dataset,
  transform: TransformSpec[],
  batchSize = 500,
  device: Device = 'cpu',
): Promise<EvalResult> {
  const loader = new DataLoader(ds, { batchSize, transform });
  let correct = 0;
  let lossSum = 0;
  let n = 0;
  const wasTraining = model.training;
  model.eval();
  try {
    for await (const hb of loader.epoch(0)) {
      const b = onDevice(hb, device);
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
      b.dispose();
    }
  } finally {
    await loader.close();
    model.train(wasTraining);
  }
  return { acc: correct / Math.max(n, 1), loss: lossSum / Math.max(n, 1) };
}

/** The first `n` evaluation images, kept for the per-epoch diagnostics. */
async function diagnosticBatch(ds: Dataset, n: number, transform: TransformSpec[]): Promise<Tensor> {
  const dl = new DataLoader(ds, { batchSize: Math.max(1, Math.min(n, ds.length)), transform });
  try {
    for await (const b of dl.epoch(0)) {
      const x = keep(b.x);
      b.y.dispose();
      return x;
    }
  } finally {
    await dl.close();
  }
  throw new Error('train: empty test set');
}

/** A task over image batches: the shared part of classification and MAE. */
async function imageTask(
  c: TaskConfig,
  kind: TaskKind,
  lossOf: (model: Module, b: TaskBatch, epoch: number) => Tensor,
  evaluateOn: (model: Module, data: ImageData) => Promise<EvalResult>,
  diagForward: (model: Module, x: Tensor) => unknown,
): Promise<Task> {
  const data = await loadImageData(c);
  const device = c.device ?? 'cpu';
  const model = modelEntry(c.model).build(data.shape, data.classes).to(device);
  const loader = new DataLoader(data.train, {
    batchSize: c.batchSize,
    shuffle: true,
    seed: c.seed,
    dropLast: true,
    transform: data.transform,
    prefetch: true,
  });
  const diagX = keep(moveTo(await diagnosticBatch(data.test, c.diagSamples, data.evalTransform), device));
  return {
    kind,
    model,
    describe: `${data.name}: ${data.train.length} train / ${data.test.length} test`,
    numBatches: loader.numBatches,
    samplesPerBatch: c.batchSize,
    batches: async function* (epoch, startBatch) {
      for await (const b of loader.epoch(epoch, { startBatch })) yield onDevice(b, device);
    },
    loss: (b, epoch) => lossOf(model, b, epoch),
    evaluate: () => evaluateOn(model, data),
    diagnostics: () => layerDiagnostics(model, () => diagForward(model, diagX)),
    close: async () => {
      await loader.close();
      diagX.dispose();
      model.dispose();
    },
  };
}

export function classificationTask(c: TaskConfig): Promise<Task> {
  return imageTask(
    c,
    'classify',
    (model, b) => crossEntropy((model as Classifier).forward(b.x), b.y, { labelSmoothing: c.labelSmoothing }),
    (model, data) => evaluateClassifier(model as Classifier, data.test, data.evalTransform, 500, c.device ?? 'cpu'),
    (model, x) => (model as Classifier).forward(x),
  );
}

// ------------------------------------------------------------------ masked autoencoding

/** The masking seed of a training batch: a pure function of (seed, epoch, batch). */
const maskSeed = (seed: number, epoch: number, index: number) =>
  (((seed * 1000003) ^ (epoch * 7919)) + index * 104729) >>> 0;

/** Mean masked-patch MSE over a dataset, each batch masked with a fixed seed (no gradients). */
export async function evaluateMae(
  model: CrateMAE,
  ds: Dataset,
  transform: TransformSpec[],
  batchSize = 500,
  device: Device = 'cpu',
): Promise<EvalResult> {
  const loader = new DataLoader(ds, { batchSize, transform });
  let sum = 0;
  let n = 0;
  const wasTraining = model.training;
  model.eval();
  try {
    for await (const hb of loader.epoch(0)) {
      const b = onDevice(hb, device);
      const B = b.x.shape[0] as number;
      sum += noGrad(() => tidy(() => model.forward(b.x, { seed: maskSeed(12345, 0, b.index) }).loss.item())) * B;
      n += B;
      b.dispose();
    }
  } finally {
    await loader.close();
    model.train(wasTraining);
  }
  return { loss: sum / Math.max(n, 1), acc: Number.NaN };
}

export function maeTask(c: TaskConfig): Promise<Task> {
  return imageTask(
    c,
    'mae',
    (model, b, epoch) =>
      (model as CrateMAE).forward(b.x, { maskRatio: c.maskRatio, seed: maskSeed(c.seed, epoch, b.index) }).loss,
    (model, data) => evaluateMae(model as CrateMAE, data.test, data.evalTransform, 500, c.device ?? 'cpu'),
    (model, x) => (model as CrateMAE).forward(x, { maskRatio: c.maskRatio, seed: 0 }),
  );
}

// ------------------------------------------------------------------ causal language modelling

type LanguageModel = CausalLM;

/**
 * Next-token loss of a causal LM over non-overlapping windows of a token stream (no gradients).
 * The windows are made on the host; the model copies them to its own device.
 */
export function evaluateLm(
  model: LanguageModel,
  tokens: Int32Array,
  blockSize: number,
  maxWindows: number,
  batchSize = 32,
): EvalResult {
  const windows = Math.min(maxWindows, Math.floor((tokens.length - 1) / blockSize));
  if (windows < 1)
    throw new Error(`evaluate: ${tokens.length} validation tokens, need more than blockSize ${blockSize}`);
  let sum = 0;
  const wasTraining = model.training;
  model.eval();
  try {
    for (let w0 = 0; w0 < windows; w0 += batchSize) {
      const nb = Math.min(batchSize, windows - w0);
      const x = new Int32Array(nb * blockSize);
      const y = new Int32Array(nb * blockSize);
      for (let i = 0; i < nb; i++) {
        const s = (w0 + i) * blockSize;
        x.set(tokens.subarray(s, s + blockSize), i * blockSize);
        y.set(tokens.subarray(s + 1, s + 1 + blockSize), i * blockSize);
      }
      sum +=
        noGrad(() =>
          tidy(() => {
            // host ids: the model checks them on the host and copies them to its device
            const shape = [nb, blockSize];
            const out = model.forward(tensor(x, { shape, dtype: 'i32' }), tensor(y, { shape, dtype: 'i32' }));
            return (out.loss as Tensor).item();
          }),
        ) * nb;
    }
  } finally {
    model.train(wasTraining);
  }
  return { loss: sum / windows, acc: Number.NaN };
}

export async function lmTask(c: TaskConfig): Promise<Task> {
  const corpus = c.textFile ? { text: readFileSync(c.textFile, 'utf8'), name: c.textFile } : loadDefaultCorpus();
  const tok = new ByteTokenizer();
  const { train, val } = trainValSplit(tok.encode(corpus.text), 0.9);
  const device = c.device ?? 'cpu';
  const model = (modelEntry(c.model).build([1, 1, 1], tok.vocabSize) as LanguageModel).to(device);
  const T = model.blockSize;
  const trainTokens = c.limitTrain > 0 ? train.subarray(0, Math.min(train.length, c.limitTrain * T + 1)) : train;
  const sampler = new CorpusSampler(trainTokens, { blockSize: T, batchSize: c.batchSize, seed: c.seed });
  // an epoch = as many random windows as tokens in the training split
  const numBatches = Math.max(1, Math.floor(trainTokens.length / (c.batchSize * T)));
  const evalWindows = c.limitTest > 0 ? c.limitTest : 256;
  const diagTokens = val.subarray(0, Math.min(val.length, Math.min(c.diagSamples, 16) * T));
  const diagX = tensor(diagTokens.subarray(0, Math.floor(diagTokens.length / T) * T), {
    shape: [Math.floor(diagTokens.length / T), T],
    dtype: 'i32',
    device,
  });
  keep(diagX);
  return {
    kind: 'lm',
    model,
    describe: `${corpus.name}: ${trainTokens.length} train / ${val.length} validation byte tokens, block ${T}`,
    numBatches,
    samplesPerBatch: c.batchSize,
    // Host batches: the model checks the ids on the host and copies them up itself (no host wait
    // for the id checks on CUDA; CausalLM.forward).
    async *batches(epoch, startBatch) {
      for (let i = startBatch; i < numBatches; i++) {
        const { x, y } = sampler.batch(epoch * numBatches + i);
        yield {
          x,
          y,
          index: i,
          dispose: () => {
            x.dispose();
            y.dispose();
          },
        };
      }
    },
    loss: (b) => model.forward(b.x, b.y).loss as Tensor,
    evaluate: async () => evaluateLm(model, val, T, evalWindows, 32),
    diagnostics: () => layerDiagnostics(model, () => model.forward(diagX)),
    sample: (prompt = '\n', n = 200) =>
      noGrad(() =>
        tidy(() => {
          const ids = model.generate(tok.encode(prompt), n, { temperature: 0.8, topK: 40, seed: c.seed }).to('cpu');
          return tok.decode(ids.dataSync());
        }),
      ),
    close: async () => {
      diagX.dispose();
      model.dispose();
    },
  };
}

/** The task for a model name and config. */
export function makeTask(c: TaskConfig): Promise<Task> {
  const e = modelEntry(c.model);
  if (e.task === 'classify') return classificationTask(c);
  if (e.task === 'mae') return maeTask(c);
  return lmTask(c);
}
