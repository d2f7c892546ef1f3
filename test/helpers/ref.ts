// ref.ts: independent float64 references written as plain loops over flat arrays. The suite
// compares every native op against these; they share no code with the library.
export interface Ref {
  data: Float64Array;
  shape: number[];
}

export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
export const strides = (s: readonly number[]): number[] => {
  const r = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    r[i] = acc;
    acc *= s[i] as number;
  }
  return r;
};
export const ref = (shape: number[], f: (i: number) => number = () => 0): Ref => {
  const data = new Float64Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = f(i);
  return { data, shape };
};

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const s = shape[d] as number;
    idx[d] = i % s;
    i = Math.floor(i / s);
  }
  return idx;
}

/** Value of `a` at output multi-index `idx` under numpy broadcasting. */
function bget(a: Ref, idx: number[]): number {
  const off = idx.length - a.shape.length;
  let o = 0;
  const st = strides(a.shape);
  for (let d = 0; d < a.shape.length; d++) {
    const s = a.shape[d] as number;
    o += (s === 1 ? 0 : (idx[off + d] as number)) * (st[d] as number);
  }
  return a.data[o] as number;
}

export function bshape(...shapes: number[][]): number[] {
  const n = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: n }, (_, i) => Math.max(...shapes.map((s) => (s[s.length - n + i] ?? 1) as number)));
}

export function map2(a: Ref, b: Ref, f: (x: number, y: number) => number): Ref {
  const shape = bshape(a.shape, b.shape);
  return ref(shape, (i) => {
    const idx = unravel(i, shape);
    return f(bget(a, idx), bget(b, idx));
  });
}
export function map3(c: Ref, a: Ref, b: Ref, f: (c: number, x: number, y: number) => number): Ref {
  const shape = bshape(c.shape, a.shape, b.shape);
  return ref(shape, (i) => {
    const idx = unravel(i, shape);
    return f(bget(c, idx), bget(a, idx), bget(b, idx));
  });
}
export function map1(a: Ref, f: (x: number) => number): Ref {
  return ref([...a.shape], (i) => f(a.data[i] as number));
}

export function reduceRef(a: Ref, axes: number[], keepdim: boolean, f: (vals: number[]) => number): Ref {
  const outShape = a.shape.map((s, d) => (axes.includes(d) ? 1 : s));
  const groups = new Map<number, number[]>();
  const ost = strides(outShape);
  for (let i = 0; i < a.data.length; i++) {
    const idx = unravel(i, a.shape);
    let o = 0;
    idx.forEach((v, d) => {
      if (!axes.includes(d)) o += v * (ost[d] as number);
    });
    const g = groups.get(o) ?? [];
    g.push(a.data[i] as number);
    groups.set(o, g);
  }
  const out = ref(outShape, (i) => f(groups.get(i) ?? []));
  return { data: out.data, shape: keepdim ? outShape : a.shape.filter((_, d) => !axes.includes(d)) };
}

export function matmulRef(a: Ref, b: Ref, tA = false, tB = false): Ref {
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const M = tA ? ac : ar;
  const K = tA ? ar : ac;
  const N = tB ? br : bc;
  const batch = bshape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const outShape = [...batch, M, N];
  const aB = { data: new Float64Array(0), shape: a.shape.slice(0, -2) };
  const bB = { data: new Float64Array(0), shape: b.shape.slice(0, -2) };
  return ref(outShape, (i) => {
    const idx = unravel(i, outShape);
    const bi = idx.slice(0, -2);
    const m = idx[idx.length - 2] as number;
    const n = idx[idx.length - 1] as number;
    // batch offsets
    const boff = (x: { shape: number[] }, mat: number) => {
      const off = bi.length - x.shape.length;
      const st = strides(x.shape);
      let o = 0;
      for (let d = 0; d < x.shape.length; d++)
        o += (x.shape[d] === 1 ? 0 : (bi[off + d] as number)) * (st[d] as number);
      return o * mat;
    };
    const ao = boff(aB, ar * ac);
    const bo = boff(bB, br * bc);
    let s = 0;
    for (let k = 0; k < K; k++) {
      const av = a.data[ao + (tA ? k * ac + m : m * ac + k)] as number;
      const bv = b.data[bo + (tB ? n * bc + k : k * bc + n)] as number;
      s += av * bv;
    }
    return s;
  });
}

export function rows(a: Ref): [number, number] {
  const cols = a.shape[a.shape.length - 1] as number;
  return [cols === 0 ? 0 : a.data.length / cols, cols];
}

export function softmaxRef(a: Ref, log: boolean): Ref {
  const [R, C] = rows(a);
  const out = ref([...a.shape]);
  for (let r = 0; r < R; r++) {
    let mx = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < C; c++) mx = Math.max(mx, a.data[r * C + c] as number);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp((a.data[r * C + c] as number) - mx);
    for (let c = 0; c < C; c++) {
      const v = (a.data[r * C + c] as number) - mx;
      out.data[r * C + c] = log ? v - Math.log(s) : Math.exp(v) / s;
    }
  }
  return out;
}

export function layerNormRef(x: Ref, w: Ref | null, b: Ref | null, eps: number): Ref {
  const [R, C] = rows(x);
  const out = ref([...x.shape]);
  for (let r = 0; r < R; r++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x.data[r * C + c] as number;
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += ((x.data[r * C + c] as number) - m) ** 2;
    v /= C;
    for (let c = 0; c < C; c++) {
      let y = ((x.data[r * C + c] as number) - m) / Math.sqrt(v + eps);
      if (w) y *= w.data[c] as number;
      if (b) y += b.data[c] as number;
      out.data[r * C + c] = y;
    }
  }
  return out;
}

export function crossEntropyRef(
  logits: Ref,
  target: Ref,
  smoothing: number,
  ignore: number,
  reduction: 'mean' | 'sum' | 'none',
): Ref {
  const [R, C] = rows(logits);
  const per = new Float64Array(R);
  let count = 0;
  for (let r = 0; r < R; r++) {
    const t = target.data[r] as number;
    if (t === ignore) continue;
    count++;
    const row = Array.from(logits.data.subarray(r * C, r * C + C));
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
    const logp = row.map((v) => v - lse);
    per[r] = -(1 - smoothing) * (logp[t] as number) - (smoothing / C) * logp.reduce((s, v) => s + v, 0);
  }
  if (reduction === 'none') return { data: per, shape: logits.shape.slice(0, -1) };
  const s = per.reduce((a, b) => a + b, 0);
  return { data: Float64Array.of(reduction === 'mean' ? s / count : s), shape: [] };
}

export function permuteRef(a: Ref, dims: number[]): Ref {
  const outShape = dims.map((d) => a.shape[d] as number);
  const st = strides(a.shape);
  return ref(outShape, (i) => {
    const idx = unravel(i, outShape);
    let o = 0;
    dims.forEach((d, k) => {
      o += (idx[k] as number) * (st[d] as number);
    });
    return a.data[o] as number;
  });
}

export function sliceRef(a: Ref, axis: number, start: number, end: number, step: number): Ref {
  const outShape = [...a.shape];
  outShape[axis] = Math.max(0, Math.ceil((end - start) / step));
  const st = strides(a.shape);
  return ref(outShape, (i) => {
    const idx = unravel(i, outShape);
    idx[axis] = start + (idx[axis] as number) * step;
    return a.data[idx.reduce((o, v, d) => o + v * (st[d] as number), 0)] as number;
  });
}

export function concatRef(parts: Ref[], axis: number): Ref {
  const outShape = [...(parts[0] as Ref).shape];
  outShape[axis] = parts.reduce((n, p) => n + (p.shape[axis] as number), 0);
  return ref(outShape, (i) => {
    const idx = unravel(i, outShape);
    let k = idx[axis] as number;
    for (const p of parts) {
      const n = p.shape[axis] as number;
      if (k < n) {
        idx[axis] = k;
        const st = strides(p.shape);
        return p.data[idx.reduce((o, v, d) => o + v * (st[d] as number), 0)] as number;
      }
      k -= n;
    }
    return Number.NaN;
  });
}

export function gatherRef(a: Ref, axis: number, index: number[]): Ref {
  const outShape = [...a.shape];
  outShape[axis] = index.length;
  const st = strides(a.shape);
  return ref(outShape, (i) => {
    const idx = unravel(i, outShape);
    idx[axis] = index[idx[axis] as number] as number;
    return a.data[idx.reduce((o, v, d) => o + v * (st[d] as number), 0)] as number;
  });
}

export function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for 1e-10 checks; use a series / continued fraction.
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = x;
    let term = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}
