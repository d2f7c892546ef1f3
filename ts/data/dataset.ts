// dataset.ts: the Dataset interface (length, get(i), an optional batch-collating fast path),
// TensorDataset over typed arrays, and collate() that builds a raw batch from any Dataset.
// Samples are raw typed arrays (decoding and augmentation happen in the loader), so datasets stay
// cheap and a worker thread can do the expensive part.

export type SampleData = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface Sample {
  /** The sample's values, row-major, `sampleShape` of the dataset. */
  x: SampleData;
  /** Its class label / target. */
  y: number;
}

/** n samples side by side: x holds n * prod(sampleShape) values. */
export interface RawBatch {
  x: SampleData;
  y: Int32Array;
  sampleShape: number[];
}

export interface Dataset {
  readonly length: number;
  /** The shape of one sample's x, e.g. [1, 28, 28]. */
  readonly sampleShape: readonly number[];
  get(i: number): Sample | Promise<Sample>;
  /** Optional fast path: the samples at `indices` collated into one raw batch. */
  getBatch?(indices: ArrayLike<number>): RawBatch | Promise<RawBatch>;
}

type SampleCtor = { new (n: number): SampleData };

export function numelOfShape(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkIndex(i: number, n: number, where: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`${where}: index ${i} out of range [0, ${n})`);
}

/** A dataset over in-memory arrays: x holds n samples of sampleShape, y one label each. */
export class TensorDataset implements Dataset {
  readonly length: number;
  readonly sampleShape: readonly number[];
  private readonly per: number;
  readonly y: Int32Array;

  constructor(
    readonly x: SampleData,
    y: ArrayLike<number>,
    sampleShape: readonly number[],
  ) {
    if (!sampleShape.every((s) => Number.isInteger(s) && s > 0)) {
      throw new RangeError(`TensorDataset: bad sample shape [${sampleShape.join(', ')}]`);
    }
    this.sampleShape = Object.freeze([...sampleShape]);
    this.per = numelOfShape(sampleShape);
    this.length = y.length;
    if (x.length !== this.length * this.per) {
      throw new RangeError(
        `TensorDataset: ${y.length} labels and samples of [${sampleShape.join(', ')}] need ${this.length * this.per} values in x, got ${x.length}`,
      );
    }
    this.y = Int32Array.from(y, (v, i) => {
      if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
        throw new TypeError(`TensorDataset: label ${v} at index ${i} is not a 32-bit integer`);
      }
      return v;
    });
  }

  get(i: number): Sample {
    checkIndex(i, this.length, 'TensorDataset.get');
    return { x: this.x.subarray(i * this.per, (i + 1) * this.per), y: this.y[i] as number };
  }

  getBatch(indices: ArrayLike<number>): RawBatch {
    const n = indices.length;
    const per = this.per;
    const x = new (this.x.constructor as SampleCtor)(n * per);
    const y = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const i = indices[k] as number;
      checkIndex(i, this.length, 'TensorDataset.getBatch');
      x.set(this.x.subarray(i * per, (i + 1) * per) as never, k * per);
      y[k] = this.y[i] as number;
    }
    return { x, y, sampleShape: [...this.sampleShape] };
  }
}

/** The raw batch of `indices`: the dataset's fast path if it has one, else get() per sample. */
export async function collate(ds: Dataset, indices: ArrayLike<number>): Promise<RawBatch> {
  if (ds.getBatch) {
    const b = await ds.getBatch(indices);
    const want = indices.length * numelOfShape(b.sampleShape);
    if (b.x.length !== want || b.y.length !== indices.length) {
      throw new RangeError(
        `collate: getBatch returned ${b.x.length} values and ${b.y.length} labels, expected ${want} and ${indices.length}`,
      );
    }
    return b;
  }
  const shape = [...ds.sampleShape];
  const per = numelOfShape(shape);
  const n = indices.length;
  let x: SampleData | null = null;
  const y = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const s = await ds.get(indices[k] as number);
    if (s.x.length !== per) {
      throw new RangeError(`collate: sample ${indices[k]} has ${s.x.length} values, expected [${shape.join(', ')}]`);
    }
    if (!x) x = new (s.x.constructor as SampleCtor)(n * per);
    else if (s.x.constructor !== x.constructor) {
      throw new TypeError(
        `collate: sample ${indices[k]} is a ${s.x.constructor.name}, earlier ones ${x.constructor.name}`,
      );
    }
    x.set(s.x as never, k * per);
    y[k] = s.y;
  }
  return { x: x ?? new Float32Array(0), y, sampleShape: shape };
}
