/** Replays every file in spec/vectors against the TypeScript implementation. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { bucketInput, position, slotOf, threshold } from "../src/bucketing.js";
import { Bucketer, CompiledConfig, initialLayout, type ExpectedType, type Range, type SdkConfig } from "../src/evaluate.js";
import { VECTORS } from "./paths.js";

function load<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, VECTORS), "utf8")) as T;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("hash.json", () => {
  const { cases } = load<{ cases: { salt: string; unit_id: string; input_utf8_hex: string; position: string; slot: number; note: string }[] }>("hash.json");
  it("has cases", () => assert.ok(cases.length > 0));
  for (const [k, c] of cases.entries()) {
    it(`case ${k} (${c.note}): bytes, XXH3-64 position and slot`, () => {
      assert.equal(hex(bucketInput(c.salt, c.unit_id)), c.input_utf8_hex);
      assert.equal(position(c.salt, c.unit_id), BigInt(c.position));
      assert.equal(slotOf(BigInt(c.position)), c.slot);
    });
  }
});

describe("thresholds.json", () => {
  const v = load<{ thresholds: { slot: number; threshold: string }[]; positions: { position: string; slot: number }[] }>("thresholds.json");
  for (const t of v.thresholds) {
    it(`threshold(${t.slot}) = ${t.threshold}`, () => assert.equal(threshold(t.slot), BigInt(t.threshold)));
  }
  it("slot_of every listed position", () => {
    for (const p of v.positions) assert.equal(slotOf(BigInt(p.position)), p.slot, p.position);
  });
  it("slot_of(p) >= s exactly when p >= threshold(s), at every listed pair", () => {
    for (const p of v.positions) {
      for (const t of v.thresholds) {
        assert.equal(slotOf(BigInt(p.position)) >= t.slot, BigInt(p.position) >= BigInt(t.threshold));
      }
    }
  });
});

describe("rollout.json", () => {
  const { cases } = load<{
    cases: { name: string; salt: string; weights: [string, number][] | null; ranges: Range[]; assignments: { unit_id: string; position: string; slot: number; variation: string }[] }[];
  }>("rollout.json");
  for (const c of cases) {
    it(`${c.name}: layout, positions, slots and variations`, () => {
      if (c.weights !== null) assert.deepEqual(initialLayout(Object.fromEntries(c.weights)), c.ranges);
      const bucketer = new Bucketer(c.ranges);
      for (const a of c.assignments) {
        const pos = position(c.salt, a.unit_id);
        assert.equal(pos, BigInt(a.position), a.unit_id);
        assert.equal(slotOf(pos), a.slot, a.unit_id);
        assert.equal(bucketer.variationAt(pos), a.variation, a.unit_id);
      }
    });
  }
});

describe("reallocate.json (serving only: reallocate runs on the server)", () => {
  const { cases } = load<{ cases: { name: string; after: Range[] }[] }>("reallocate.json");
  for (const c of cases) {
    it(`${c.name}: every slot is served the variation of the range holding it`, () => {
      const bucketer = new Bucketer(c.after);
      for (const [variation, start, end] of c.after) {
        for (const slot of [start, end - 1]) {
          assert.equal(bucketer.variationAt(threshold(slot)), variation, `slot ${slot}`);
        }
      }
    });
  }
});

interface EvalCase {
  flag_key: string;
  unit_id: string;
  attributes: Record<string, unknown> | null;
  default: unknown;
  expected_type?: ExpectedType;
  value: unknown;
  variation: string | null;
  reason: string;
  rule_id: string | null;
  error_code: string | null;
}

describe("evaluation.json", () => {
  const { suites } = load<{ suites: { name: string; config: SdkConfig; cases: EvalCase[] }[] }>("evaluation.json");
  for (const suite of suites) {
    describe(suite.name, () => {
      const config = new CompiledConfig(suite.config);
      for (const [k, c] of suite.cases.entries()) {
        it(`case ${k}: ${c.flag_key} for ${JSON.stringify(c.unit_id)} with ${JSON.stringify(c.attributes)}${c.expected_type ? ` as ${c.expected_type}` : ""}`, () => {
          const r = c.expected_type
            ? config.evaluateTyped(c.flag_key, c.unit_id, c.attributes, c.default, c.expected_type)
            : config.evaluate(c.flag_key, c.unit_id, c.attributes, c.default);
          assert.deepEqual(
            { value: r.value, variation: r.variation, reason: r.reason, rule_id: r.ruleId, error_code: r.errorCode },
            { value: c.value, variation: c.variation, reason: c.reason, rule_id: c.rule_id, error_code: c.error_code },
          );
        });
      }
    });
  }
});
