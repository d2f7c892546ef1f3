// init.ts: parameter initialisers matching torch.nn.init (bounds and fans as PyTorch computes them),
// drawing from the global seeded generator.
import type { DType } from '../dtype.js';
import { randn, uniform } from '../ops/creation.js';
import type { Tensor } from '../tensor.js';

/** fan_in of a weight shaped like PyTorch's: (out, in, *kernel). */
export function fanIn(shape: number[]): number {
  return (shape[1] ?? 1) * shape.slice(2).reduce((a, b) => a * b, 1);
}
export function fanOut(shape: number[]): number {
  return (shape[0] ?? 1) * shape.slice(2).reduce((a, b) => a * b, 1);
}

/** torch.nn.init.kaiming_uniform_(w, a): U(-b, b), b = sqrt(2/(1+a²)) * sqrt(3/fan_in). */
export function kaimingUniform(shape: number[], a = 0, dtype: DType = 'f32'): Tensor {
  const bound = Math.sqrt(2 / (1 + a * a)) * Math.sqrt(3 / Math.max(fanIn(shape), 1));
  return uniform(shape, -bound, bound, { dtype });
}
/** torch.nn.init.xavier_uniform_: U(-b, b), b = sqrt(6/(fan_in+fan_out)). */
export function xavierUniform(shape: number[], dtype: DType = 'f32'): Tensor {
  const bound = Math.sqrt(6 / Math.max(fanIn(shape) + fanOut(shape), 1));
  return uniform(shape, -bound, bound, { dtype });
}
export function normal(shape: number[], std: number, dtype: DType = 'f32'): Tensor {
  return randn(shape, { std, dtype });
}
/** nn.Linear's default: weight kaiming_uniform(a=√5) = U(±1/√fan_in); bias U(±1/√fan_in). */
export function linearDefault(outF: number, inF: number, dtype: DType = 'f32'): { weight: Tensor; bias: Tensor } {
  const b = 1 / Math.sqrt(Math.max(inF, 1));
  return { weight: uniform([outF, inF], -b, b, { dtype }), bias: uniform([outF], -b, b, { dtype }) };
}
