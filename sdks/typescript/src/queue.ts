/**
 * Evidence to `POST /ingest/batch`: a bounded in-memory queue sent in batches. An item the queue
 * took is acknowledged by the server or counted as dropped with a reason, never silently lost.
 */
import { randomUUID } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

import type { Logger } from "./log.js";
import { Backoff, retryAfterMs, RETRYABLE_STATUS, sleep } from "./retry.js";

export type Kind = "exposures" | "events" | "evals";
const KINDS: ReadonlySet<string> = new Set<Kind>(["exposures", "events", "evals"]);
export type DropReason = "queue_full" | "refused" | "unsent_at_close";

/** The event a queue sends, once the server answers again, per kind and reason it dropped. */
export const DROPPED_EVENT = "ramplight.sdk.dropped";
const MAX_BATCH_BYTES = 1024 * 1024;

/** What an operator reads from `client.stats` (and should alert on `dropped`). */
export interface QueueStats {
  queued: number;
  sent: number;
  pending: number;
  pendingBytes: number;
  retries: number;
  rejected: number;
  dropped: number;
  droppedByReason: Partial<Record<DropReason, number>>;
  /** Unsent at close but written to the spool directory. */
  spooled: number;
  /** Read back from the spool directory (what earlier clients spooled). */
  unspooled: number;
  failed: number;
}

interface Entry {
  readonly kind: Kind;
  readonly json: string;
  readonly bytes: number;
}

export interface QueueOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly capacity: number;
  readonly maxBytes: number;
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly requestTimeoutMs: number;
  readonly backoff: Backoff;
  readonly log: Logger;
  /** Where `close()` writes what it could not send, and where a new queue takes it back from. */
  readonly spoolDir?: string;
}

type Answer = "sent" | "retry" | "refused";

export class EventQueue {
  readonly stats: QueueStats = {
    queued: 0,
    sent: 0,
    pending: 0,
    pendingBytes: 0,
    retries: 0,
    rejected: 0,
    dropped: 0,
    droppedByReason: {},
    spooled: 0,
    unspooled: 0,
    failed: 0,
  };
  /** Random per queue: the unit of its `ramplight.sdk.dropped` reports. */
  readonly instanceId = randomUUID().replaceAll("-", "");
  private pending: Entry[] = [];
  private pumping: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private unreported = new Map<string, { kind: Kind; reason: DropReason; count: number }>();
  private wake = new AbortController();
  private readonly cancel = new AbortController();
  private deadline = Infinity;
  private closed = false;
  private drainedWaiters: (() => void)[] = [];

  constructor(private readonly options: QueueOptions) {
    if (options.spoolDir !== undefined) this.unspool(options.spoolDir);
    this.timer = setInterval(() => this.kick(), options.flushIntervalMs);
    this.timer.unref();
    if (this.pending.length > 0) this.kick();
  }

  /** Take an item (a contract-shaped object); false when the bound is reached or closed. */
  put(kind: Kind, item: Record<string, unknown>): boolean {
    if (this.closed) return false;
    return this.admit(kind, JSON.stringify(item, (_k, v: unknown) => (v === null ? undefined : v)));
  }

  private admit(kind: Kind, json: string): boolean {
    const bytes = Buffer.byteLength(json);
    const s = this.stats;
    if (s.pending + 1 > this.options.capacity || s.pendingBytes + bytes > this.options.maxBytes) {
      this.drop(kind, "queue_full", 1);
      this.options.log.warn(`queue full (${s.pending} items, ${s.pendingBytes} bytes): new items are dropped`);
      return false;
    }
    this.pending.push({ kind, json, bytes });
    s.queued += 1;
    s.pending += 1;
    s.pendingBytes += bytes;
    if (this.pending.length >= this.options.batchSize) this.kick();
    return true;
  }

  /** Wait up to `timeoutMs` for everything held to be answered; false if it was not. */
  async flush(timeoutMs: number): Promise<boolean> {
    this.kick();
    await Promise.race([this.drained(), sleep(timeoutMs)]);
    return this.stats.pending === 0;
  }

  /** Send what is held until `timeoutMs` passes, then stop; what was not acknowledged, by kind. */
  async close(timeoutMs: number): Promise<Partial<Record<Kind, number>>> {
    if (this.closed) return {};
    this.closed = true;
    clearInterval(this.timer);
    this.deadline = Date.now() + timeoutMs;
    this.wake.abort(); // a retry waiting out its backoff goes now
    this.kick();
    await Promise.race([this.drained(), sleep(timeoutMs)]);
    this.cancel.abort();
    await this.pumping;
    const unsent: Partial<Record<Kind, number>> = {};
    for (const e of this.pending) unsent[e.kind] = (unsent[e.kind] ?? 0) + 1;
    const spool = this.pending.length > 0 && this.options.spoolDir !== undefined ? this.spool(this.pending) : undefined;
    if (spool !== undefined) {
      this.stats.spooled += this.pending.length;
    } else {
      for (const [kind, n] of Object.entries(unsent) as [Kind, number][]) this.drop(kind, "unsent_at_close", n);
    }
    this.pending = [];
    this.stats.pending = 0;
    this.stats.pendingBytes = 0;
    if (Object.keys(unsent).length > 0) {
      const fate = spool !== undefined ? `spooled to ${spool}` : "dropped";
      this.options.log.warn(`closed with evidence the server did not acknowledge: ${JSON.stringify(unsent)}, ${fate}`);
    }
    return unsent;
  }

  // -- the spool: one file a queue, "<kind> <item JSON>" a line (the Python SDK's format) --------

  /** Write `entries` durably to a new file of the spool directory; undefined if it failed. */
  private spool(entries: readonly Entry[]): string | undefined {
    const dir = this.options.spoolDir as string;
    const path = join(dir, `${this.instanceId}.ndjson`);
    const partial = join(dir, `${this.instanceId}.partial`);
    try {
      mkdirSync(dir, { recursive: true });
      const fd = openSync(partial, "w");
      try {
        writeSync(fd, entries.map((e) => `${e.kind} ${e.json}\n`).join(""));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(partial, path); // a reader sees a whole file or none
    } catch (err) {
      this.options.log.error(`could not spool unsent evidence to ${dir}: ${(err as Error).message}`);
      return undefined;
    }
    return path;
  }

  /** Take in what earlier queues spooled to `dir`: each file is claimed by an atomic rename (one
   * queue gets it), read into memory under the bound, and deleted. */
  private unspool(dir: string): void {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith(".ndjson")).sort();
    } catch {
      return; // no spool yet
    }
    for (const name of names) {
      const claimed = join(dir, `${name}.${this.instanceId}`);
      let text: string;
      try {
        renameSync(join(dir, name), claimed);
        text = readFileSync(claimed, "utf8");
      } catch {
        continue; // another process claimed it first
      }
      for (const line of text.split("\n")) {
        const space = line.indexOf(" ");
        const kind = line.slice(0, space);
        if (space <= 0 || !KINDS.has(kind) || space === line.length - 1) continue;
        this.stats.unspooled += 1;
        this.admit(kind as Kind, line.slice(space + 1));
      }
      try {
        unlinkSync(claimed);
      } catch {
        // already gone
      }
    }
  }

  private drained(): Promise<void> {
    if (this.stats.pending === 0 && this.pumping === undefined) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  private drop(kind: Kind, reason: DropReason, n: number): void {
    const s = this.stats;
    s.dropped += n;
    s.droppedByReason[reason] = (s.droppedByReason[reason] ?? 0) + n;
    const key = `${kind}/${reason}`;
    const entry = this.unreported.get(key) ?? { kind, reason, count: 0 };
    entry.count += n;
    this.unreported.set(key, entry);
  }

  private kick(): void {
    if (this.pumping !== undefined || this.pending.length === 0) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.pending.length === 0 || this.cancel.signal.aborted) {
        for (const resolve of this.drainedWaiters.splice(0)) resolve();
      }
    });
  }

  private async pump(): Promise<void> {
    let failures = 0;
    while (this.pending.length > 0 && !this.cancel.signal.aborted) {
      const batch = this.take();
      const { answer, waitMs } = await this.post(batch);
      if (answer === "retry") {
        this.stats.retries += 1;
        if (this.cancel.signal.aborted) return;
        const delay = this.options.backoff.delayMs(failures++, waitMs);
        await sleep(Math.min(delay, this.deadline - Date.now()), this.closed ? this.cancel.signal : this.wake.signal);
        continue;
      }
      failures = 0;
      this.settle(batch);
      if (answer === "refused") for (const e of batch) this.drop(e.kind, "refused", 1);
      if (this.unreported.size > 0 && answer === "sent") await this.report();
    }
  }

  /** The oldest items that fit one request; they stay in `pending` until answered. */
  private take(): Entry[] {
    let bytes = 0;
    let n = 0;
    while (n < this.pending.length && n < this.options.batchSize) {
      const e = this.pending[n] as Entry;
      if (n > 0 && bytes + e.bytes > MAX_BATCH_BYTES) break;
      bytes += e.bytes;
      n += 1;
    }
    return this.pending.slice(0, n);
  }

  private settle(batch: Entry[]): void {
    this.pending.splice(0, batch.length);
    this.stats.pending -= batch.length;
    this.stats.pendingBytes -= batch.reduce((sum, e) => sum + e.bytes, 0);
  }

  private async post(batch: Entry[]): Promise<{ answer: Answer; waitMs: number }> {
    const byKind = new Map<Kind, string[]>();
    for (const e of batch) {
      const list = byKind.get(e.kind) ?? [];
      list.push(e.json);
      byKind.set(e.kind, list);
    }
    const body = `{${[...byKind].map(([k, items]) => `"${k}":[${items.join(",")}]`).join(",")}}`;
    const timeout = Math.max(1, Math.min(this.options.requestTimeoutMs, this.deadline - Date.now()));
    try {
      const response = await fetch(`${this.options.url}/ingest/batch`, {
        method: "POST",
        headers: { ...this.options.headers, "Content-Type": "application/json" },
        body,
        signal: AbortSignal.any([this.cancel.signal, AbortSignal.timeout(timeout)]),
      });
      if (response.ok) {
        const answer = (await response.json()) as {
          accepted?: Record<string, number>;
          duplicates?: Record<string, number>;
          rejected?: { kind: string; index: number; field: string; reason: string }[];
        };
        const sum = (m: Record<string, number> | undefined): number => Object.values(m ?? {}).reduce((a, b) => a + b, 0);
        this.stats.sent += sum(answer.accepted) + sum(answer.duplicates);
        const rejected = answer.rejected ?? [];
        this.stats.rejected += rejected.length;
        for (const r of rejected) this.options.log.warn(`the server rejected an item: ${r.kind}.${r.field}: ${r.reason}`);
        return { answer: "sent", waitMs: 0 };
      }
      await response.body?.cancel();
      const waitMs = retryAfterMs(response.headers.get("retry-after"));
      if (RETRYABLE_STATUS.has(response.status)) {
        this.options.log.warn(`ingestion answered HTTP ${response.status}; retrying`);
        return { answer: "retry", waitMs };
      }
      this.options.log.warn(`a batch of ${batch.length} items was refused (HTTP ${response.status}), dropped`);
      return { answer: "refused", waitMs: 0 };
    } catch (exc) {
      this.options.log.warn("server unreachable; holding evidence and retrying", exc);
      return { answer: "retry", waitMs: 0 };
    }
  }

  /** Tell the server, now that it answers, what was dropped: one event per kind and reason. */
  private async report(): Promise<void> {
    const ts = new Date().toISOString();
    const reports = [...this.unreported.values()].map((r) => ({ ...r }));
    const events = reports.map((r) =>
      JSON.stringify({
        ts,
        name: DROPPED_EVENT,
        unit_id: this.instanceId,
        assignment_unit: "sdk_instance",
        value: r.count,
        properties: { kind: r.kind, reason: r.reason },
        event_id: randomUUID().replaceAll("-", ""),
      }),
    );
    try {
      const response = await fetch(`${this.options.url}/ingest/batch`, {
        method: "POST",
        headers: { ...this.options.headers, "Content-Type": "application/json" },
        body: `{"events":[${events.join(",")}]}`,
        signal: AbortSignal.any([this.cancel.signal, AbortSignal.timeout(this.options.requestTimeoutMs)]),
      });
      await response.body?.cancel();
      if (!response.ok) return;
      for (const r of reports) {
        const key = `${r.kind}/${r.reason}`;
        const entry = this.unreported.get(key);
        if (entry === undefined) continue;
        entry.count -= r.count; // drops counted while the report was in flight wait for the next
        if (entry.count <= 0) this.unreported.delete(key);
      }
    } catch {
      // the report waits for the next successful send
    }
  }
}
