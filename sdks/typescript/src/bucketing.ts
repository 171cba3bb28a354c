/** Positions, slots and thresholds (spec/bucketing.md §1–2), exact with BigInt. */
import xxhash from "@node-rs/xxhash";

const { xxh3 } = xxhash;

/** The unit interval is cut into this many slots; a weight is a whole number of them. */
export const SLOTS = 100_000;
const TWO_64 = 1n << 64n;
const SLOTS_N = BigInt(SLOTS);
const encoder = new TextEncoder();

/** The UTF-8 bytes hashed for a unit: salt + ":" + unit_id, unescaped and unnormalised. */
export function bucketInput(salt: string, unitId: string): Uint8Array {
  return encoder.encode(`${salt}:${unitId}`);
}

/** XXH3-64 (seed 0) of salt + ":" + unit_id as an unsigned 64-bit BigInt.
 *  Throws on a lone surrogate: such a string has no UTF-8 form (the evaluator reports `general`). */
export function position(salt: string, unitId: string): bigint {
  const text = `${salt}:${unitId}`;
  if (!text.isWellFormed()) {
    throw new TypeError("unit id is not valid Unicode (a lone surrogate): it has no UTF-8 form");
  }
  return xxh3.xxh64(text);
}

/** floor(position * 100000 / 2^64): needs 81 bits, so BigInt, never a float. */
export function slotOf(pos: bigint): number {
  return Number((pos * SLOTS_N) >> 64n);
}

/** ceil(s * 2^64 / 100000), the smallest position whose slot is at least s. */
export function threshold(slot: number): bigint {
  const n = BigInt(slot) * TWO_64;
  return (n + SLOTS_N - 1n) / SLOTS_N;
}
