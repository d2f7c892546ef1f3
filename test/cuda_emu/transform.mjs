// transform.mjs: turns a CUDA source of native/cuda into host C++ for the CUDA host emulator
// (README.md), keeping every line where it was (a `#line` directive names the original file, so
// compiler messages and __FILE__ point at native/cuda). Three rewrites, in code only (comments
// and literals are left alone):
//   kernel<<<grid, block, smem, stream>>>(args)
//       -> ::cuda_emu::Launch(kernel, "kernel", __FILE__, __LINE__, grid, block, smem, stream)(args)
//   extern __shared__ __align__(128) float buf[];
//       -> float* const buf = static_cast<float*>(::cuda_emu::dynamic_shared());
//   __shared__ double red[8][32];
//       -> static char red_cuda_emu_tag; auto& red = *static_cast<double(*)[8][32]>(
//              ::cuda_emu::static_shared(&red_cuda_emu_tag, sizeof(double[8][32]), alignof(double), "red"));
// Anything it cannot handle (several declarators in one __shared__ declaration, initialisers,
// __constant__) is an error that names the file and line.
// CLI: node test/cuda_emu/transform.mjs <in> <out>
import { readFileSync, writeFileSync } from 'node:fs';

/** code[i] is true when text[i] is C++ code (not inside a comment, string or char literal). */
export function codeMask(text) {
  const code = new Uint8Array(text.length);
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const n = text[i + 1];
    if (c === '/' && n === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && n === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (c === 'R' && n === '"' && !/\w/.test(text[i - 1] ?? '')) {
      const open = text.indexOf('(', i + 2);
      const delim = text.slice(i + 2, open);
      const end = text.indexOf(`)${delim}"`, open);
      i = end < 0 ? text.length : end + delim.length + 2;
    } else if (c === '"' || (c === "'" && !/[0-9a-fA-F]/.test(text[i - 1] ?? ''))) {
      // (a ' after a hex digit is a digit separator, 1'000)
      i++;
      while (i < text.length && text[i] !== c) i += text[i] === '\\' ? 2 : 1;
      i++;
    } else {
      code[i] = 1;
      i++;
    }
  }
  return code;
}

function lineOf(text, pos) {
  let line = 1;
  for (let i = 0; i < pos; i++) if (text[i] === '\n') line++;
  return line;
}

/** Start of the kernel expression that ends right before `<<<` at `at` (identifiers, ::, <...>). */
function kernelStart(text, code, at) {
  let j = at - 1;
  while (j >= 0 && /\s/.test(text[j])) j--;
  for (;;) {
    if (text[j] === '>') {
      let depth = 0;
      for (; j >= 0; j--) {
        if (!code[j]) continue;
        if (text[j] === '>') depth++;
        else if (text[j] === '<' && --depth === 0) break;
      }
      j--;
      while (j >= 0 && /\s/.test(text[j])) j--;
    }
    while (j >= 0 && /\w/.test(text[j])) j--;
    if (text[j] === ':' && text[j - 1] === ':') {
      j -= 2;
      continue;
    }
    return j + 1;
  }
}

/** Index of the `>>>` closing a launch configuration that starts at `from` (depth 0 only). */
function configEnd(text, code, from, file) {
  let depth = 0;
  for (let k = from; k < text.length; k++) {
    if (!code[k]) continue;
    const c = text[k];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && text.startsWith('>>>', k)) return k;
  }
  throw new Error(`${file}:${lineOf(text, from)}: unterminated kernel launch configuration`);
}

/** The declaration `[extern] __shared__ ... ;` around position `at`, rewritten. */
function rewriteShared(text, code, at, file) {
  const line = lineOf(text, at);
  const where = `${file}:${line}`;
  let start = at;
  let isExtern = false;
  let b = at - 1;
  while (b >= 0 && /\s/.test(text[b])) b--;
  for (const kw of ['extern', 'static']) {
    if (text.slice(b - kw.length + 1, b + 1) === kw && !/\w/.test(text[b - kw.length] ?? '')) {
      if (kw === 'extern') isExtern = true;
      start = b - kw.length + 1;
      b = start - 1;
      while (b >= 0 && /\s/.test(text[b])) b--;
    }
  }
  let end = at;
  while (end < text.length && !(code[end] && text[end] === ';')) end++;
  const decl = text.slice(at + '__shared__'.length, end);
  if (/[,=]/.test(decl.replace(/\[[^\]]*\]/g, '').replace(/__align__\s*\([^)]*\)/g, '')))
    throw new Error(`${where}: the emulator's transform handles one declarator without initialiser per __shared__`);
  let align = null;
  const plain = decl
    .replace(/__align__\s*\(\s*([^)]*?)\s*\)/g, (_, n) => {
      align = n;
      return ' ';
    })
    .replace(/\s+/g, ' ')
    .trim();
  const m = /^(.+?)\s*\b(\w+)\s*((?:\[[^\]]*\]\s*)*)$/.exec(plain);
  if (!m) throw new Error(`${where}: cannot parse the __shared__ declaration "${plain}"`);
  const [, type, name, dimsRaw] = m;
  const dims = dimsRaw.replace(/\s+/g, '');
  const newlines = text.slice(start, end + 1).split('\n').length - 1;
  let out;
  if (isExtern) {
    if (dims !== '[]') throw new Error(`${where}: extern __shared__ ${name} must be an unsized array`);
    out = `${type}* const ${name} = static_cast<${type}*>(::cuda_emu::dynamic_shared());`;
  } else {
    if (dims.includes('[]')) throw new Error(`${where}: __shared__ ${name} has an unsized dimension`);
    const tag = `${name}_cuda_emu_tag`;
    const ptrType = dims ? `${type}(*)${dims}` : `${type}*`;
    const sized = dims ? `${type}${dims}` : type;
    out =
      `static char ${tag}; auto& ${name} = *static_cast<${ptrType}>(::cuda_emu::static_shared(&${tag}, ` +
      `sizeof(${sized}), ${align ?? `alignof(${type})`}, "${name}"));`;
  }
  return { start, end: end + 1, text: out + '\n'.repeat(newlines) };
}

/** The host C++ for one CUDA source file; `file` is the path compiler messages should show. */
export function transformSource(text, file) {
  const code = codeMask(text);
  const edits = [];
  const isCodeAt = (k, len) => {
    for (let q = k; q < k + len; q++) if (!code[q]) return false;
    return true;
  };
  for (let k = text.indexOf('<<<'); k >= 0; k = text.indexOf('<<<', k + 3)) {
    if (!isCodeAt(k, 3)) continue;
    const s = kernelStart(text, code, k);
    const kernel = text.slice(s, k).trimEnd();
    if (!kernel) throw new Error(`${file}:${lineOf(text, k)}: no kernel name before <<<`);
    const e = configEnd(text, code, k + 3, file);
    const name = JSON.stringify(kernel.replace(/\s+/g, ' '));
    edits.push({ start: s, end: s, text: '::cuda_emu::Launch(' });
    edits.push({
      start: s + kernel.length,
      end: e + 3,
      text: `, ${name}, __FILE__, __LINE__, ${text.slice(k + 3, e)})`,
    });
  }
  for (const m of text.matchAll(/\b__shared__\b/g)) {
    if (!code[m.index]) continue;
    edits.push(rewriteShared(text, code, m.index, file));
  }
  for (const m of text.matchAll(/\b__constant__\b/g)) {
    if (code[m.index]) throw new Error(`${file}:${lineOf(text, m.index)}: __constant__ is not emulated yet`);
  }
  edits.sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  let limit = Number.POSITIVE_INFINITY;
  for (const ed of edits) {
    if (ed.end > limit) throw new Error(`${file}: overlapping rewrites near line ${lineOf(text, ed.start)}`);
    out = out.slice(0, ed.start) + ed.text + out.slice(ed.end);
    limit = ed.start;
  }
  return `#line 1 ${JSON.stringify(file)}\n${out}`;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node test/cuda_emu/transform.mjs <in.cu> <out.cc>');
    process.exit(2);
  }
  writeFileSync(output, transformSource(readFileSync(input, 'utf8'), input));
}
