// dtype.ts: dtypes and devices, their native codes and typed-array views.
export type DType = 'f32' | 'f64' | 'i32' | 'bf16';
export type Device = 'cpu' | 'cuda';
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint16Array;

export const DTYPE_CODE: Record<DType, number> = { f32: 0, f64: 1, i32: 2, bf16: 3 };
export const DTYPE_SIZE: Record<DType, number> = { f32: 4, f64: 8, i32: 4, bf16: 2 };
export const DTYPES: readonly DType[] = ['f32', 'f64', 'i32', 'bf16'];

export function isFloat(d: DType): boolean {
  return d !== 'i32';
}

export function viewOf(dtype: DType, buf: ArrayBuffer): TypedArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(buf);
    case 'f64':
      return new Float64Array(buf);
    case 'i32':
      return new Int32Array(buf);
    case 'bf16':
      return new Uint16Array(buf);
  }
}

export function dtypeOfArray(a: ArrayBufferView): DType | null {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Float64Array) return 'f64';
  if (a instanceof Int32Array) return 'i32';
  return null;
}

export function checkDType(d: unknown, where: string): DType {
  if (typeof d === 'string' && (DTYPES as readonly string[]).includes(d)) return d as DType;
  throw new TypeError(`${where}: dtype must be one of ${DTYPES.join(', ')}, got ${String(d)}`);
}
