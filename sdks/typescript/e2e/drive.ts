/**
 * Drives the SDK against a real Ramplight server for tests/e2e/test_typescript_sdk.py: evaluates
 * a flag for the given units, runs the behavior (every 10th falls back on "timeout"), tracks an
 * outcome per unit, closes, and prints what it served as JSON on stdout.
 *
 *     node dist/e2e/drive.js '{"url": ..., "sdkKey": ..., "flagKey": ..., "units": [[id, attributes], ...]}'
 */
import { Client } from "../src/index.js";

interface Input {
  readonly url: string;
  readonly sdkKey: string;
  readonly flagKey: string;
  readonly units: readonly [string, Record<string, unknown>][];
}

const input = JSON.parse(process.argv[2] ?? "{}") as Input;
const client = new Client({ url: input.url, sdkKey: input.sdkKey });
const ready = await client.ready(10_000);
const assignments: Record<string, { variation: string | null; reason: string; ruleId: string | null }> = {};
for (const [k, [unitId, attributes]] of input.units.entries()) {
  const served = await client.withExposure(input.flagKey, unitId, attributes, null, (x) => {
    assignments[unitId] = { variation: x.variation, reason: x.evaluation.reason, ruleId: x.evaluation.ruleId };
    if (k % 10 === 0) x.fallback("timeout");
    return x.variation;
  });
  client.track("resolved", unitId, { flagKey: input.flagKey, variation: served ?? undefined, value: 1 });
}
const unsent = await client.close(10_000);
process.stdout.write(JSON.stringify({ ready, assignments, unsent, stats: client.stats }));
