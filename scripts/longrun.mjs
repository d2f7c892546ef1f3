#!/usr/bin/env node
// longrun.mjs: the long form of the memory-flatness check: N training steps (default 1000) of a
// small CRATE with AdamW; prints live tensors, native bytes and RSS every 100 steps and fails if
// tensors or native bytes drift after warm-up or RSS keeps growing.
//   node scripts/longrun.mjs [steps]
const C = await import(new URL('../lib/index.js', import.meta.url).href);
const { CRATE } = await import(new URL('../lib/models/crate.js', import.meta.url).href);
const { AdamW } = await import(new URL('../lib/optim/index.js', import.meta.url).href);
const steps = Number(process.argv[2] ?? 1000);
C.manualSeed(0);
const model = new CRATE({
  imageSize: 16,
  patchSize: 4,
  numClasses: 10,
  dim: 32,
  depth: 2,
  heads: 2,
  dimHead: 16,
  channels: 1,
});
const opt = new AdamW(model.parameters(), { lr: 1e-3 });
const x = C.randn([32, 1, 16, 16], { seed: 1 });
const y = C.tensor(
  Array.from({ length: 32 }, (_, i) => i % 10),
  { dtype: 'i32' },
);
const samples = [];
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  C.tidy(() => C.crossEntropy(model.forward(x), y).backward());
  opt.step();
  opt.zeroGrad();
  // Yield to the event loop like a real training loop does (awaiting the next batch): N-API runs
  // the native finalizers of garbage-collected handles from the event loop.
  if (step % 10 === 0) await new Promise((r) => setImmediate(r));
  if (step % 100 === 0 || step === 20) {
    const m = C.memory();
    const mu = process.memoryUsage();
    if (globalThis.gc) globalThis.gc();
    const s = {
      step,
      tensors: m.numTensors,
      bytes: m.cpu.bytes,
      rssMiB: mu.rss / 2 ** 20,
      heapMiB: mu.heapUsed / 2 ** 20,
      heapTotalMiB: mu.heapTotal / 2 ** 20,
      externalMiB: mu.external / 2 ** 20,
    };
    samples.push(s);
    console.log(JSON.stringify(s));
  }
}
const warm = samples[0];
const last = samples[samples.length - 1];
const mid = samples[Math.floor(samples.length / 2)];
const ok = last.tensors === warm.tensors && last.bytes === warm.bytes && last.rssMiB - mid.rssMiB < 32;
console.log(
  `${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)}s: live tensors ${warm.tensors} -> ${last.tensors}, native bytes ${warm.bytes} -> ${last.bytes}, RSS ${warm.rssMiB.toFixed(1)} -> ${mid.rssMiB.toFixed(1)} -> ${last.rssMiB.toFixed(1)} MiB: ${ok ? 'FLAT' : 'GROWING'}`,
);
process.exit(ok ? 0 : 1);
