// imagefolder.ts: a folder-of-images dataset (root/<class>/*.png|jpg|...), classes sorted by
// name, decoded and resized with `sharp` (an optional dependency, installed by default).
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Dataset, Sample } from './dataset.js';

const DEFAULT_EXTS = ['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff', '.gif'];

type SharpLike = (file: string) => {
  removeAlpha(): ReturnType<SharpLike>;
  toColourspace(s: string): ReturnType<SharpLike>;
  resize(w: number, h: number, o?: object): ReturnType<SharpLike>;
  raw(): ReturnType<SharpLike>;
  toBuffer(o: {
    resolveWithObject: true;
  }): Promise<{ data: Buffer; info: { width: number; height: number; channels: number } }>;
};

async function loadSharp(): Promise<SharpLike> {
  const name = 'sharp';
  try {
    const m = (await import(name)) as { default?: SharpLike };
    return (m.default ?? m) as SharpLike;
  } catch (e) {
    throw new Error(`install sharp to read image folders (npm install sharp): ${(e as Error).message}`);
  }
}

export interface ImageFolderOptions {
  /** Every image is resized to [height, width]. */
  size: [number, number];
  /** 3 (RGB, default) or 1 (greyscale). */
  channels?: 1 | 3;
  extensions?: string[];
}

/** Images as uint8 [C, H, W], labels the index of their sorted class folder. */
export class ImageFolder implements Dataset {
  readonly sampleShape: readonly number[];
  private constructor(
    private readonly sharp: SharpLike,
    readonly classes: string[],
    readonly files: { path: string; label: number }[],
    private readonly opts: Required<Pick<ImageFolderOptions, 'size' | 'channels'>>,
  ) {
    this.sampleShape = Object.freeze([opts.channels, opts.size[0], opts.size[1]]);
  }

  /** Scans `root`; throws "install sharp to read image folders" when sharp is missing. */
  static async open(root: string, opts: ImageFolderOptions): Promise<ImageFolder> {
    const sharp = await loadSharp();
    const exts = (opts.extensions ?? DEFAULT_EXTS).map((e) => e.toLowerCase());
    const classes = readdirSync(root)
      .filter((d) => statSync(join(root, d)).isDirectory())
      .sort();
    if (!classes.length) throw new Error(`ImageFolder: no class folders under ${root}`);
    const files: { path: string; label: number }[] = [];
    classes.forEach((c, label) => {
      for (const f of readdirSync(join(root, c)).sort()) {
        if (exts.includes(extname(f).toLowerCase())) files.push({ path: join(root, c, f), label });
      }
    });
    return new ImageFolder(sharp, classes, files, { size: opts.size, channels: opts.channels ?? 3 });
  }

  get length(): number {
    return this.files.length;
  }

  async get(i: number): Promise<Sample> {
    const f = this.files[i];
    if (!f) throw new RangeError(`ImageFolder.get: index ${i} out of range [0, ${this.length})`);
    const [h, w] = this.opts.size;
    const c = this.opts.channels;
    const { data, info } = await this.sharp(f.path)
      .removeAlpha()
      .toColourspace(c === 1 ? 'b-w' : 'srgb')
      .resize(w, h, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.width !== w || info.height !== h || info.channels !== c) {
      throw new Error(`ImageFolder: ${f.path} decoded to ${info.width}x${info.height}x${info.channels}`);
    }
    const x = new Uint8Array(c * h * w);
    for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) x[k * h * w + p] = data[p * c + k] as number;
    return { x, y: f.label };
  }
}
