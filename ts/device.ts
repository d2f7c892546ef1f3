// device.ts: device resolution. Asking for 'cuda' where it cannot run raises an error that
// says why (not compiled in, no driver, no GPU), never a silent CPU fallback.
import type { Device } from './dtype.js';
import { native } from './native.js';

let cudaStatus: { available: boolean; reason: string } | null = null;

export function cudaAvailable(): boolean {
  if (!cudaStatus) {
    const i = native.info();
    cudaStatus = { available: i.cudaAvailable, reason: i.cudaReason ?? '' };
  }
  return cudaStatus.available;
}

export function resolveDevice(device: unknown, where: string): Device {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (device !== 'cuda') throw new TypeError(`${where}: device must be 'cpu' or 'cuda', got ${String(device)}`);
  if (!cudaAvailable()) {
    throw new Error(`${where}: device 'cuda' is not available: ${cudaStatus?.reason}. See \`npx crate info\`.`);
  }
  return 'cuda';
}

/** The addon's device code. */
export const DEVICE_CODE: Record<Device, number> = { cpu: 0, cuda: 1 };
