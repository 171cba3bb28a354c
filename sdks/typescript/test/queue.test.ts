/** Evidence to POST /ingest/batch against a real HTTP server on 127.0.0.1. */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { Backoff } from "../src/retry.js";
import { Client } from "../src/client.js";
import { FakeServer, flag, KEY, until } from "./server.js";

const quiet = { info() {}, warn() {}, error() {} };
const config = { environment: "production", flags: { profile: flag("profile") }, segments: {} };
const fast = new Backoff({ baseMs: 10, capMs: 40 });

describe("evidence", () => {
  const opened: (FakeServer | Client)[] = [];
  after(async () => {
    for (const x of opened.reverse()) await (x instanceof Client ? x.close(100) : x.stop());
  });

  async function setup(options: Partial<ConstructorParameters<typeof Client>[0]> = {}) {
    const server = await new FakeServer(config).start();
    const client = new Client({ url: server.url, sdkKey: KEY, stream: false, logger: quiet, backoff: fast, ...options });
    opened.push(server, client);
    await client.ready(2000);
    return { server, client };
  }

  it("records an exposure when the behavior ran, with the served variation after a fallback, and none for an error", async () => {
    const { server, client } = await setup();
    const unit = ["user-1", "user-2", "user-3", "user-4"].find((u) => client.evaluate("profile", u).variation === "candidate") as string;
    const value = await client.withExposure("profile", unit, { plan: "pro" }, "dflt", (x) => x.fallback("timeout"));
    assert.equal(value, "v3");
    client.exposure("profile", "user-9").end();
    client.exposure("missing-flag", "user-1", null, "dflt").end();
    const looked = client.exposure("profile", "user-10"); // evaluated, never ran: no exposure
    assert.equal(typeof looked.value, "string");
    assert.deepEqual(await client.close(2000), {});
    assert.equal(server.items.exposures.length, 2);
    const [fellBack, ran] = server.items.exposures;
    assert.deepEqual(
      [fellBack?.unit_id, fellBack?.assigned_variation, fellBack?.served_variation, fellBack?.fallback_reason, fellBack?.assignment_unit],
      [unit, "candidate", "control", "timeout", "user"],
    );
    assert.deepEqual(fellBack?.attributes, { plan: "pro" });
    assert.equal(fellBack?.evaluation_reason, "rollout");
    assert.equal(ran?.assigned_variation, ran?.served_variation);
    assert.match(String(ran?.event_id), /^[0-9a-f]{32}$/);
    assert.equal(ran?.sdk, "ramplight-typescript/0.1.0");
  });

  it("batches: batch_size items go in one request, the rest at the flush interval", async () => {
    const { server, client } = await setup({ batchSize: 50, flushIntervalMs: 20 });
    for (let k = 0; k < 120; k++) assert.equal(client.track("resolved", `user-${k}`, { flagKey: "profile", value: 1 }), true);
    assert.equal(await client.flush(2000), true);
    const posts = server.requests.filter((r) => r.path === "/ingest/batch");
    assert.deepEqual(posts.map((r) => (JSON.parse(r.body) as { events: unknown[] }).events.length), [50, 50, 20]);
    assert.equal(server.items.events[0]?.assignment_unit, "user");
    assert.equal(client.stats.sent, 120);
    assert.equal(client.track("no-unit", "u"), false);
    assert.equal(client.stats.failed, 1);
  });

  it("retries a 503 no sooner than its Retry-After, and sends the batch once", async () => {
    const { server, client } = await setup({ flushIntervalMs: 10 });
    let refusals = 0;
    server.intercept = (req, res) => {
      if (req.url === "/ingest/batch" && refusals === 0) {
        refusals += 1;
        res.writeHead(503, { "Retry-After": "1" }).end();
        return true;
      }
      return false;
    };
    client.track("resolved", "user-1", { flagKey: "profile" });
    assert.equal(await client.flush(5000), true);
    const posts = server.requests.filter((r) => r.path === "/ingest/batch");
    assert.equal(posts.length, 2);
    assert.ok((posts[1]?.at ?? 0) - (posts[0]?.at ?? 0) >= 950, "waited out Retry-After");
    assert.equal(client.stats.retries, 1);
    assert.equal(server.items.events.length, 1);
  });

  it("holds at most the bound during an outage, counts what it dropped, and reports it when the server is back", async () => {
    const { server, client } = await setup({ queueCapacity: 3, flushIntervalMs: 10 });
    let down = true;
    server.intercept = (req, res) => {
      if (req.url === "/ingest/batch" && down) {
        res.writeHead(502).end();
        return true;
      }
      return false;
    };
    const taken = [1, 2, 3, 4, 5].map((k) => client.track("resolved", `user-${k}`, { flagKey: "profile" }));
    assert.deepEqual(taken, [true, true, true, false, false]);
    assert.deepEqual(client.stats.droppedByReason, { queue_full: 2 });
    await until(() => client.stats.retries >= 2, 2000, "retries");
    down = false;
    await until(() => server.items.events.some((e) => e.name === "ramplight.sdk.dropped"), 3000, "the dropped report");
    const report = server.items.events.find((e) => e.name === "ramplight.sdk.dropped");
    assert.deepEqual([report?.value, report?.properties, report?.assignment_unit], [2, { kind: "events", reason: "queue_full" }, "sdk_instance"]);
    assert.equal(server.items.events.filter((e) => e.name === "resolved").length, 3);
  });

  it("close() keeps its deadline against a server that never answers, and says what it could not send", async () => {
    const { server, client } = await setup();
    server.intercept = (req) => req.url === "/ingest/batch"; // never answered
    client.track("resolved", "user-1", { flagKey: "profile" });
    client.exposure("profile", "user-1").end();
    const started = Date.now();
    const unsent = await client.close(300);
    assert.ok(Date.now() - started < 1500, `close took ${Date.now() - started} ms`);
    assert.deepEqual(unsent, { events: 1, exposures: 1 });
    assert.deepEqual(client.stats.droppedByReason, { unsent_at_close: 2 });
  });

  it("drops a batch the server refuses (401) without retrying it", async () => {
    const server = await new FakeServer(config).start();
    const client = new Client({ url: server.url, sdkKey: KEY, stream: false, logger: quiet, backoff: fast, flushIntervalMs: 10 });
    opened.push(server, client);
    await client.ready(2000);
    server.intercept = (req, res) => {
      if (req.url !== "/ingest/batch") return false;
      res.writeHead(401).end();
      return true;
    };
    client.track("resolved", "user-1", { flagKey: "profile" });
    await until(() => client.stats.dropped === 1, 2000, "the refusal");
    assert.deepEqual(client.stats.droppedByReason, { refused: 1 });
    assert.equal(client.stats.retries, 0);
  });
  it("with a spool directory, close() writes what it could not send and the next client sends it", async () => {
    const spoolDir = mkdtempSync(join(tmpdir(), "ramplight-spool-"));
    const gone = await new FakeServer(config).start();
    const url = gone.url;
    await gone.stop(); // the server is down while the first client closes
    const first = new Client({ url, sdkKey: KEY, stream: false, logger: quiet, backoff: fast, spoolDir, closeTimeoutMs: 200 });
    for (const unit of ["u1", "u2", "u3"]) assert.ok(first.track("resolved", unit, { assignmentUnit: "user", value: 1 }));
    assert.ok(first.score("helpfulness", 0.5, { unitId: "u1", flagKey: "profile", variation: "control" }));
    assert.deepEqual(await first.close(), { events: 3, evals: 1 });
    assert.equal(first.stats.spooled, 4);
    assert.equal(first.stats.dropped, 0);
    const files = readdirSync(spoolDir);
    assert.equal(files.length, 1);
    const lines = readFileSync(join(spoolDir, files[0] as string), "utf8").trimEnd().split("\n");
    assert.deepEqual(lines.map((l) => l.split(" ")[0]), ["events", "events", "events", "evals"]);

    const { server, client } = await setup({ spoolDir });
    assert.equal(client.stats.unspooled, 4);
    await until(() => server.items.events.length === 3 && server.items.evals.length === 1);
    assert.deepEqual(server.items.events.map((e) => e["unit_id"]).sort(), ["u1", "u2", "u3"]);
    const sentIds = lines.map((l) => (JSON.parse(l.slice(l.indexOf(" ") + 1)) as { event_id: string }).event_id);
    const receivedIds = [...server.items.events, ...server.items.evals].map((e) => e["event_id"]);
    assert.deepEqual(receivedIds.sort(), sentIds.sort()); // the same items: a resend would be stored once
    assert.deepEqual(readdirSync(spoolDir), []); // claimed and deleted
  });
});
