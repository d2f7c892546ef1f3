// corpus.ts: the embedded public-domain text corpus for the causal language models (Jane Austen,
// "Persuasion", in data/text/; see data/text/README.md) and a contiguous train/validation split.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The file name of the default corpus under data/text/. */
export const DEFAULT_CORPUS_FILE = 'persuasion.txt';

export interface Corpus {
  /** The whole text (UTF-8 decoded). */
  text: string;
  /** What it is, for logs and reports. */
  name: string;
  /** Absolute path of the file it was read from. */
  path: string;
}

let cached: Corpus | null = null;

/**
 * The embedded corpus: Jane Austen's "Persuasion" (1818, public domain; Project Gutenberg's
 * transcription, 466,854 bytes of ASCII). Found relative to the package root, from both the
 * sources (ts/data/) and the compiled code (lib/data/). Read once, then cached.
 */
export function loadDefaultCorpus(): Corpus {
  if (cached) return cached;
  // ts/data/corpus.ts and lib/data/corpus.js are both two levels below the package root
  const url = new URL(`../../data/text/${DEFAULT_CORPUS_FILE}`, import.meta.url);
  const path = fileURLToPath(url);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `loadDefaultCorpus: cannot read ${path} (${(e as Error).message}); the package's data/ folder is missing`,
    );
  }
  cached = { text, name: 'Persuasion (Jane Austen, 1818; public domain)', path };
  return cached;
}

/**
 * Splits a token stream into a leading training part (the first ⌊frac·n⌋ tokens) and the
 * validation rest, as nanoGPT's prepare.py does. The parts are views (subarray) when `tokens`
 * is an Int32Array, copies otherwise.
 */
export function trainValSplit(tokens: ArrayLike<number>, frac = 0.9): { train: Int32Array; val: Int32Array } {
  if (typeof frac !== 'number' || !(frac > 0 && frac < 1)) {
    throw new RangeError(`trainValSplit: frac must be a number in (0, 1), got ${frac}`);
  }
  const all = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
  const n = Math.floor(all.length * frac);
  return { train: all.subarray(0, n), val: all.subarray(n) };
}
