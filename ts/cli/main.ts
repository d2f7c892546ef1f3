// main.ts: the `crate` CLI: `crate train` (defaults: a small CRATE on the embedded MNIST, CPU),
// `crate eval`, `crate info`, `crate bench`; `--help` on each. Progress bars via cli-progress on
// a TTY, one plain line every few seconds otherwise; metrics go to <out>/metrics.jsonl.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { info } from '../index.js';
import { modelEntry, modelNames } from '../train/tasks.js';
import { DEFAULT_CONFIG, type TrainConfig, train } from '../train/trainer.js';

/** A number for the console; '—' for a measurement a layer does not have (NaN). */
const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : '—');

const modelList = () =>
  modelNames()
    .map((n) => `      ${n.padEnd(20)} ${modelEntry(n).task.padEnd(9)} ${modelEntry(n).summary}`)
    .join('\n');

const HELP = (): Record<string, string> => ({
  main: `crate <command> [options]

Commands:
  train   train a model of the CRATE family (default: a small CRATE on the embedded MNIST, CPU)
  eval    evaluate a checkpoint on the test split
  info    what the native build holds (CUDA, GPU, BLAS, threads) and why anything is missing
  bench   run the benchmark suite (see bench/README.md)

Run 'crate <command> --help' for the options of a command.`,
  train: `crate train [options]

  --model <name>        default crate-demo; the task follows from the model:
${modelList()}
  --data <name>         images: mnist (embedded, default), cifar10 (needs --data-dir) or folder
                        (--data-dir with train/<class>/ and test/<class>/ image files, read with sharp);
                        language models always read text (the embedded corpus or --text-file)
  --data-dir <dir>      folder of the CIFAR-10 binary batches, or of the image folders
  --image-size <n>      --data folder: images are resized to n × n (default 32)
  --text-file <file>    language models: train on this UTF-8 file (byte tokens) instead
  --mask-ratio <x>      CRATE-MAE: fraction of patches masked, default ${DEFAULT_CONFIG.maskRatio}
  --epochs <n>          default ${DEFAULT_CONFIG.epochs}
  --batch <n>           batch size, default ${DEFAULT_CONFIG.batchSize}
  --accumulate <n>      gradient accumulation steps, default 1
  --lr <x>              peak learning rate, default ${DEFAULT_CONFIG.lr} (warmup + cosine per step)
  --min-lr <x>          default ${DEFAULT_CONFIG.minLr}
  --warmup-epochs <x>   default ${DEFAULT_CONFIG.warmupEpochs}
  --optimizer <name>    adamw (default), sgd (Nesterov momentum 0.9), lion
  --weight-decay <x>    default ${DEFAULT_CONFIG.weightDecay} (biases, norms, positions, cls excluded)
  --label-smoothing <x> default ${DEFAULT_CONFIG.labelSmoothing}
  --clip <x>            global gradient-norm clip, 0 = off; default ${DEFAULT_CONFIG.clip}
  --augment             random crop with padding (and flips on CIFAR)
  --seed <n>            default 0; runs are reproducible for a seed
  --limit-train <n>     use the first n training samples (0 = all)
  --limit-test <n>      use the first n test samples (0 = all)
  --out <dir>           metrics.jsonl, checkpoint.safetensors and report.svg/png; default runs/<model>
  --resume              continue from <out>/checkpoint.safetensors (same loss sequence as an uninterrupted run)
  --save-every <n>      also checkpoint every n steps
  --max-steps <n>       stop after n optimizer steps (checkpoint kept)
  --device <cpu|cuda>   default cpu (cuda: the CUDA kernels, f32; diagnostics run on the cpu)
  --amp                 bf16 autocast on cuda: GEMMs, MSSA and ISTA in bf16 (f32 master weights)
  --threads <n>         CPU threads (default: all cores)
  --config <file.json>  options as JSON (keys as in TrainConfig); flags override it`,
  eval: `crate eval --out <dir> [--limit-test n]

  Loads <dir>/checkpoint.safetensors with the model config saved in it and prints test accuracy
  and the per-layer R^c and sparsity.`,
  info: `crate info [--json]

  Prints what the native addon was built with and found at run time: CUDA compiled in, GPU and
  driver found (or why not), the BLAS library loaded (or why not), the GEMM backend and threads.`,
  bench: `crate bench [--registry] [--filter <op>] [--quick] [--device cpu|cuda] [--outdir <dir>] [--name <name>]

  Runs the kernel benchmarks (bench/run.mjs: fused CRATE ops vs their composite path, GEMMs,
  MSSA memory) on the CPU or the GPU and writes JSON lines and a markdown table to
  bench/results/<device>-ops.{jsonl,md}. With --registry: every op of the test registry on its
  training-sized perf case, forward and forward+backward (bench/registry.mjs, GB/s and GFLOP/s;
  bench/results/registry-<device>.{jsonl,md}). Training steps vs PyTorch: node bench/train_step.mjs.`,
});

function trainArgs(argv: string[]): { cfg: Partial<TrainConfig>; threads: number } {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      'data-dir': { type: 'string' },
      'text-file': { type: 'string' },
      'image-size': { type: 'string' },
      'mask-ratio': { type: 'string' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      accumulate: { type: 'string' },
      lr: { type: 'string' },
      'min-lr': { type: 'string' },
      'warmup-epochs': { type: 'string' },
      optimizer: { type: 'string' },
      'weight-decay': { type: 'string' },
      'label-smoothing': { type: 'string' },
      clip: { type: 'string' },
      augment: { type: 'boolean' },
      seed: { type: 'string' },
      'limit-train': { type: 'string' },
      'limit-test': { type: 'string' },
      out: { type: 'string' },
      resume: { type: 'boolean' },
      'save-every': { type: 'string' },
      'max-steps': { type: 'string' },
      device: { type: 'string' },
      amp: { type: 'boolean' },
      threads: { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const num = (k: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${k} must be a number, got '${v}'`);
    return n;
  };
  const cfg: Partial<TrainConfig> = values.config ? JSON.parse(readFileSync(values.config, 'utf8')) : {};
  const set = <K extends keyof TrainConfig>(k: K, v: TrainConfig[K] | undefined) => {
    if (v !== undefined) cfg[k] = v;
  };
  set('model', values.model);
  set('data', values.data as TrainConfig['data'] | undefined);
  set('dataDir', values['data-dir']);
  set('textFile', values['text-file']);
  set('imageSize', num('image-size', values['image-size']));
  set('maskRatio', num('mask-ratio', values['mask-ratio']));
  set('epochs', num('epochs', values.epochs));
  set('batchSize', num('batch', values.batch));
  set('accumulate', num('accumulate', values.accumulate));
  set('lr', num('lr', values.lr));
  set('minLr', num('min-lr', values['min-lr']));
  set('warmupEpochs', num('warmup-epochs', values['warmup-epochs']));
  set('optimizer', values.optimizer as TrainConfig['optimizer'] | undefined);
  set('weightDecay', num('weight-decay', values['weight-decay']));
  set('labelSmoothing', num('label-smoothing', values['label-smoothing']));
  set('clip', num('clip', values.clip));
  set('augment', values.augment);
  set('seed', num('seed', values.seed));
  set('limitTrain', num('limit-train', values['limit-train']));
  set('limitTest', num('limit-test', values['limit-test']));
  set('outDir', values.out ?? (cfg.outDir === undefined ? `runs/${cfg.model ?? DEFAULT_CONFIG.model}` : undefined));
  set('resume', values.resume);
  set('saveEvery', num('save-every', values['save-every']));
  set('maxSteps', num('max-steps', values['max-steps']));
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') {
    throw new Error(`--device must be cpu or cuda, got '${values.device}'`);
  }
  set('device', values.device as TrainConfig['device'] | undefined);
  set('amp', values.amp);
  return { cfg, threads: num('threads', values.threads) ?? 0 };
}

async function runTrain(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP().train);
    return 0;
  }
  const { cfg, threads } = trainArgs(argv);
  if (threads > 0) (await import('../index.js')).setNumThreads(threads);
  const tty = process.stdout.isTTY;
  let bar: { update(v: number, p?: object): void; start(t: number, v: number, p?: object): void; stop(): void } | null =
    null;
  let lastLine = 0;
  const startedAt = performance.now();
  const res = await train(cfg, {
    onStep: (s) => {
      if (tty) {
        if (!bar) {
          const cp = require_('cli-progress') as typeof import('cli-progress');
          bar = new cp.SingleBar({
            format: 'epoch {epoch} |{bar}| {value}/{total} loss {loss} | {sps} samples/s | eta {eta_formatted}',
            hideCursor: true,
          });
          bar.start(s.batches, s.batch, {
            epoch: s.epoch + 1,
            loss: s.loss.toFixed(4),
            sps: s.samplesPerSec.toFixed(0),
          });
        }
        bar.update(s.batch, { epoch: s.epoch + 1, loss: s.loss.toFixed(4), sps: s.samplesPerSec.toFixed(0) });
      } else if (performance.now() - lastLine > 5000) {
        lastLine = performance.now();
        const left = ((s.batches - s.batch) * 1) / Math.max(s.samplesPerSec, 1e-9);
        console.log(
          `epoch ${s.epoch + 1} batch ${s.batch}/${s.batches} step ${s.step} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)} ${s.samplesPerSec.toFixed(0)} samples/s eta(epoch) ${(left * (cfg.batchSize ?? DEFAULT_CONFIG.batchSize)).toFixed(0)}s`,
        );
      }
    },
    onEpoch: (r) => {
      if (bar) {
        bar.stop();
        bar = null;
      }
      const acc = Number.isFinite(r.acc) ? `, test accuracy ${(100 * r.acc).toFixed(2)}%` : '';
      console.log(
        `epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)}, test loss ${r.testLoss.toFixed(4)}${acc}, ${r.seconds.toFixed(1)}s (${r.samplesPerSec.toFixed(0)} samples/s)`,
      );
      console.log(`  per-layer R^c:     ${r.layers.map((l) => fmt(l.rc, 1)).join('  ')}`);
      if (r.layers.some((l) => Number.isFinite(l.sparsity)))
        console.log(`  per-layer sparsity (‖Z‖₀/ND): ${r.layers.map((l) => fmt(1 - l.sparsity, 3)).join('  ')}`);
    },
  });
  if (bar) (bar as { stop(): void }).stop();
  const final = Number.isFinite(res.finalAcc)
    ? `test accuracy ${(100 * res.finalAcc).toFixed(2)}%`
    : `test loss ${res.finalLoss.toFixed(4)}`;
  console.log(
    `done (${res.status}) in ${((performance.now() - startedAt) / 1000).toFixed(1)}s: ${res.steps} steps, ${final}`,
  );
  if (res.sample !== undefined) console.log(`sample from the model:\n${res.sample}`);
  console.log(`files: ${res.files.join(', ')}`);
  return res.status === 'nonfinite' ? 2 : 0;
}

import { createRequire } from 'node:module';

const require_ = createRequire(import.meta.url);

async function runEval(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP().eval);
    return 0;
  }
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, 'limit-test': { type: 'string' } } });
  if (!values.out) throw new Error('crate eval: --out <dir> (the training output folder) is required');
  const { evaluateCheckpoint } = await import('../train/evaluate.js');
  const r = await evaluateCheckpoint(values.out, Number(values['limit-test'] ?? 0));
  console.log(
    Number.isFinite(r.acc)
      ? `${r.model}: test accuracy ${(100 * r.acc).toFixed(2)}%, test loss ${r.loss.toFixed(4)}`
      : `${r.model} (${r.kind}): test loss ${r.loss.toFixed(4)}`,
  );
  console.log(`per-layer R^c:     ${r.layers.map((l) => fmt(l.rc, 1)).join('  ')}`);
  console.log(`per-layer sparsity (‖Z‖₀/ND): ${r.layers.map((l) => fmt(1 - l.sparsity, 3)).join('  ')}`);
  return 0;
}

function runInfo(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP().info);
    return 0;
  }
  const i = info();
  if (argv.includes('--json')) {
    console.log(JSON.stringify(i, null, 2));
    return 0;
  }
  console.log(`crate-ml ${i.version}`);
  console.log(`CPU threads:     ${i.threads}`);
  console.log(`CPU vectors:     ${i.cpuVector}`);
  console.log(`GEMM backend:    ${i.gemmBackend}${i.blasLibrary ? ` (${i.blasLibrary})` : ''}`);
  if (!i.blasLibrary) console.log(`BLAS:            not loaded: ${i.blasReason}`);
  console.log(
    `CUDA compiled:   ${i.cudaCompiled ? `yes (${i.cuda?.compiledArchs ?? ''})` : 'no (nvcc was not found at build time)'}`,
  );
  console.log(`CUDA library:    ${i.cudaLibrary ?? 'not loaded'}`);
  if (i.cudaAvailable) {
    console.log(
      `GPU:             ${i.cuda?.name} (sm ${i.cuda?.computeCapability}, ${i.cuda?.smCount} SMs, ${((i.cuda?.totalMemory ?? 0) / 2 ** 30).toFixed(1)} GiB), driver ${i.cuda?.driverVersion}`,
    );
  } else {
    console.log(`GPU:             none usable: ${i.cudaReason}`);
  }
  return 0;
}

async function runBench(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP().bench);
    return 0;
  }
  const { runBench: run } = await import('../bench/run.js');
  return run(argv);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'train':
      return runTrain(rest);
    case 'eval':
      return runEval(rest);
    case 'info':
      return runInfo(rest);
    case 'bench':
      return runBench(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(HELP().main);
      return cmd === undefined ? 1 : 0;
    default:
      console.error(`crate: unknown command '${cmd}'\n\n${HELP().main}`);
      return 1;
  }
}
