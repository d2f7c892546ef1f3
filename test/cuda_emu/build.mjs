// build.mjs: builds the CUDA host emulator library (libcrate_cuda_emu.so: every CUDA source of
// native/sources.json, transformed by transform.mjs and compiled by g++ against the shims in
// include/, plus emulator.cc) and, with --harness, test/cuda/cuda_vs_cpu.cc as crate_cuda_test
// (with the CPU kernels, as CMake builds it). Incremental: an object is rebuilt only when its
// source, a header it includes (g++ -MMD) or its flags changed. See README.md.
//
//   node test/cuda_emu/build.mjs [--out DIR] [--jobs N] [--harness] [--selftest] [--opt -O1] [--quiet]
//
// --selftest also builds cuda_emu_selftest (selftest.cu: the emulator's own checks). Prints the
// library path (then the harness and self-test paths) on the last lines. Exit 1 on a build error.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, relative } from 'node:path';
import { transformSource } from './transform.mjs';

const here = import.meta.dirname;
const root = join(here, '..', '..');

/** Options from argv (defaults: build-emu/cuda-emu, 2 jobs, -O1). */
export function parseArgs(argv) {
  const o = { out: join(root, 'build-emu', 'cuda-emu'), jobs: Math.min(2, availableParallelism()), harness: false };
  o.opt = '-O1';
  o.quiet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--out') o.out = val();
    else if (a === '--jobs') o.jobs = Math.max(1, Number(val()));
    else if (a === '--harness') o.harness = true;
    else if (a === '--selftest') o.selftest = true;
    else if (a === '--opt') o.opt = val();
    else if (a === '--quiet') o.quiet = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function writeIfChanged(path, text) {
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return;
  writeFileSync(path, text);
}

/** Whether obj is up to date: exists, same flags, newer than every dependency in its .d file. */
function upToDate(obj, flagsKey) {
  const cmd = `${obj}.cmd`;
  const dep = obj.replace(/\.o$/, '.d');
  if (!existsSync(obj) || !existsSync(cmd) || !existsSync(dep)) return false;
  if (readFileSync(cmd, 'utf8') !== flagsKey) return false;
  const t = statSync(obj).mtimeMs;
  const deps = readFileSync(dep, 'utf8')
    .replace(/\\\n/g, ' ')
    .replace(/^[^:]*:/, '')
    .split(/\s+/)
    .filter(Boolean);
  return deps.every((d) => existsSync(d) && statSync(d).mtimeMs <= t);
}

function run(cmd, args, cwd) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      out += d;
    });
    p.on('close', (code) => resolve({ code, out }));
    p.on('error', (e) => resolve({ code: -1, out: String(e) }));
  });
}

/** Compiles jobs ({src, obj, args}) with at most n at a time; throws with the compiler output. */
async function compileAll(jobs, n, log) {
  const queue = [...jobs];
  const errors = [];
  const worker = async () => {
    for (let j = queue.shift(); j; j = queue.shift()) {
      const t0 = Date.now();
      const r = await run(
        'g++',
        [...j.args, '-MMD', '-MF', j.obj.replace(/\.o$/, '.d'), '-c', j.src, '-o', j.obj],
        root,
      );
      if (r.code !== 0) errors.push(`${relative(root, j.src)}:\n${r.out}`);
      else {
        writeFileSync(`${j.obj}.cmd`, j.key);
        log(`  ${relative(root, j.src)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      }
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  if (errors.length) throw new Error(`compilation failed:\n${errors.join('\n')}`);
}

/** Builds the library (and the harness); returns their paths. */
export async function build(opts) {
  const log = opts.quiet ? () => {} : (s) => console.error(s);
  const t0 = Date.now();
  const out = opts.out;
  const srcDir = join(out, 'src', 'cuda');
  const objDir = join(out, 'obj');
  mkdirSync(srcDir, { recursive: true });
  mkdirSync(objDir, { recursive: true });
  const sources = JSON.parse(readFileSync(join(root, 'native', 'sources.json'), 'utf8'));

  // Transformed copies of every CUDA source and header (the headers may hold kernels too).
  const cudaDir = join(root, 'native', 'cuda');
  for (const f of readdirSync(cudaDir)) {
    if (!/\.(cu|cuh|h|cc)$/.test(f)) continue;
    const rel = `native/cuda/${f}`;
    writeIfChanged(join(srcDir, f), transformSource(readFileSync(join(cudaDir, f), 'utf8'), rel));
  }

  const include = join(here, 'include');
  const emuFlags = [
    '-std=c++17',
    opts.opt,
    '-g1',
    '-fPIC',
    '-fvisibility=hidden',
    '-ffp-contract=off',
    '-fno-strict-aliasing',
    '-fsanitize=alignment,bounds',
    '-fno-sanitize-recover=all',
    '-Wno-unknown-pragmas',
    '-Wno-attributes',
    '-D__CUDA_ARCH__=900',
    '-DCRATE_CUDA_ARCHS_STR="host emulator of sm_90"',
    '-DCRATE_MSSA_GRID_CAP=2',
    `-I${include}`,
    `-I${cudaDir}`,
    `-I${join(root, 'native')}`,
    `-I${join(root, 'native', 'include')}`,
  ];
  // The kernels' memory accesses go to the emulator's shared-memory race detector (emulator.cc).
  const tsan = ['-fsanitize=thread', '--param', 'tsan-instrument-func-entry-exit=0'];
  const jobs = [];
  const addJob = (src, name, args) => {
    const obj = join(objDir, `${name}.o`);
    const key = createHash('sha1').update(args.join('\0')).digest('hex');
    if (!upToDate(obj, key)) jobs.push({ src, obj, args, key });
    return obj;
  };
  const emuObjs = [];
  for (const s of sources.cuda) {
    const f = basename(s);
    const extra = f === 'cublas_loader.cc' ? ['-include', join(include, 'no_cublas.h')] : [];
    emuObjs.push(addJob(join(srcDir, f), f.replace(/\.\w+$/, ''), ['-x', 'c++', ...emuFlags, ...tsan, ...extra]));
  }
  const emulatorObj = addJob(join(here, 'emulator.cc'), 'emulator', emuFlags);
  emuObjs.push(emulatorObj);
  let selftestObj = null;
  if (opts.selftest) {
    const src = join(out, 'src', 'selftest.cu');
    const rel = relative(root, join(here, 'selftest.cu'));
    writeIfChanged(src, transformSource(readFileSync(join(here, 'selftest.cu'), 'utf8'), rel));
    selftestObj = addJob(src, 'selftest', ['-x', 'c++', ...emuFlags, ...tsan]);
  }

  const harnessObjs = [];
  if (opts.harness) {
    // As CMakeLists.txt builds crate_cuda_test: the CPU kernels with their own flags, the ABI
    // (libcrate) and the harness with the CPU row-op references.
    const inc = [`-I${join(root, 'native', 'include')}`, `-I${join(root, 'native')}`];
    const cpuFlags = ['-std=c++17', '-O3', '-fopenmp-simd', '-fPIC', ...inc];
    for (const s of [...sources.core, ...sources.cpu, ...sources.abi])
      harnessObjs.push(addJob(join(root, s), `host_${basename(s).replace(/\.\w+$/, '')}`, cpuFlags));
    harnessObjs.push(
      addJob(join(root, 'test', 'cuda', 'cuda_vs_cpu.cc'), 'host_cuda_vs_cpu', [
        '-std=c++17',
        '-O2',
        '-DCRATE_TEST_CPU_NN=1',
        ...inc,
      ]),
    );
  }
  // The slow ones first, so that the two workers finish together.
  const weight = (j) => statSync(j.src).size;
  jobs.sort((a, b) => weight(b) - weight(a));
  if (jobs.length) log(`[cuda-emu] compiling ${jobs.length} file(s) with ${opts.jobs} job(s) into ${out}`);
  await compileAll(jobs, opts.jobs, log);

  const lib = join(out, 'libcrate_cuda_emu.so');
  const newest = (objs) => Math.max(...objs.map((o) => statSync(o).mtimeMs));
  if (!existsSync(lib) || statSync(lib).mtimeMs < newest(emuObjs)) {
    const r = await run('g++', ['-shared', '-o', lib, ...emuObjs, '-Wl,-z,defs', '-ldl', '-lpthread', '-lm'], root);
    if (r.code !== 0) throw new Error(`linking ${lib} failed:\n${r.out}`);
  }
  const result = { lib };
  if (opts.harness) {
    const exe = join(out, 'crate_cuda_test');
    if (!existsSync(exe) || statSync(exe).mtimeMs < newest(harnessObjs)) {
      const r = await run('g++', ['-o', exe, ...harnessObjs, '-ldl', '-lpthread', '-lm'], root);
      if (r.code !== 0) throw new Error(`linking ${exe} failed:\n${r.out}`);
    }
    result.harness = exe;
  }
  if (selftestObj) {
    const exe = join(out, 'cuda_emu_selftest');
    if (!existsSync(exe) || statSync(exe).mtimeMs < newest([selftestObj, emulatorObj])) {
      const r = await run('g++', ['-o', exe, selftestObj, emulatorObj, '-ldl', '-lpthread', '-lm'], root);
      if (r.code !== 0) throw new Error(`linking ${exe} failed:\n${r.out}`);
    }
    result.selftest = exe;
  }
  log(`[cuda-emu] built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  try {
    const r = await build(parseArgs(process.argv.slice(2)));
    console.log(r.lib);
    if (r.harness) console.log(r.harness);
    if (r.selftest) console.log(r.selftest);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  }
}
