import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { SseParser } from "../src/sse.js";

describe("SseParser", () => {
  it("dispatches an event at the blank line, with its type, data and id", () => {
    const p = new SseParser();
    assert.deepEqual(p.feed('event: config\nid: "v1"\ndata: {"a":1}\n'), []);
    assert.deepEqual(p.feed("\n"), [{ event: "config", data: '{"a":1}', id: '"v1"' }]);
  });

  it("joins lines split across chunks, and CRLF split between chunks", () => {
    const p = new SseParser();
    assert.deepEqual(p.feed("event: con"), []);
    assert.deepEqual(p.feed("fig\r"), []);
    assert.deepEqual(p.feed("\ndata: x\r\n\r"), [{ event: "config", data: "x", id: "" }]);
    assert.deepEqual(p.feed("\ndata: y\n\n"), [{ event: "message", data: "y", id: "" }]);
  });

  it("ignores comment lines (heartbeats) and keeps the last id across events", () => {
    const p = new SseParser();
    const events = p.feed(": ping\n\nid: 7\ndata: a\n\n: ping\ndata: b\n\n");
    assert.deepEqual(events, [
      { event: "message", data: "a", id: "7" },
      { event: "message", data: "b", id: "7" },
    ]);
  });

  it("reads retry, joins multi-line data with newlines, and drops an event without data", () => {
    const p = new SseParser();
    assert.deepEqual(p.feed("retry: 2500\nevent: config\n\ndata: 1\ndata:2\n\n"), [{ event: "message", data: "1\n2", id: "" }]);
    assert.equal(p.retryMs, 2500);
  });
});
