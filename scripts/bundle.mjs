#!/usr/bin/env node
// bundle.mjs: packs a runnable offline bundle of crate-ml for machines with no network (GPU servers):
// the Node.js binary, lib/, bin/, data/, package.json, the built native artifacts (crate.node,
// libcrate.so, libcrate_cuda.so when built), the production node_modules needed at run time (the
// closure of package.json's dependencies, minus build-only packages) and a launcher `crate` into
// <out>/crate-ml-<version>-<platform>-<arch>.tar (and .tar.xz with --xz).
//
//   node scripts/bundle.mjs [--out dir] [--node path] [--xz] [--native-dir dir] [--no-node] [--keep-dir]
//
//   --out         where the tar goes (default build/bundle)
//   --node        the Node.js binary to ship (default: the one running this script)
//   --no-node     ship no Node.js binary; the launcher then uses `node` from PATH
//   --native-dir  folder with crate.node / libcrate.so / libcrate_cuda.so (default build/Release)
//   --xz          also write .tar.xz (xz -T0)
//   --keep-dir    keep the unpacked bundle folder next to the tar
// On the target: tar -xf crate-ml-*.tar && ./crate-ml-*/crate info   (no install step; the addon
// loads libcrate_cuda.so from beside itself, so CUDA works when the machine has a driver and GPU).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Packages only the build needs (headers, the cmake driver): never shipped.
const BUILD_ONLY = new Set(['cmake-js', 'node-addon-api', 'node-api-headers']);
const NATIVE = ['crate.node', 'libcrate.so', 'libcrate_cuda.so'];

function fail(msg) {
  console.error(`bundle: ${msg}`);
  process.exit(1);
}

/** Finds the folder of package `name` as Node would from `fromDir` (node_modules up the tree). */
function findPackage(name, fromDir) {
  let dir = fromDir;
  for (;;) {
    const cand = join(dir, 'node_modules', name);
    if (existsSync(join(cand, 'package.json'))) return cand;
    if (dir === root || dirname(dir) === dir) return null;
    dir = dirname(dir);
  }
}

/** The production closure: package folders (absolute) reachable from package.json's dependencies
 * and optionalDependencies (optional ones only when installed), build-only packages excluded. */
function productionPackages(pkg) {
  const found = new Map(); // dir -> { name, version }
  const missing = [];
  const queue = [];
  const push = (deps, fromDir, optional, parent) => {
    for (const name of Object.keys(deps ?? {})) {
      if (BUILD_ONLY.has(name)) continue;
      queue.push({ name, fromDir, optional, parent });
    }
  };
  push(pkg.dependencies, root, false, pkg.name);
  push(pkg.optionalDependencies, root, true, pkg.name);
  while (queue.length) {
    const { name, fromDir, optional, parent } = queue.shift();
    const dir = findPackage(name, fromDir);
    if (!dir) {
      if (!optional) missing.push(`${name} (needed by ${parent})`);
      continue;
    }
    if (found.has(dir)) continue;
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    found.set(dir, { name, version: pj.version });
    push(pj.dependencies, dir, false, name);
    push(pj.optionalDependencies, dir, true, name);
  }
  return { packages: found, missing };
}

function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function dirBytes(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += dirBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

const LAUNCHER = `#!/bin/sh
# crate: the crate-ml command line from this offline bundle (bundled Node.js, no install step).
# Works through symlinks and from any working directory; needs nothing on PATH.
self="$0"
for rl in readlink /usr/bin/readlink /bin/readlink; do
  if real=$("$rl" -f "$self" 2>/dev/null) && [ -n "$real" ]; then self="$real"; break; fi
done
case "$self" in */*) here="\${self%/*}" ;; *) here=. ;; esac
here=$(cd "$here" && pwd -P) || exit 1
if [ ! -f "$here/bin/crate.js" ]; then
  echo "crate: the bundle is not beside $self (no bin/crate.js in $here); run the launcher by its path" >&2
  exit 1
fi
export CRATE_ADDON_PATH="\${CRATE_ADDON_PATH:-$here/build/Release/crate.node}"
if [ -x "$here/runtime/node" ]; then node="$here/runtime/node"; else node=node; fi
exec "$node" "$here/bin/crate.js" "$@"
`;

function main() {
  const { values: a } = parseArgs({
    options: {
      out: { type: 'string' },
      node: { type: 'string' },
      'no-node': { type: 'boolean' },
      'native-dir': { type: 'string' },
      xz: { type: 'boolean' },
      'keep-dir': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (a.help) {
    const text = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0];
    console.log(
      text
        .split('\n')
        .slice(1)
        .join('\n')
        .replace(/^\/\/ ?/gm, ''),
    );
    return;
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const outDir = resolve(a.out ?? join(root, 'build', 'bundle'));
  const nativeDir = resolve(a['native-dir'] ?? join(root, 'build', 'Release'));
  const nodeBin = a['no-node'] ? null : resolve(a.node ?? process.execPath);
  if (!existsSync(join(root, 'lib', 'cli', 'main.js')))
    fail(`${join(root, 'lib')} is not built: run \`npm run build:ts\``);
  if (!existsSync(join(nativeDir, 'crate.node')))
    fail(`${nativeDir}/crate.node not found: run \`npm run build:native\` (or pass --native-dir)`);
  if (nodeBin && !existsSync(nodeBin)) fail(`node binary ${nodeBin} not found`);
  const tar = spawnSync('tar', ['--version'], { encoding: 'utf8' });
  if (tar.status !== 0) fail('tar not found on PATH');

  const { packages, missing } = productionPackages(pkg);
  if (missing.length) fail(`run-time packages not installed: ${missing.join(', ')} (run \`npm install\`)`);

  const name = `${pkg.name}-${pkg.version}-${process.platform}-${process.arch}`;
  mkdirSync(outDir, { recursive: true });
  const stage = mkdtempSync(join(outDir, '.stage-'));
  const dst = join(stage, name);
  try {
    mkdirSync(dst);
    for (const d of ['lib', 'bin', 'data']) {
      if (existsSync(join(root, d))) cpSync(join(root, d), join(dst, d), { recursive: true });
    }
    for (const f of ['package.json', 'README.md', 'LICENSE']) {
      if (existsSync(join(root, f))) copyFileSync(join(root, f), join(dst, f));
    }
    const native = [];
    mkdirSync(join(dst, 'build', 'Release'), { recursive: true });
    for (const f of NATIVE) {
      const src = join(nativeDir, f);
      if (!existsSync(src)) continue;
      copyFileSync(src, join(dst, 'build', 'Release', f));
      native.push({ file: `build/Release/${f}`, bytes: statSync(src).size, sha256: sha256(src) });
    }
    const mods = [];
    for (const [dir, info] of [...packages].sort((x, y) => x[0].localeCompare(y[0]))) {
      const rel = relative(root, dir);
      if (rel.startsWith('..')) fail(`package ${info.name} resolves outside the project (${dir})`);
      // the package itself; its own node_modules only through the resolved closure
      cpSync(dir, join(dst, rel), {
        recursive: true,
        filter: (src) => !relative(dir, src).split(sep).includes('node_modules'),
      });
      mods.push({ name: info.name, version: info.version, path: rel.split(sep).join('/') });
    }
    if (nodeBin) {
      mkdirSync(join(dst, 'runtime'));
      copyFileSync(nodeBin, join(dst, 'runtime', 'node'));
      chmodSync(join(dst, 'runtime', 'node'), 0o755);
    }
    writeFileSync(join(dst, 'crate'), LAUNCHER);
    chmodSync(join(dst, 'crate'), 0o755);
    const commit = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
    const glibc = process.report?.getReport?.()?.header?.glibcVersionRuntime ?? null;
    const manifest = {
      name: pkg.name,
      version: pkg.version,
      platform: process.platform,
      arch: process.arch,
      node: nodeBin ? { binary: 'runtime/node', version: nodeBin === process.execPath ? process.version : null } : null,
      builtWithGlibc: glibc,
      commit: commit.status === 0 ? commit.stdout.trim() : (process.env.CRATE_COMMIT ?? null),
      date: new Date().toISOString(),
      native,
      packages: mods,
      excluded: [...BUILD_ONLY],
      run: './crate info   |   ./crate train --help   (CRATE_CUDA_LIB, CRATE_ADDON_PATH override the libraries)',
    };
    if (nodeBin && manifest.node.version === null) {
      const v = spawnSync(nodeBin, ['--version'], { encoding: 'utf8' });
      manifest.node.version = v.status === 0 ? v.stdout.trim() : 'unknown';
    }
    writeFileSync(join(dst, 'BUNDLE.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    const tarPath = join(outDir, `${name}.tar`);
    rmSync(tarPath, { force: true });
    const t = spawnSync('tar', ['-cf', tarPath, '-C', stage, name], { encoding: 'utf8' });
    if (t.status !== 0) fail(`tar failed: ${t.stderr}`);
    const outputs = [tarPath];
    if (a.xz) {
      const xzPath = `${tarPath}.xz`;
      rmSync(xzPath, { force: true });
      const x = spawnSync('xz', ['-T0', '-k', '-f', tarPath], { encoding: 'utf8' });
      if (x.status !== 0) fail(`xz failed (is xz installed?): ${x.stderr || x.error?.message}`);
      outputs.push(xzPath);
    }
    if (a['keep-dir']) {
      rmSync(join(outDir, name), { recursive: true, force: true });
      renameSync(dst, join(outDir, name));
      outputs.push(join(outDir, name));
    }
    const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(`bundle: ${name}`);
    console.log(`  node:     ${nodeBin ?? '(none: uses node from PATH)'} ${manifest.node?.version ?? ''}`);
    console.log(`  native:   ${native.map((n) => `${n.file.split('/').pop()} (${mib(n.bytes)})`).join(', ')}`);
    console.log(`  packages: ${mods.map((m) => `${m.name}@${m.version}`).join(', ')}`);
    for (const o of outputs) console.log(`  wrote ${o}${o.endsWith(name) ? '/' : ` (${mib(statSync(o).size)})`}`);
    console.log(`  run: tar -xf ${name}.tar${a.xz ? ` (or tar -xJf ${name}.tar.xz)` : ''} && ./${name}/crate info`);
    if (!a['keep-dir']) console.log(`  (unpacked size ${mib(dirBytes(dst))})`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

main();
