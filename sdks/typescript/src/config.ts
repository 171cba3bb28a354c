/**
 * Following the environment's config: the stream `GET /sdk/stream` (Server-Sent Events, one
 * `config` event per version, resumed with Last-Event-ID), falling back to polling
 * `GET /sdk/config` by ETag while the stream is unavailable. The last good config is kept.
 */
import { CompiledConfig, type SdkConfig } from "./evaluate.js";
import { Backoff, retryAfterMs, RETRYABLE_STATUS, sleep } from "./retry.js";
import { SseParser } from "./sse.js";
import type { Logger } from "./log.js";

export interface ConfigSourceOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly stream: boolean;
  readonly pollIntervalMs: number;
  /** How long polling lasts before the stream is tried again, after the server had none. */
  readonly streamRetryMs: number;
  /** A stream silent this long (no event, no heartbeat) is dropped and reconnected. */
  readonly streamIdleMs: number;
  readonly requestTimeoutMs: number;
  readonly backoff: Backoff;
  readonly log: Logger;
  readonly install: (config: CompiledConfig, etag: string) => void;
}

type StreamOutcome = "ended" | "failed" | "unsupported";

/** Statuses that say "this server has no stream": poll instead. */
const NO_STREAM: ReadonlySet<number> = new Set([404, 405, 501]);

export class ConfigSource {
  /** The ETag of the installed config ("" before the first). */
  etag = "";
  /** How the config is followed right now. */
  mode: "starting" | "streaming" | "polling" = "starting";
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: ConfigSourceOptions) {}

  start(): void {
    this.loop ??= this.run().catch((exc: unknown) => this.options.log.error("config loop stopped", exc));
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  private async run(): Promise<void> {
    const { backoff } = this.options;
    let failures = 0;
    let pollUntil = this.options.stream ? 0 : Infinity;
    while (!this.stopped) {
      if (Date.now() >= pollUntil) {
        const outcome = await this.streamOnce();
        if (this.stopped) return;
        if (outcome === "ended") {
          failures = 0;
          await sleep(this.retryMs ?? backoff.delayMs(0), this.stopper.signal);
          continue;
        }
        if (outcome === "unsupported") {
          pollUntil = Date.now() + this.options.streamRetryMs;
          this.options.log.info("config stream unavailable; polling by ETag");
        } else {
          // unreachable or failing: poll once (the config may still come), then retry the stream
          const polled = await this.pollOnce();
          await sleep(polled.ok ? this.options.pollIntervalMs : backoff.delayMs(failures++, polled.retryAfterMs), this.stopper.signal);
          if (polled.ok) failures = 0;
          continue;
        }
      }
      this.mode = "polling";
      const polled = await this.pollOnce();
      if (polled.ok) failures = 0;
      const wait = polled.ok ? this.options.pollIntervalMs : backoff.delayMs(failures++, polled.retryAfterMs);
      await sleep(Math.min(wait, Math.max(0, pollUntil - Date.now())), this.stopper.signal);
    }
  }

  private retryMs: number | undefined;

  /** Follow the stream until it ends; say why it did. */
  private async streamOnce(): Promise<StreamOutcome> {
    const request = new AbortController();
    const abort = (): void => request.abort();
    this.stopper.signal.addEventListener("abort", abort, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(abort, this.options.streamIdleMs);
      idle.unref();
    };
    try {
      touch();
      const headers: Record<string, string> = { ...this.options.headers, Accept: "text/event-stream" };
      if (this.etag) headers["Last-Event-ID"] = this.etag;
      const response = await fetch(`${this.options.url}/sdk/stream`, { headers, signal: request.signal });
      const type = response.headers.get("content-type") ?? "";
      if (NO_STREAM.has(response.status) || (response.ok && !type.startsWith("text/event-stream"))) {
        await response.body?.cancel();
        return "unsupported";
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel();
        if (!RETRYABLE_STATUS.has(response.status)) this.options.log.warn(`config stream refused: HTTP ${response.status}`);
        return "failed";
      }
      this.mode = "streaming";
      const parser = new SseParser();
      if (this.etag) parser.lastEventId = this.etag;
      const decoder = new TextDecoder();
      for await (const chunk of response.body) {
        touch();
        for (const event of parser.feed(decoder.decode(chunk, { stream: true }))) {
          if (event.event === "config") this.installText(event.data, event.id);
        }
        this.retryMs = parser.retryMs;
      }
      return "ended";
    } catch {
      return this.stopped ? "ended" : this.mode === "streaming" ? "ended" : "failed";
    } finally {
      clearTimeout(idle);
      this.stopper.signal.removeEventListener("abort", abort);
      if (this.mode === "streaming") this.mode = "starting";
    }
  }

  /** One `GET /sdk/config` with If-None-Match. */
  async pollOnce(): Promise<{ ok: boolean; retryAfterMs: number }> {
    const headers: Record<string, string> = { ...this.options.headers };
    if (this.etag) headers["If-None-Match"] = this.etag;
    try {
      const response = await fetch(`${this.options.url}/sdk/config`, {
        headers,
        signal: AbortSignal.any([this.stopper.signal, AbortSignal.timeout(this.options.requestTimeoutMs)]),
      });
      if (response.status === 304) return { ok: true, retryAfterMs: 0 };
      if (!response.ok) {
        await response.body?.cancel();
        this.options.log.warn(`config poll answered HTTP ${response.status}`);
        return { ok: false, retryAfterMs: retryAfterMs(response.headers.get("retry-after")) };
      }
      this.installText(await response.text(), response.headers.get("etag") ?? "");
      return { ok: true, retryAfterMs: 0 };
    } catch (exc) {
      if (!this.stopped) this.options.log.warn("config server unreachable", exc);
      return { ok: false, retryAfterMs: 0 };
    }
  }

  private installText(body: string, etag: string): void {
    let config: CompiledConfig;
    try {
      config = new CompiledConfig(JSON.parse(body) as SdkConfig);
    } catch (exc) {
      this.options.log.error("a config could not be read; keeping the last good one", exc);
      return;
    }
    this.etag = etag;
    this.options.install(config, etag);
  }
}
