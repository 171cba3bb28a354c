/** A small Ramplight server on 127.0.0.1 speaking the SDK protocol, for tests (real HTTP, no mocks). */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import type { FlagDoc, SdkConfig } from "../src/evaluate.js";

export const KEY = "rl_sdk_test";

export interface Received {
  readonly path: string;
  readonly headers: IncomingMessage["headers"];
  readonly at: number;
  readonly body: string;
}

export type Intercept = (req: IncomingMessage, res: ServerResponse, body: string) => boolean;

export function flag(key: string, overrides: Partial<FlagDoc> = {}): FlagDoc {
  return {
    key,
    type: "string",
    assignment_unit: "user",
    version: 1,
    variations: [
      { key: "control", value: "v3" },
      { key: "candidate", value: "v4" },
    ],
    enabled: true,
    salt: key,
    default_variation: "control",
    off_variation: "control",
    rules: [],
    rollout: { weights: { control: 50, candidate: 50 }, ranges: [["control", 0, 50000], ["candidate", 50000, 100000]] },
    ...overrides,
  };
}

/** Serves /sdk/config (ETag, 304), optionally /sdk/stream (SSE), and /ingest/batch. */
export class FakeServer {
  readonly requests: Received[] = [];
  readonly items: { exposures: Record<string, unknown>[]; events: Record<string, unknown>[]; evals: Record<string, unknown>[] } = {
    exposures: [],
    events: [],
    evals: [],
  };
  stream = false;
  /** Run first for every request; return true when it answered. */
  intercept: Intercept | undefined;
  private version = 0;
  private body = "";
  private streams = new Set<ServerResponse>();
  private readonly server = createServer((req, res) => this.handle(req, res));
  url = "";

  constructor(config: SdkConfig) {
    this.setConfig(config);
  }

  get etag(): string {
    return `"v${this.version}"`;
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.streams) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** A new config version: pushed at once to every open stream. */
  setConfig(config: SdkConfig): void {
    this.version += 1;
    this.body = JSON.stringify(config);
    for (const res of this.streams) this.sendConfig(res);
  }

  ping(): void {
    for (const res of this.streams) res.write(": ping\n\n");
  }

  /** Close every open stream from the server's side (the client should reconnect). */
  dropStreams(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  get openStreams(): number {
    return this.streams.size;
  }

  private sendConfig(res: ServerResponse): void {
    res.write(`event: config\nid: ${this.etag}\ndata: ${this.body}\n\n`);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = (req.url ?? "").split("?")[0] as string;
      this.requests.push({ path, headers: req.headers, at: Date.now(), body });
      if (this.intercept?.(req, res, body)) return;
      if (req.headers.authorization !== `Bearer ${KEY}`) {
        res.writeHead(401).end();
        return;
      }
      if (path === "/sdk/config") {
        if (req.headers["if-none-match"] === this.etag) {
          res.writeHead(304, { ETag: this.etag }).end();
          return;
        }
        res.writeHead(200, { "Content-Type": "application/json", ETag: this.etag }).end(this.body);
      } else if (path === "/sdk/stream" && this.stream) {
        res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
        res.write("retry: 50\n\n");
        if (req.headers["last-event-id"] !== this.etag) this.sendConfig(res);
        this.streams.add(res);
        res.on("close", () => this.streams.delete(res));
      } else if (path === "/ingest/batch" && req.method === "POST") {
        const batch = JSON.parse(body) as Record<string, Record<string, unknown>[]>;
        const accepted: Record<string, number> = {};
        for (const [kind, list] of Object.entries(batch)) {
          this.items[kind as "events"].push(...list);
          accepted[kind] = list.length;
        }
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ accepted, duplicates: {}, rejected: [] }));
      } else {
        res.writeHead(404).end();
      }
    });
  }
}

/** Poll `condition` until it holds or `timeoutMs` passes (no fixed sleeps). */
export async function until(condition: () => boolean, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
