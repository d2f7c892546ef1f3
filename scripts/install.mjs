#!/usr/bin/env node
// install.mjs: the package's install step. Order: a prebuild that loads -> done; otherwise build
// with cmake-js (CPU + CUDA when nvcc is found) when cmake exists; otherwise node-gyp (CPU only).
// Every attempt is printed with its reason, and the result is load-tested in a child process.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const log = (m) => console.log(`[crate install] ${m}`);
const attempts = [];

function loads(path) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path)})`], { encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').slice(-3).join(' ');
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

// 1. A prebuild (prebuilds/<platform>-<arch>/) shipped with the package.
if (process.env.CRATE_FORCE_BUILD !== '1' && existsSync(join(root, 'prebuilds'))) {
  try {
    const path = require('node-gyp-build').resolve(root);
    const err = loads(path);
    if (!err) {
      log(`using prebuild ${path}`);
      process.exit(0);
    }
    attempts.push(`prebuild ${path}: ${err}`);
  } catch (e) {
    attempts.push(`prebuild: ${e.message.split('\n')[0]}`);
  }
}

// 2. cmake-js (the main build: CPU always, CUDA when nvcc is found).
const addon = join(root, 'build', 'Release', 'crate.node');
if (has('cmake')) {
  const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
  const ok = run(existsSync(cmakeJs) ? cmakeJs : 'npx', [
    ...(existsSync(cmakeJs) ? [] : ['cmake-js']),
    'compile',
    '--CDCMAKE_BUILD_TYPE=Release',
    ...(process.env.CRATE_CUDA ? [`--CDCRATE_CUDA=${process.env.CRATE_CUDA}`] : []),
  ]);
  const err = ok ? loads(addon) : 'cmake-js build failed (see the output above)';
  if (!err) {
    log(
      `built ${addon}${existsSync(join(root, 'build', 'Release', 'libcrate_cuda.so')) ? ' + CUDA backend' : ' (CPU only)'}`,
    );
    process.exit(0);
  }
  attempts.push(`cmake-js: ${err}`);
} else {
  attempts.push('cmake-js: cmake is not on PATH');
}

// 3. node-gyp (bundled with npm): CPU-only fallback.
const ok = run(process.platform === 'win32' ? 'npx.cmd' : 'npx', ['node-gyp', 'rebuild']);
const err = ok ? loads(addon) : 'node-gyp rebuild failed (see the output above)';
if (!err) {
  log(`built ${addon} with node-gyp (CPU only)`);
  process.exit(0);
}
attempts.push(`node-gyp: ${err}`);
console.error(
  `[crate install] could not build or load the native addon:\n${attempts.map((a) => `  - ${a}`).join('\n')}`,
);
console.error('[crate install] needs a C++17 compiler and cmake (or python3 + make for node-gyp).');
process.exit(1);
