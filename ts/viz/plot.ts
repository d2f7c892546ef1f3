// plot.ts: the training report picture as SVG (and PNG through @resvg/resvg-js): loss per step,
// test accuracy per epoch, and the per-layer R^c and sparsity curves (first vs last evaluation),
// in the spirit of the CRATE paper's layer-wise figure.
import { writeFileSync } from 'node:fs';

export interface Series {
  label: string;
  x: number[];
  y: number[];
  err?: number[];
  color?: string;
}
interface Panel {
  title: string;
  xLabel: string;
  series: Series[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function ticks(lo: number, hi: number, n = 4): number[] {
  if (!(hi > lo)) return [lo];
  const step = 10 ** Math.floor(Math.log10((hi - lo) / n));
  const k = [1, 2, 5, 10].find((m) => (hi - lo) / (m * step) <= n) ?? 10;
  const s = k * step;
  const out: number[] = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-9 * s; v += s) out.push(Number(v.toPrecision(6)));
  return out;
}

function panel(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const pts = p.series.flatMap((s) => s.x.map((x, i) => [x, s.y[i] as number, s.err?.[i] ?? 0] as const));
  const finite = pts.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const out: string[] = [
    `<text x="${x0 + w / 2}" y="${y0 - 8}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`,
  ];
  out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#444"/>`);
  if (!finite.length) return out.join('');
  let xmin = Math.min(...finite.map((q) => q[0]));
  let xmax = Math.max(...finite.map((q) => q[0]));
  let ymin = Math.min(...finite.map((q) => q[1] - q[2]));
  let ymax = Math.max(...finite.map((q) => q[1] + q[2]));
  if (xmax === xmin) {
    xmin -= 0.5;
    xmax += 0.5;
  }
  if (ymax === ymin) {
    ymin -= 0.5;
    ymax += 0.5;
  }
  const pad = (ymax - ymin) * 0.05;
  ymin -= pad;
  ymax += pad;
  const sx = (x: number) => x0 + ((x - xmin) / (xmax - xmin)) * w;
  const sy = (y: number) => y0 + h - ((y - ymin) / (ymax - ymin)) * h;
  for (const t of ticks(ymin, ymax)) {
    out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${sy(t)}" y2="${sy(t)}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 - 4}" y="${sy(t) + 4}" text-anchor="end" font-size="10">${t}</text>`);
  }
  for (const t of ticks(xmin, xmax)) {
    out.push(`<text x="${sx(t)}" y="${y0 + h + 14}" text-anchor="middle" font-size="10">${t}</text>`);
  }
  out.push(`<text x="${x0 + w / 2}" y="${y0 + h + 30}" text-anchor="middle" font-size="11">${esc(p.xLabel)}</text>`);
  p.series.forEach((s, si) => {
    const c = s.color ?? COLORS[si % COLORS.length];
    const path = s.x
      .map((x, i) => [x, s.y[i] as number] as const)
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${c}" stroke-width="1.8"/>`);
    s.x.forEach((x, i) => {
      const y = s.y[i] as number;
      const e = s.err?.[i];
      if (!Number.isFinite(y) || s.x.length > 60) return;
      out.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${c}"/>`);
      if (e) out.push(`<line x1="${sx(x)}" x2="${sx(x)}" y1="${sy(y - e)}" y2="${sy(y + e)}" stroke="${c}"/>`);
    });
    out.push(`<rect x="${x0 + 8}" y="${y0 + 8 + si * 14}" width="10" height="3" fill="${c}"/>`);
    out.push(`<text x="${x0 + 22}" y="${y0 + 13 + si * 14}" font-size="10">${esc(s.label)}</text>`);
  });
  return out.join('');
}

/** A grid of panels (2 columns) as an SVG string. */
export function renderSvg(title: string, panels: Panel[]): string {
  const W = 440;
  const H = 240;
  const cols = 2;
  const rows = Math.ceil(panels.length / cols);
  const width = cols * (W + 80) + 20;
  const height = rows * (H + 80) + 40;
  const body = panels.map((p, i) => panel(p, 70 + (i % cols) * (W + 80), 60 + Math.floor(i / cols) * (H + 80), W, H));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>${body.join('')}</svg>`;
}

/** Writes <base>.svg and, when @resvg/resvg-js loads, <base>.png. Returns the files written. */
export async function writeFigure(base: string, svg: string): Promise<string[]> {
  writeFileSync(`${base}.svg`, svg);
  const files = [`${base}.svg`];
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, { fitTo: { mode: 'width', value: 1100 }, background: 'white' }).render().asPng();
    writeFileSync(`${base}.png`, png);
    files.push(`${base}.png`);
  } catch (e) {
    process.stderr.write(`[crate] PNG skipped (${(e as Error).message.split('\n')[0]}); the SVG is written\n`);
  }
  return files;
}

export interface LayerStat {
  layer: number;
  rc: number;
  rcStd: number;
  sparsity: number;
  sparsityStd: number;
}
export interface TrainHistory {
  steps: { step: number; loss: number }[];
  /** acc is NaN for tasks without accuracy (MAE, language models): the figure shows test loss */
  evals: { epoch: number; acc: number; testLoss?: number; layers: LayerStat[] }[];
}

/** The four-panel training report: loss, accuracy, R^c per layer, sparsity per layer. */
export function trainingFigure(title: string, h: TrainHistory): string {
  const first = h.evals[0];
  const last = h.evals[h.evals.length - 1];
  const layerSeries = (key: 'rc' | 'sparsity', errKey: 'rcStd' | 'sparsityStd', tr: (v: number) => number) =>
    [first, last]
      .filter((e, i, a) => e && (i === 0 || e !== a[0]))
      .map((e) => ({
        label: `epoch ${e?.epoch}`,
        x: (e?.layers ?? []).map((l) => l.layer + 1),
        y: (e?.layers ?? []).map((l) => tr(l[key])),
        err: (e?.layers ?? []).map((l) => l[errKey]),
      }));
  return renderSvg(title, [
    {
      title: 'training loss',
      xLabel: 'step',
      series: [{ label: 'loss', x: h.steps.map((s) => s.step), y: h.steps.map((s) => s.loss) }],
    },
    h.evals.some((e) => Number.isFinite(e.acc))
      ? {
          title: 'test accuracy (%)',
          xLabel: 'epoch',
          series: [{ label: 'accuracy', x: h.evals.map((e) => e.epoch), y: h.evals.map((e) => 100 * e.acc) }],
        }
      : {
          title: 'test loss',
          xLabel: 'epoch',
          series: [
            { label: 'test loss', x: h.evals.map((e) => e.epoch), y: h.evals.map((e) => e.testLoss ?? Number.NaN) },
          ],
        },
    {
      title: 'compression R^c per layer (lower = more compressed)',
      xLabel: 'layer',
      series: layerSeries('rc', 'rcStd', (v) => v),
    },
    {
      title: 'sparsity per layer: ‖Z‖₀ / (N·D)',
      xLabel: 'layer',
      series: layerSeries('sparsity', 'sparsityStd', (v) => 1 - v),
    },
  ]);
}
