#!/usr/bin/env node
// device_pack.mjs: packs what a GPU machine with no Node.js and no network needs to run the
// Node-side GPU checks (the registry suite with CRATE_TEST_DEVICE=cuda, the training-step
// benchmarks on cuda) into one archive, .device/crate-device.tar.xz (the folder is git-ignored, so
// it can travel as an ignored path next to the working tree). Inside: the Node.js binary running
// this script, lib/ (compiled TS), the native build (crate.node, libcrate.so, libcrate_cuda.so) and
// node_modules without the packages only linting / type-checking / the PNG-writing test need.
// scripts/device_session.sh unpacks it on the GPU machine and runs the steps.
//
//   node scripts/device_pack.mjs [--native-dir build/Release] [--out .device] [--max-mib 60] [--level 9]
// (--level: the xz preset; 9 takes ~3 min on 2 cores and gives ~49 MiB, 1 is quick and larger)
//
// Build the native part for the target first, e.g. for an H100 / H200 only (smaller, faster):
//   CRATE_CUDA_ARCHS=90a-real npx cmake-js compile --out build-sm90 --CDCMAKE_BUILD_TYPE=Release
//   node scripts/device_pack.mjs --native-dir build-sm90/Release
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: {
    'native-dir': { type: 'string', default: 'build/Release' },
    out: { type: 'string', default: '.device' },
    'max-mib': { type: 'string', default: '60' },
    level: { type: 'string', default: '9' },
  },
});
// Not needed on the GPU machine: the linter, the compiler, type declarations, and the PNG encoder of
// one data test (that test reports itself skipped without it).
const LEAVE_OUT = new Set(['@biomejs', 'typescript', '@types', '@resvg', '.cache', '.vite', '.vitest']);
const NATIVE = ['crate.node', 'libcrate.so', 'libcrate_cuda.so'];

function fail(msg) {
  console.error(`device_pack: ${msg}`);
  process.exit(1);
}
const nativeDir = resolve(root, a['native-dir']);
for (const f of NATIVE) {
  if (existsSync(join(nativeDir, f))) continue;
  if (f === 'libcrate.so') console.warn(`device_pack: ${f} not built: the C ABI tests will report skipped there`);
  else fail(`${join(nativeDir, f)} is missing (build first)`);
}
if (!existsSync(join(root, 'lib', 'index.js'))) fail('lib/ is missing (npm run build:ts)');

const stage = mkdtempSync(join(tmpdir(), 'crate-device-'));
try {
  mkdirSync(join(stage, 'build', 'Release'), { recursive: true });
  for (const f of NATIVE)
    if (existsSync(join(nativeDir, f))) cpSync(join(nativeDir, f), join(stage, 'build', 'Release', f));
  cpSync(join(root, 'lib'), join(stage, 'lib'), { recursive: true });
  mkdirSync(join(stage, 'node_modules'));
  for (const e of readdirSync(join(root, 'node_modules'))) {
    if (LEAVE_OUT.has(e)) continue;
    cpSync(join(root, 'node_modules', e), join(stage, 'node_modules', e), { recursive: true, verbatimSymlinks: true });
  }
  mkdirSync(join(stage, '.device'));
  cpSync(process.execPath, join(stage, '.device', 'node'));
  const outDir = resolve(root, a.out);
  mkdirSync(outDir, { recursive: true });
  const archive = join(outDir, 'crate-device.tar.xz');
  const r = spawnSync('tar', ['-C', stage, '-cJf', archive, '.'], {
    stdio: 'inherit',
    env: { ...process.env, XZ_OPT: `-${Number(a.level)} -T0` },
  });
  if (r.status !== 0) fail('tar failed');
  const mib = statSync(archive).size / 2 ** 20;
  console.log(`device_pack: wrote ${archive} (${mib.toFixed(1)} MiB)`);
  if (mib > Number(a['max-mib']))
    fail(`archive is ${mib.toFixed(1)} MiB, over --max-mib ${a['max-mib']} (the device carry limit is 64 MiB)`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
