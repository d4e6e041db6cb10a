/**
 * `sharedArray`: a typed array that user code fills and returns, made where
 * sending it costs no copy (this process's shared-memory arena, SPEC §5). The
 * runtime of a replica plugs its arena in with `setSharedBufferSource`; without
 * one (local `execute`, a process with shared memory off or full) the array is
 * an ordinary one, so the same code runs everywhere.
 *
 * @example
 *   const out = sharedArray(Float32Array, 4 << 20);
 *   for (let i = 0; i < out.length; i++) out[i] = i;
 *   return out; // sent to the caller without a copy
 */

/** The typed arrays `sharedArray` makes (each has BYTES_PER_ELEMENT and the (buffer, offset, length) constructor). */
export type SharedArrayKind =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/** Gives a zeroed buffer of exactly `bytes` bytes in shared memory, or null (too small to be worth it, or no room). */
export type SharedBufferSource = (bytes: number) => ArrayBuffer | null;

let source: SharedBufferSource | null = null;

/**
 * Plugs in where `sharedArray` takes its memory (the runtime does, when the
 * process opens its arena), or with null removes `current` if it is still the
 * one plugged in. Not for user code.
 */
export function setSharedBufferSource(next: SharedBufferSource | null, current?: SharedBufferSource): void {
  if (next !== null || source === current) source = next;
}

/**
 * A zeroed typed array of `length` elements that lives in this process's
 * shared memory when the process is a replica with shared memory on, so that
 * returning it (or passing it to `handle.remote`) sends it without copying
 * its bytes. Anywhere else, or when the arena is short, or below
 * `sharedMemory.thresholdBytes`, it is an ordinary typed array: results are
 * the same either way.
 *
 * The receiver reads these very bytes, so once you have returned or sent the
 * array, do not write to it again. Reading it stays safe, and the memory goes
 * back to the arena when neither this process nor any receiver refers to it.
 *
 * @throws RangeError when `length` is not a whole number from 0 to 2^32.
 * @example
 *   async forward(x: Float32Array) {
 *     const y = sharedArray(Float32Array, x.length);
 *     for (let i = 0; i < x.length; i++) y[i] = x[i] * 2;
 *     return y;
 *   }
 */
export function sharedArray<K extends SharedArrayKind>(kind: K, length: number): InstanceType<K> {
  const size = (kind as { BYTES_PER_ELEMENT?: unknown }).BYTES_PER_ELEMENT;
  if (typeof size !== "number" || typeof kind !== "function") {
    throw new TypeError(`sharedArray(kind, length): kind must be a typed array constructor such as Float32Array, got ${describe(kind)}`);
  }
  if (!Number.isSafeInteger(length) || length < 0 || length > 2 ** 32) {
    throw new RangeError(`sharedArray(${kind.name}, length): length must be a whole number from 0 to 4294967296, got ${String(length)}`);
  }
  const buffer = length > 0 ? source?.(length * size) ?? null : null;
  const Make = kind as unknown as { new (b: ArrayBuffer, off: number, n: number): InstanceType<K>; new (n: number): InstanceType<K> };
  return buffer ? new Make(buffer, 0, length) : new Make(length);
}

function describe(v: unknown): string {
  if (typeof v === "function") return `the function ${v.name || "(anonymous)"}`;
  return v === null ? "null" : typeof v;
}
