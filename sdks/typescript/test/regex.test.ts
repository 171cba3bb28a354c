/** The regex dialect (spec/bucketing.md §4.2) beyond what the vectors cover. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { CompiledConfig } from "../src/evaluate.js";
import { Pattern } from "../src/regex.js";

const refuses = (p: string): boolean => {
  try {
    new Pattern(p);
    return false;
  } catch {
    return true;
  }
};

describe("regex dialect", () => {
  it("refuses what the spec refuses, including what RE2 alone would read", () => {
    for (const p of ["^(a+)+$", "(a*)*", "(a|ab+)*", "((ab)*c)+", "\\1", "(?=a)", "(?<!a)", "a++", "(?i:a)", "a(?i)b", "(?s).",
      "a{101}", "\\Qa.b\\E", "\\z", "\\x{41}", "(?<n>a)", "\\pL", "\\p{Greek}", "[\\w-z]", "(", "x".repeat(257)]) {
      assert.ok(refuses(p), p);
    }
    for (const p of ["^(https?://)?example", "(?P<n>ab)c", "\\_", "[[:alpha:]]", "a{100}", "(?i)abc", "[\\w\\-z]", "x".repeat(256)]) {
      assert.ok(!refuses(p), p);
    }
  });

  it("searches with ASCII classes, . not matching a newline and $ only at the very end", () => {
    assert.equal(new Pattern("^\\d+$").test("١٢"), false);
    assert.equal(new Pattern("^\\w$").test("é"), false);
    assert.equal(new Pattern("^a$").test("a\n"), false);
    assert.equal(new Pattern("^.$").test("\n"), false);
    assert.equal(new Pattern("^.$").test("😀"), true); // one code point
    assert.equal(new Pattern("\\bfoo\\b").test("a foo."), true);
    assert.equal(new Pattern("(?i)^ABC$").test("abc"), true);
    assert.equal(new Pattern("Mobile").test("Safari Mobile/15"), true);
  });

  it("takes linear time on a pattern that stalls a backtracking engine", () => {
    const pattern = new Pattern("^(a|a)*$");
    const started = process.hrtime.bigint();
    assert.equal(pattern.test(`${"a".repeat(1000)}b`), false);
    assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 200);
  });

  it("never matches a value longer than 1024 code points, so negate matches it", () => {
    const doc = (negate: boolean) => ({
      environment: "p",
      segments: {},
      flags: {
        f: {
          key: "f", assignment_unit: "user", version: 1, enabled: true, salt: "f", default_variation: "off", off_variation: "off",
          variations: [{ key: "off", value: 0 }, { key: "on", value: 1 }],
          rules: [{ id: "r", clauses: [{ attribute: "v", op: "regex", values: ["^a"], negate }], variation: "on" }],
          rollout: null,
        },
      },
    });
    const long = "😀".repeat(1024);
    assert.equal(new CompiledConfig(doc(false)).evaluate("f", "u", { v: `a${long.slice(2)}` }, null).variation, "on");
    assert.equal(new CompiledConfig(doc(false)).evaluate("f", "u", { v: `a${long}` }, null).variation, "off");
    assert.equal(new CompiledConfig(doc(true)).evaluate("f", "u", { v: `a${long}` }, null).variation, "on");
  });

  it("serves the default with `general` when it must hash a unit id holding a lone surrogate", () => {
    const config = new CompiledConfig({
      environment: "p",
      segments: {},
      flags: {
        f: {
          key: "f", assignment_unit: "user", version: 1, enabled: true, salt: "f", default_variation: "off", off_variation: "off",
          variations: [{ key: "off", value: 0 }, { key: "on", value: 1 }], rules: [],
          rollout: { ranges: [["off", 0, 50000], ["on", 50000, 100000]] },
        },
      },
    });
    const r = config.evaluate("f", "a\ud800b", null, "D");
    assert.deepEqual([r.value, r.reason, r.errorCode], ["D", "error", "general"]);
  });

  it("agrees with JavaScript's own RegExp on random patterns where the two dialects coincide", () => {
    // A seeded generator of patterns over a, b, c (chars, classes, groups, alternation, anchors,
    // quantified single atoms, optional groups) and of values over a, b, c, x: the matcher keeps
    // work buffers between calls, and every answer must still be JavaScript's.
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)] as T;
    const single = (): string => pick(["a", "b", "c", "[ab]", "[^a]", "[a-c]", "\\d", "\\w"]);
    const quantified = (): string => single() + pick(["", "", "?", "*", "+", "{1,2}", "{2}"]);
    const alternation = (depth: number): string =>
      Array.from({ length: 1 + rand(3) }, () => sequence(depth)).join("|");
    const sequence = (depth: number): string =>
      Array.from({ length: 1 + rand(3) }, () =>
        depth > 0 && rand(4) === 0 ? `(${pick(["", "?:"])}${alternation(depth - 1)})${pick(["", "?"])}` : quantified(),
      ).join("");
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      const source = `${pick(["", "^"])}${alternation(2)}${pick(["", "$"])}`;
      let pattern: Pattern;
      try {
        pattern = new Pattern(source);
      } catch {
        continue; // refused by the dialect (none of these shapes should be, but it is not the point here)
      }
      const reference = new RegExp(source);
      for (let j = 0; j < 25; j++) {
        const value = Array.from({ length: rand(9) }, () => pick(["a", "b", "c", "x", "1"])).join("");
        assert.equal(pattern.test(value), reference.test(value), `${source} on ${JSON.stringify(value)}`);
        compared++;
      }
    }
    assert.ok(compared > 5000, `only ${compared} comparisons`);
  });
});
