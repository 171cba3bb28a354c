/** Following config changes against a real HTTP server on 127.0.0.1: SSE, fallback to ETag polling. */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { Client } from "../src/client.js";
import { FakeServer, flag, KEY, until } from "./server.js";

const quiet = { info() {}, warn() {}, error() {} };
const configWith = (enabled: boolean) => ({ environment: "production", flags: { profile: flag("profile", { enabled }) }, segments: {} });

describe("config by ETag polling (the server has no stream)", () => {
  const opened: (FakeServer | Client)[] = [];
  after(async () => {
    for (const x of opened.reverse()) await (x instanceof Client ? x.close(100) : x.stop());
  });

  it("polls with If-None-Match, takes 304 as unchanged, and applies a change at the next poll", async () => {
    const server = await new FakeServer(configWith(true)).start();
    const client = new Client({ url: server.url, sdkKey: KEY, pollIntervalMs: 30, logger: quiet });
    opened.push(server, client);
    assert.equal(await client.ready(2000), true);
    assert.equal(client.evaluate("profile", "user-1").reason, "rollout");
    await until(() => server.requests.some((r) => r.path === "/sdk/config" && r.headers["if-none-match"] === '"v1"'), 2000, "a conditional poll");
    assert.equal(client.configMode, "polling");
    const changes: string[][] = [];
    client.onConfigChange((keys) => changes.push(keys));
    server.setConfig(configWith(false));
    await until(() => client.evaluate("profile", "user-1").reason === "off", 2000, "the kill");
    assert.deepEqual(changes, [["profile"]]);
  });

  it("keeps the last good config while the server is away, and serves defaults before any", async () => {
    const server = await new FakeServer(configWith(true)).start();
    const client = new Client({ url: server.url, sdkKey: KEY, pollIntervalMs: 20, logger: quiet });
    opened.push(client);
    await client.ready(2000);
    await server.stop();
    const polls = server.requests.length;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.requests.length, polls);
    assert.equal(client.evaluate("profile", "user-1").reason, "rollout");
    const nobody = new Client({ url: server.url, sdkKey: KEY, logger: quiet });
    opened.push(nobody);
    assert.equal(await nobody.ready(50), false);
    assert.deepEqual(
      { value: nobody.evaluate("profile", "u", {}, "dflt").value, code: nobody.evaluate("profile", "u").errorCode },
      { value: "dflt", code: "flag_not_found" },
    );
  });
});

describe("config by Server-Sent Events (GET /sdk/stream)", () => {
  const opened: (FakeServer | Client)[] = [];
  after(async () => {
    for (const x of opened.reverse()) await (x instanceof Client ? x.close(100) : x.stop());
  });

  it("takes the first config from the stream and applies a pushed change at once, without polling", async () => {
    const server = await new FakeServer(configWith(true)).start();
    server.stream = true;
    const client = new Client({ url: server.url, sdkKey: KEY, pollIntervalMs: 60_000, logger: quiet });
    opened.push(server, client);
    assert.equal(await client.ready(2000), true);
    assert.equal(client.configMode, "streaming");
    const stream = server.requests.find((r) => r.path === "/sdk/stream");
    assert.equal(stream?.headers.authorization, `Bearer ${KEY}`);
    assert.equal(stream?.headers.accept, "text/event-stream");
    server.ping();
    const killedAt = Date.now();
    server.setConfig(configWith(false));
    await until(() => client.evaluate("profile", "user-1").reason === "off", 1000, "the pushed kill");
    assert.ok(Date.now() - killedAt < 1000);
    assert.equal(server.requests.filter((r) => r.path === "/sdk/config").length, 0);
  });

  it("reconnects after the server closes the stream, resuming with Last-Event-ID", async () => {
    const server = await new FakeServer(configWith(true)).start();
    server.stream = true;
    const client = new Client({ url: server.url, sdkKey: KEY, logger: quiet });
    opened.push(server, client);
    await client.ready(2000);
    await until(() => server.openStreams === 1, 2000, "the stream");
    server.dropStreams();
    await until(() => server.requests.filter((r) => r.path === "/sdk/stream").length === 2, 2000, "a reconnect");
    const again = server.requests.filter((r) => r.path === "/sdk/stream")[1];
    assert.equal(again?.headers["last-event-id"], '"v1"');
    await until(() => server.openStreams === 1, 2000, "the stream again");
    server.setConfig(configWith(false));
    await until(() => client.evaluate("profile", "user-1").reason === "off", 1000, "the kill after reconnecting");
  });

  it("falls back to ETag polling when the stream answers 404", async () => {
    const server = await new FakeServer(configWith(true)).start();
    const client = new Client({ url: server.url, sdkKey: KEY, pollIntervalMs: 20, logger: quiet });
    opened.push(server, client);
    assert.equal(await client.ready(2000), true);
    assert.deepEqual(server.requests.slice(0, 2).map((r) => r.path), ["/sdk/stream", "/sdk/config"]);
    assert.equal(client.configMode, "polling");
  });

  it("polls while the server is unreachable and streams once it is back", async () => {
    const server = new FakeServer(configWith(true));
    server.stream = true;
    await server.start();
    const port = new URL(server.url).port;
    await server.stop(); // connection refused from here on
    const client = new Client({ url: `http://127.0.0.1:${port}`, sdkKey: KEY, logger: quiet });
    opened.push(client);
    assert.equal(await client.ready(200), false);
    const back = new FakeServer(configWith(false));
    back.stream = true;
    await back.start(Number(port));
    opened.push(back);
    assert.equal(await client.ready(5000), true);
    assert.equal(client.evaluate("profile", "user-1").reason, "off");
    await until(() => client.configMode === "streaming", 5000, "streaming");
  });
});
