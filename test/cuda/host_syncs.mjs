// host_syncs.mjs: counts the blocking waits of the host on the device (memory().cuda.hostSyncs)
// in training steps on 'cuda': forward, cross-entropy (label smoothing for the classifiers, the
// LM's own loss for the language models, their token ids given on the host), backward,
// clipGradNorm, AdamW, and the loss read last, as the trainer does. Prints one JSON line { [model]: syncs per step }. Run by cuda_emu.test.ts
// (the real library's code, emulated) and cuda_fake.test.ts (the addon's own reads only) with
// CRATE_CUDA_LIB set; `node test/cuda/host_syncs.mjs` on a GPU machine prints the real count.
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const C = await import(join(root, 'lib', 'index.js'));
const { modelEntry } = await import(join(root, 'lib', 'train', 'tasks.js'));
if (!C.cudaAvailable()) throw new Error(`no usable CUDA: ${C.info().cudaReason}`);

const models =
  process.argv.slice(2).length > 0
    ? process.argv.slice(2)
    : ['crate-mini', 'crate-alpha-demo', 'tost-demo', 'crate-lm-demo', 'tost-lm-demo'];
const syncs = () => C.memory().cuda.hostSyncs;
const out = {};
// 'crate-lm-demo@cuda-ids': the same LM step with its ids already on the device (read back to be checked)
for (const spec of models.flatMap((m) => (m === 'crate-lm-demo' ? [m, `${m}@cuda-ids`] : [m]))) {
  const [name, where] = spec.split('@');
  const lm = modelEntry(name).task === 'lm';
  const model = (lm ? modelEntry(name).build([1, 1, 1], 256) : modelEntry(name).build([1, 28], 10)).to('cuda');
  const opt = new C.optim.AdamW(model.parameters(), { lr: 1e-3 });
  // LM ids stay on the host, as the trainer passes them: the model checks them there and copies them up
  let x = lm
    ? C.tensor(
        Array.from({ length: 32 }, (_, i) => (i * 37) % 256),
        { dtype: 'i32', shape: [2, 16] },
      )
    : C.randn([4, 1, 28, 28], { seed: 1 }).to('cuda');
  if (where === 'cuda-ids') x = x.to('cuda');
  const y = lm ? x : C.tensor([1, 2, 3, 4], { dtype: 'i32' }).to('cuda');
  const step = () => {
    const loss = lm ? model.forward(x, y).loss : C.crossEntropy(model.forward(x), y, { labelSmoothing: 0.1 });
    loss.backward();
    C.optim.clipGradNorm(model.parameters(), 1);
    opt.step();
    opt.zeroGrad();
    const v = loss.item();
    loss.dispose();
    return v;
  };
  step(); // warm-up (first-use allocations, lazily created state)
  const steps = 3;
  const before = syncs();
  for (let i = 0; i < steps; i++) C.tidy(step);
  out[spec] = (syncs() - before) / steps;
}
console.log(JSON.stringify(out));
