/**
 * Evaluations per second of the TypeScript SDK's evaluator on one process, three flags:
 * a 50/50 rollout (hashes every call), a rule-matched flag (equals + in), and a regex clause.
 *
 *     npm run bench
 */
import { CompiledConfig, type FlagDoc } from "../src/index.js";

const base = {
  type: "string",
  assignment_unit: "user",
  version: 1,
  variations: [
    { key: "control", value: "v3" },
    { key: "candidate", value: "v4" },
  ],
  enabled: true,
  default_variation: "control",
  off_variation: "control",
} as const;

const rollout = { weights: { control: 50, candidate: 50 }, ranges: [["control", 0, 50000], ["candidate", 50000, 100000]] as const };
const flags: Record<string, FlagDoc> = {
  simple: { ...base, key: "simple", salt: "simple", rules: [], rollout },
  rules: {
    ...base,
    key: "rules",
    salt: "rules",
    rules: [
      { id: "pro", clauses: [{ attribute: "plan", op: "equals", values: ["pro"] }, { attribute: "country", op: "in", values: ["DE", "FR", "NL"] }], variation: "candidate" },
    ],
    rollout,
  },
  regex: {
    ...base,
    key: "regex",
    salt: "regex",
    rules: [{ id: "staff", clauses: [{ attribute: "email", op: "regex", values: ["@example\\.com$"] }], variation: "candidate" }],
    rollout,
  },
};
const config = new CompiledConfig({ environment: "production", flags, segments: {} });
const units = Array.from({ length: 10_000 }, (_, k) => `user-${k}`);
const attributes = { plan: "pro", country: "FR", email: "someone@somewhere.org" };

function run(flagKey: string, n: number): number {
  const started = process.hrtime.bigint();
  for (let k = 0; k < n; k++) config.evaluate(flagKey, units[k % units.length] as string, attributes, null);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

console.log(`node ${process.version}`);
console.log("flag      evaluations/s   µs/evaluation");
for (const key of Object.keys(flags)) {
  run(key, 50_000); // warm up the JIT
  const n = 500_000;
  const seconds = run(key, n);
  console.log(`${key.padEnd(9)} ${Math.round(n / seconds).toLocaleString("en").padStart(13)}   ${((seconds / n) * 1e6).toFixed(2).padStart(13)}`);
}
