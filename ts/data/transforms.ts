// transforms.ts: image augmentations on CHW Float32Array samples (random crop with zero padding,
// horizontal flip, random-resized crop with bilinear resize, centre crop, normalisation, uint8 →
// [0,1]), as plain functions over an explicit Rng, plus a serialisable pipeline (TransformSpec[])
// that the DataLoader can run in a worker thread. No tensor or native dependency.
import type { Rng } from './rng.js';

/** One image, channels first: data[c * h * w + y * w + x]. */
export interface ImageCHW {
  data: Float32Array;
  c: number;
  h: number;
  w: number;
}

export type Size = number | readonly [number, number];

function hw(size: Size, where: string): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) {
    throw new RangeError(`${where}: size must be positive integers, got ${String(size)}`);
  }
  return [h, w];
}

function checkImage(img: ImageCHW, where: string): void {
  if (img.data.length !== img.c * img.h * img.w) {
    throw new RangeError(`${where}: image data has ${img.data.length} values, expected ${img.c}x${img.h}x${img.w}`);
  }
}

/** uint8 pixels → float32 in [0, 1] (x / 255), like torchvision's ToTensor. */
export function uint8ToFloat(src: ArrayLike<number>, out: Float32Array = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = (src[i] as number) / 255;
  return out;
}

/** Mirrors every row (reverses the columns). */
export function hflip(img: ImageCHW): ImageCHW {
  checkImage(img, 'hflip');
  const { c, h, w, data } = img;
  const out = new Float32Array(data.length);
  for (let r = 0; r < c * h; r++) {
    const o = r * w;
    for (let x = 0; x < w; x++) out[o + x] = data[o + w - 1 - x] as number;
  }
  return { data: out, c, h, w };
}

/** Flips with probability p (one draw from rng either way). */
export function randomHorizontalFlip(img: ImageCHW, rng: Rng, p = 0.5): ImageCHW {
  return rng.next() < p ? hflip(img) : img;
}

/**
 * The (th, tw) window whose top-left corner is (top, left) in image coordinates; the window may
 * extend past the image (negative top/left included): those pixels are `fill` (zero padding).
 */
export function crop(img: ImageCHW, top: number, left: number, th: number, tw: number, fill = 0): ImageCHW {
  checkImage(img, 'crop');
  const { c, h, w, data } = img;
  const out = new Float32Array(c * th * tw);
  if (fill !== 0) out.fill(fill);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(tw, w - left);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < th; y++) {
      const sy = top + y;
      if (sy < 0 || sy >= h || x1 <= x0) continue;
      const src = ch * h * w + sy * w + left;
      const dst = ch * th * tw + y * tw;
      out.set(data.subarray(src + x0, src + x1), dst + x0);
    }
  }
  return { data: out, c, h: th, w: tw };
}

/** Zero-pads by `padding` on every side, then crops `size` at a uniformly random place (torchvision RandomCrop). */
export function randomCrop(img: ImageCHW, rng: Rng, size: Size, padding = 0): ImageCHW {
  const [th, tw] = hw(size, 'randomCrop');
  if (!Number.isInteger(padding) || padding < 0) throw new RangeError(`randomCrop: bad padding ${padding}`);
  const H = img.h + 2 * padding;
  const W = img.w + 2 * padding;
  if (th > H || tw > W) throw new RangeError(`randomCrop: crop ${th}x${tw} is larger than the padded image ${H}x${W}`);
  const i = rng.int(H - th + 1);
  const j = rng.int(W - tw + 1);
  return crop(img, i - padding, j - padding, th, tw);
}

/** The centre (th, tw) window (zero-padded when larger than the image). */
export function centerCrop(img: ImageCHW, size: Size): ImageCHW {
  const [th, tw] = hw(size, 'centerCrop');
  return crop(img, Math.floor((img.h - th) / 2), Math.floor((img.w - tw) / 2), th, tw);
}

/**
 * Bilinear resize of the region (top, left, rh, rw) to (oh, ow), with half-pixel centres and
 * edge clamping: torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False).
 */
export function resizedRegion(
  img: ImageCHW,
  top: number,
  left: number,
  rh: number,
  rw: number,
  oh: number,
  ow: number,
): ImageCHW {
  checkImage(img, 'resize');
  if (top < 0 || left < 0 || rh <= 0 || rw <= 0 || top + rh > img.h || left + rw > img.w) {
    throw new RangeError(`resize: region (${top}, ${left}, ${rh}, ${rw}) is outside the ${img.h}x${img.w} image`);
  }
  const { c, h, w, data } = img;
  const out = new Float32Array(c * oh * ow);
  const sy = rh / oh;
  const sx = rw / ow;
  const xs0 = new Int32Array(ow);
  const xs1 = new Int32Array(ow);
  const lx = new Float64Array(ow);
  for (let x = 0; x < ow; x++) {
    const s = Math.max(0, (x + 0.5) * sx - 0.5);
    const i0 = Math.min(Math.floor(s), rw - 1);
    xs0[x] = left + i0;
    xs1[x] = left + Math.min(i0 + 1, rw - 1);
    lx[x] = s - i0;
  }
  for (let y = 0; y < oh; y++) {
    const s = Math.max(0, (y + 0.5) * sy - 0.5);
    const i0 = Math.min(Math.floor(s), rh - 1);
    const y0 = top + i0;
    const y1 = top + Math.min(i0 + 1, rh - 1);
    const ly = s - i0;
    for (let ch = 0; ch < c; ch++) {
      const base = ch * h * w;
      const r0 = base + y0 * w;
      const r1 = base + y1 * w;
      const o = ch * oh * ow + y * ow;
      for (let x = 0; x < ow; x++) {
        const a = lx[x] as number;
        const p0 = (data[r0 + (xs0[x] as number)] as number) * (1 - a) + (data[r0 + (xs1[x] as number)] as number) * a;
        const p1 = (data[r1 + (xs0[x] as number)] as number) * (1 - a) + (data[r1 + (xs1[x] as number)] as number) * a;
        out[o + x] = p0 * (1 - ly) + p1 * ly;
      }
    }
  }
  return { data: out, c, h: oh, w: ow };
}

/** Bilinear resize of the whole image. */
export function resize(img: ImageCHW, size: Size): ImageCHW {
  const [oh, ow] = hw(size, 'resize');
  return resizedRegion(img, 0, 0, img.h, img.w, oh, ow);
}

export interface ResizedCropOptions {
  /** Range of the crop's area as a fraction of the image (default [0.08, 1]). */
  scale?: readonly [number, number];
  /** Range of the crop's aspect ratio w/h, sampled log-uniformly (default [3/4, 4/3]). */
  ratio?: readonly [number, number];
}

/** The crop window RandomResizedCrop picks: torchvision's get_params (10 tries, then a centre crop). */
export function resizedCropParams(
  h: number,
  w: number,
  rng: Rng,
  opts: ResizedCropOptions = {},
): [number, number, number, number] {
  const [smin, smax] = opts.scale ?? [0.08, 1];
  const [rmin, rmax] = opts.ratio ?? [3 / 4, 4 / 3];
  if (!(smin > 0 && smin <= smax && rmin > 0 && rmin <= rmax)) {
    throw new RangeError(`randomResizedCrop: bad scale [${smin}, ${smax}] or ratio [${rmin}, ${rmax}]`);
  }
  const area = h * w;
  const lr0 = Math.log(rmin);
  const lr1 = Math.log(rmax);
  for (let t = 0; t < 10; t++) {
    const target = area * rng.uniform(smin, smax);
    const aspect = Math.exp(rng.uniform(lr0, lr1));
    const cw = Math.round(Math.sqrt(target * aspect));
    const ch = Math.round(Math.sqrt(target / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      const i = rng.int(h - ch + 1);
      const j = rng.int(w - cw + 1);
      return [i, j, ch, cw];
    }
  }
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < rmin) ch = Math.round(w / rmin);
  else if (inRatio > rmax) cw = Math.round(h * rmax);
  return [Math.floor((h - ch) / 2), Math.floor((w - cw) / 2), ch, cw];
}

/** A random crop of random area and aspect ratio, resized (bilinear) to `size` (torchvision RandomResizedCrop). */
export function randomResizedCrop(img: ImageCHW, rng: Rng, size: Size, opts: ResizedCropOptions = {}): ImageCHW {
  const [oh, ow] = hw(size, 'randomResizedCrop');
  const [i, j, ch, cw] = resizedCropParams(img.h, img.w, rng, opts);
  return resizedRegion(img, i, j, ch, cw, oh, ow);
}

/** (x - mean[c]) / std[c] per channel, in place; returns img. */
export function normalize(img: ImageCHW, mean: readonly number[], std: readonly number[]): ImageCHW {
  checkImage(img, 'normalize');
  const { c, h, w, data } = img;
  if (mean.length !== c || std.length !== c) {
    throw new RangeError(`normalize: need ${c} means and stds, got ${mean.length} and ${std.length}`);
  }
  const n = h * w;
  for (let ch = 0; ch < c; ch++) {
    const m = mean[ch] as number;
    const s = std[ch] as number;
    if (!(s > 0)) throw new RangeError(`normalize: std[${ch}] must be positive, got ${s}`);
    const inv = 1 / s;
    const o = ch * n;
    for (let i = 0; i < n; i++) data[o + i] = ((data[o + i] as number) - m) * inv;
  }
  return img;
}

// ------------------------------------------------------------------ serialisable pipelines
/** A transform described as data, so it can run in a worker thread. Applied in order. */
export type TransformSpec =
  | { type: 'toFloat' }
  | { type: 'randomCrop'; size: Size; padding?: number }
  | { type: 'randomHorizontalFlip'; p?: number }
  | { type: 'randomResizedCrop'; size: Size; scale?: [number, number]; ratio?: [number, number] }
  | { type: 'centerCrop'; size: Size }
  | { type: 'resize'; size: Size }
  | { type: 'normalize'; mean: number[]; std: number[] };

/** A per-sample transform function (runs on the main thread only: functions cannot cross to a worker). */
export type TransformFn = (img: ImageCHW, rng: Rng) => ImageCHW;

/** Sample shape [C, H, W] (or [H, W]) after the pipeline; throws on a malformed spec. */
export function transformedShape(specs: readonly TransformSpec[], shape: readonly number[]): number[] {
  let [c, h, w] = chw(shape, 'transform');
  for (const s of specs) {
    switch (s?.type) {
      case 'toFloat':
      case 'randomHorizontalFlip':
        break;
      case 'normalize':
        if (!Array.isArray(s.mean) || !Array.isArray(s.std) || s.mean.length !== c || s.std.length !== c) {
          throw new RangeError(`transform normalize: need ${c} means and stds`);
        }
        break;
      case 'randomCrop': {
        const p = s.padding ?? 0;
        if (!Number.isInteger(p) || p < 0) throw new RangeError(`transform randomCrop: bad padding ${p}`);
        const [th, tw] = hw(s.size, 'randomCrop');
        if (th > h + 2 * p || tw > w + 2 * p) {
          throw new RangeError(
            `transform randomCrop: crop ${th}x${tw} is larger than the padded ${h + 2 * p}x${w + 2 * p}`,
          );
        }
        [h, w] = [th, tw];
        break;
      }
      case 'randomResizedCrop':
      case 'centerCrop':
      case 'resize':
        [h, w] = hw(s.size, s.type);
        break;
      default:
        throw new TypeError(`transform: unknown transform ${JSON.stringify(s)}`);
    }
  }
  return shape.length === 2 ? [h, w] : [c, h, w];
}

function chw(shape: readonly number[], where: string): [number, number, number] {
  if (shape.length === 3) return shape as [number, number, number];
  if (shape.length === 2) return [1, shape[0] as number, shape[1] as number];
  throw new RangeError(
    `${where}: image transforms need samples of shape [C, H, W] or [H, W], got [${shape.join(', ')}]`,
  );
}

/** Runs the pipeline on one image (values already float). */
export function applyTransforms(specs: readonly TransformSpec[], img: ImageCHW, rng: Rng): ImageCHW {
  for (const s of specs) {
    switch (s.type) {
      case 'toFloat': {
        const d = img.data;
        for (let i = 0; i < d.length; i++) d[i] = (d[i] as number) / 255;
        break;
      }
      case 'randomCrop':
        img = randomCrop(img, rng, s.size, s.padding ?? 0);
        break;
      case 'randomHorizontalFlip':
        img = randomHorizontalFlip(img, rng, s.p ?? 0.5);
        break;
      case 'randomResizedCrop': {
        const o: ResizedCropOptions = {};
        if (s.scale) o.scale = s.scale;
        if (s.ratio) o.ratio = s.ratio;
        img = randomResizedCrop(img, rng, s.size, o);
        break;
      }
      case 'centerCrop':
        img = centerCrop(img, s.size);
        break;
      case 'resize':
        img = resize(img, s.size);
        break;
      case 'normalize':
        img = normalize(img, s.mean, s.std);
        break;
    }
  }
  return img;
}

/**
 * Transforms a batch: `src` holds n samples of `sampleShape` (any numeric typed array, read by
 * value), sample k uses rngFor(k). Returns the float32 batch and the new sample shape.
 */
export function transformBatch(
  transform: readonly TransformSpec[] | TransformFn,
  src: ArrayLike<number>,
  n: number,
  sampleShape: readonly number[],
  rngFor: (k: number) => Rng,
): { data: Float32Array; sampleShape: number[] } {
  const [c, h, w] = chw(sampleShape, 'transform');
  const per = c * h * w;
  if (src.length !== n * per) throw new RangeError(`transform: batch has ${src.length} values, expected ${n}x${per}`);
  let outShape: number[] | null = typeof transform === 'function' ? null : transformedShape(transform, sampleShape);
  let out: Float32Array | null = outShape ? new Float32Array(n * outShape.reduce((a, b) => a * b, 1)) : null;
  for (let k = 0; k < n; k++) {
    const data = new Float32Array(per);
    for (let i = 0; i < per; i++) data[i] = src[k * per + i] as number;
    const img: ImageCHW = { data, c, h, w };
    const res =
      typeof transform === 'function' ? transform(img, rngFor(k)) : applyTransforms(transform, img, rngFor(k));
    const shape = sampleShape.length === 2 && res.c === 1 ? [res.h, res.w] : [res.c, res.h, res.w];
    if (!outShape || !out) {
      outShape = shape;
      out = new Float32Array(n * res.data.length);
    } else if (shape.join() !== outShape.join()) {
      throw new RangeError(
        `transform: sample ${k} came out as [${shape.join(', ')}], earlier ones as [${outShape.join(', ')}]`,
      );
    }
    out.set(res.data, k * res.data.length);
  }
  return { data: out ?? new Float32Array(0), sampleShape: outShape ?? [...sampleShape] };
}
