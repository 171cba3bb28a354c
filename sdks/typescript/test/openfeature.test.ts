/** The OpenFeature provider through the real @openfeature/server-sdk, with a Client on a real HTTP
 * server on 127.0.0.1: resolution, reasons and error codes, exposures only when asked, events. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { ErrorCode, OpenFeature, ProviderEvents, StandardResolutionReasons } from "@openfeature/server-sdk";

import { Client } from "../src/client.js";
import { RamplightProvider, RECORD_EXPOSURE } from "../src/openfeature.js";
import { FakeServer, flag, KEY, until } from "./server.js";

const quiet = { info() {}, warn() {}, error() {} };
const profiles = flag("profile", {
  rules: [{ id: "staff", clauses: [{ attribute: "email", op: "in", values: ["ana@corp"] }], variation: "candidate" }],
});
const config = { environment: "production", flags: { profile: profiles }, segments: {} };

describe("OpenFeature provider", () => {
  let server: FakeServer;
  let client: Client;
  let provider: RamplightProvider;
  const flags = () => OpenFeature.getClient();

  before(async () => {
    server = await new FakeServer(config).start();
    client = new Client({ url: server.url, sdkKey: KEY, stream: false, pollIntervalMs: 50, logger: quiet, flushIntervalMs: 20 });
    provider = new RamplightProvider(client);
    await OpenFeature.setProviderAndWait(provider);
  });
  after(async () => {
    await OpenFeature.close(); // closes the client
    await server.stop();
  });

  it("resolves from the unit's attribute or the targeting key, with the variant, reason and metadata", async () => {
    const byKey = await flags().getStringDetails("profile", "dflt", { targetingKey: "user-1" });
    const byUnit = await flags().getStringDetails("profile", "dflt", { user: "user-1", plan: "pro" });
    const local = client.evaluate("profile", "user-1");
    for (const details of [byKey, byUnit]) {
      assert.equal(details.value, local.value);
      assert.equal(details.variant, local.variation);
      assert.equal(details.reason, StandardResolutionReasons.SPLIT);
      assert.equal(details.errorCode, undefined);
      assert.equal(details.flagMetadata["contextId"], "user-1");
      assert.equal(details.flagMetadata["assignment_unit"], "user");
    }
    const staff = await flags().getStringDetails("profile", "dflt", { targetingKey: "user-1", email: "ana@corp" });
    assert.deepEqual([staff.value, staff.variant, staff.reason], ["v4", "candidate", StandardResolutionReasons.TARGETING_MATCH]);
    assert.equal(staff.flagMetadata["rule_id"], "staff");
  });

  it("serves the default with OpenFeature's error codes", async () => {
    const missingUnit = await flags().getStringDetails("profile", "dflt", { plan: "pro" });
    assert.deepEqual([missingUnit.value, missingUnit.errorCode], ["dflt", ErrorCode.TARGETING_KEY_MISSING]);
    const unknown = await flags().getStringDetails("nope", "dflt", { targetingKey: "user-1" });
    assert.deepEqual([unknown.value, unknown.errorCode], ["dflt", ErrorCode.FLAG_NOT_FOUND]);
    const wrongType = await flags().getBooleanDetails("profile", true, { targetingKey: "user-1" });
    assert.deepEqual([wrongType.value, wrongType.errorCode], [true, ErrorCode.TYPE_MISMATCH]);
    const notObject = await flags().getObjectDetails("profile", { a: 1 }, { targetingKey: "user-1" });
    assert.deepEqual([notObject.value, notObject.errorCode], [{ a: 1 }, ErrorCode.TYPE_MISMATCH]);
  });

  it("records an exposure only when asked, with the evaluation reason; track sends an event", async () => {
    await flags().getStringValue("profile", "dflt", { targetingKey: "user-2" }); // evaluated, not exposed
    await flags().getStringValue("profile", "dflt", { targetingKey: "user-3" }, RECORD_EXPOSURE);
    await flags().getStringValue("profile", "dflt", { targetingKey: "user-4", email: "ana@corp" }, RECORD_EXPOSURE);
    const scope = provider.exposure("profile", { targetingKey: "user-5", email: "ana@corp" }, "dflt");
    assert.equal(scope.fallback("timeout"), "v3");
    scope.end();
    flags().track("resolved", { targetingKey: "user-3" }, { value: 1, flag_key: "profile", plan: "pro" });
    await client.flush(2_000);
    await until(() => server.items.exposures.length === 3 && server.items.events.length === 1);
    const exposures = Object.fromEntries(server.items.exposures.map((e) => [e["unit_id"], e]));
    assert.deepEqual(Object.keys(exposures).sort(), ["user-3", "user-4", "user-5"]);
    assert.equal(exposures["user-3"]?.["evaluation_reason"], "rollout");
    assert.equal(exposures["user-4"]?.["evaluation_reason"], "rule");
    assert.deepEqual(
      [exposures["user-5"]?.["assigned_variation"], exposures["user-5"]?.["served_variation"], exposures["user-5"]?.["fallback_reason"]],
      ["candidate", "control", "timeout"],
    );
    const [event] = server.items.events;
    assert.deepEqual(
      [event?.["name"], event?.["unit_id"], event?.["value"], event?.["flag_key"], event?.["assignment_unit"]],
      ["resolved", "user-3", 1, "profile", "user"],
    );
    assert.deepEqual(event?.["properties"], { plan: "pro" });
  });

  it("emits CONFIGURATION_CHANGED when a new config arrives", async () => {
    let changed: string[] | undefined;
    flags().addHandler(ProviderEvents.ConfigurationChanged, (details) => {
      changed = details?.flagsChanged;
    });
    server.setConfig({ ...config, flags: { profile: { ...profiles, enabled: false, version: 2 } } });
    await until(() => changed !== undefined);
    assert.deepEqual(changed, ["profile"]);
    const off = await flags().getStringDetails("profile", "dflt", { targetingKey: "user-1" });
    assert.equal(off.reason, StandardResolutionReasons.DISABLED);
  });
});
