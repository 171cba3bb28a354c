/**
 * The application-facing client: local evaluation, exposures when the behavior runs, track.
 *
 *     const client = new Client({ url: "http://127.0.0.1:8700", sdkKey });
 *     await client.ready();
 *     await client.withExposure("support_assistant_profile", conversationId, { plan: "pro" }, {}, async (x) => {
 *       try { return await assistant.run(x.value); }
 *       catch { return await assistant.run(x.fallback("timeout")); }   // served: control
 *     });
 */
import { randomUUID } from "node:crypto";

import { ConfigSource } from "./config.js";
import { CompiledConfig, type Attributes, type Evaluation, type ExpectedType } from "./evaluate.js";
import { consoleLogger, type Logger } from "./log.js";
import { EventQueue, type Kind, type QueueStats } from "./queue.js";
import { Backoff } from "./retry.js";

export const SDK_NAME = "ramplight-typescript/0.1.0";

export interface ClientOptions {
  /** The Ramplight server, e.g. "http://127.0.0.1:8700". */
  readonly url: string;
  /** The environment's SDK key (`Authorization: Bearer …`). */
  readonly sdkKey: string;
  /** Follow `GET /sdk/stream`; false polls only. Default true. */
  readonly stream?: boolean;
  /** Poll interval while the stream is unavailable, ms. Default 15 000. */
  readonly pollIntervalMs?: number;
  /** Polling lasts this long before the stream is tried again after a 404, ms. Default 60 000. */
  readonly streamRetryMs?: number;
  /** A stream silent this long (no event, no heartbeat) is reconnected, ms. Default 90 000. */
  readonly streamIdleMs?: number;
  /** Items held in memory while the server does not take them. Default 100 000. */
  readonly queueCapacity?: number;
  /** Encoded bytes held in memory. Default 64 MiB. */
  readonly queueMaxBytes?: number;
  /** Items per request (also sends as soon as this many wait). Default 500. */
  readonly batchSize?: number;
  /** How often what waits is sent, ms. Default 1 000. */
  readonly flushIntervalMs?: number;
  /** `close()`'s default deadline, ms. Default 5 000. */
  readonly closeTimeoutMs?: number;
  /** Where `close()` writes what it could not send by its deadline (one fsynced file a client),
   *  and where the next Client on it takes it back from and sends it. */
  readonly spoolDir?: string;
  /** One request's time limit, ms. Default 10 000. */
  readonly requestTimeoutMs?: number;
  /** Retry schedule shared by config and evidence. */
  readonly backoff?: Backoff;
  /** The unit of a `track()` that names neither a unit nor a flag. */
  readonly defaultAssignmentUnit?: string;
  readonly logger?: Logger;
}

export interface TrackOptions {
  readonly value?: number;
  readonly properties?: Readonly<Record<string, unknown>>;
  readonly assignmentUnit?: string;
  readonly flagKey?: string;
  readonly variation?: string;
  readonly ids?: Readonly<Record<string, string>>;
  readonly traceId?: string;
  readonly ts?: Date;
}

export interface ScoreOptions {
  readonly unitId?: string;
  readonly traceId?: string;
  readonly spanId?: string;
  readonly evaluator?: "llm_judge" | "human" | "heuristic" | "code";
  readonly evaluatorVersion?: string;
  readonly label?: string;
  readonly flagKey?: string;
  readonly variation?: string;
  readonly comment?: string;
  readonly ts?: Date;
}

const EMPTY = new CompiledConfig({ environment: "", flags: {}, segments: {} });

const eventId = (): string => randomUUID().replaceAll("-", "");

/** The behavior of one evaluation, being run. `end()` records the exposure with what was
 *  actually served: the assigned variation, or the one `fallback()` switched to. */
export class ExposureScope<T = unknown> {
  readonly started = new Date();
  fallbackReason: string | null = null;
  /** What ran, recorded with the exposure (default: the value if an object, else {value}). */
  behavior: unknown = undefined;
  private served: string | null;
  private ended = false;

  constructor(
    private readonly client: Client,
    readonly evaluation: Evaluation<T>,
    readonly unitId: string,
    readonly attributes: Attributes | null | undefined,
    readonly traceId: string | undefined,
  ) {
    this.served = evaluation.variation;
  }

  /** The value of the variation being served now (after a fallback, the fallback's). */
  get value(): T {
    if (this.served === null || this.served === this.evaluation.variation) return this.evaluation.value;
    return this.client.variationValue(this.evaluation.flagKey, this.served, this.evaluation.value);
  }

  get variation(): string | null {
    return this.served;
  }

  /** Record that `variation` (default: the flag's default, i.e. control) ran instead of the
   *  assigned one because of `reason` (e.g. "timeout"); returns its value. */
  fallback(reason: string, variation?: string): T {
    this.fallbackReason = reason;
    this.served = variation ?? this.client.defaultVariation(this.evaluation.flagKey) ?? this.served;
    return this.value;
  }

  /** The behavior ran: record the exposure (once; an evaluation that failed records nothing). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.client.recordExposure(this);
  }
}

/** Evaluates flags locally from the environment's config and sends evidence in batches. */
export class Client {
  readonly closeTimeoutMs: number;
  readonly defaultAssignmentUnit: string | undefined;
  private config: CompiledConfig = EMPTY;
  private readonly source: ConfigSource;
  private readonly queue: EventQueue;
  private readonly listeners: ((changed: string[]) => void)[] = [];
  private readonly warned = new Set<string>();
  /** @internal The client's logger (the OpenFeature provider warns through it). */
  readonly log: Logger;
  private closed = false;
  private resolveReady: () => void = () => undefined;
  private readonly readyPromise = new Promise<void>((resolve) => (this.resolveReady = resolve));

  constructor(options: ClientOptions) {
    if (!options.sdkKey) throw new TypeError("Client needs an sdkKey");
    const url = options.url.replace(/\/+$/, "");
    const headers = { Authorization: `Bearer ${options.sdkKey}`, "User-Agent": SDK_NAME };
    const backoff = options.backoff ?? new Backoff();
    const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.log = options.logger ?? consoleLogger();
    this.closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
    this.defaultAssignmentUnit = options.defaultAssignmentUnit;
    this.queue = new EventQueue({
      url,
      headers,
      capacity: options.queueCapacity ?? 100_000,
      maxBytes: options.queueMaxBytes ?? 64 * 1024 * 1024,
      batchSize: options.batchSize ?? 500,
      flushIntervalMs: options.flushIntervalMs ?? 1_000,
      requestTimeoutMs,
      backoff,
      log: this.log,
      spoolDir: options.spoolDir,
    });
    this.source = new ConfigSource({
      url,
      headers,
      stream: options.stream ?? true,
      pollIntervalMs: options.pollIntervalMs ?? 15_000,
      streamRetryMs: options.streamRetryMs ?? 60_000,
      streamIdleMs: options.streamIdleMs ?? 90_000,
      requestTimeoutMs,
      backoff,
      log: this.log,
      install: (config) => this.install(config),
    });
    this.source.start();
  }

  // -- config ---------------------------------------------------------------------------

  private install(config: CompiledConfig): void {
    const previous = this.config;
    this.config = config; // one swap: never half a config
    this.resolveReady();
    if (this.listeners.length === 0) return;
    const keys = new Set([...previous.keys(), ...config.keys()]);
    const changed = [...keys]
      .filter((k) => JSON.stringify(previous.flag(k)?.doc) !== JSON.stringify(config.flag(k)?.doc))
      .sort();
    for (const listener of this.listeners) {
      try {
        listener(changed);
      } catch (exc) {
        this.log.error("a config listener failed", exc); // a listener's bug must not stop the source
      }
    }
  }

  /** Resolves true once the first config is in, or false after `timeoutMs` (default 5 s). */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const ok = await Promise.race([this.readyPromise.then(() => true), timeout]);
    clearTimeout(timer);
    if (!ok) this.log.warn(`no config within ${timeoutMs} ms; serving defaults until it arrives`);
    return ok;
  }

  /** Call `listener(flagKeys)` after each new config with the flags it added, changed or removed. */
  onConfigChange(listener: (changed: string[]) => void): void {
    this.listeners.push(listener);
  }

  /** How the config is followed now: "streaming", "polling" or "starting". */
  get configMode(): string {
    return this.source.mode;
  }

  get environment(): string {
    return this.config.environment;
  }

  /** The unit `flagKey` is assigned by; undefined for an unknown flag. */
  assignmentUnit(flagKey: string): string | undefined {
    return this.config.flag(flagKey)?.doc.assignment_unit;
  }

  /** @internal */
  variationValue<T>(flagKey: string, variation: string, fallback: T): T {
    const flag = this.config.flag(flagKey);
    return flag?.values.has(variation) ? (flag.values.get(variation) as T) : fallback;
  }

  /** @internal */
  defaultVariation(flagKey: string): string | undefined {
    return this.config.flag(flagKey)?.doc.default_variation;
  }

  // -- evaluation -----------------------------------------------------------------------

  /** Value, variation, reason, rule id and error code for one unit; no network, no exposure. */
  evaluate<T = unknown>(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue?: T): Evaluation<T> {
    return this.config.evaluate(flagKey, unitId, attributes, defaultValue as T);
  }

  /** Only the value (no exposure recorded). */
  variation<T = unknown>(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue?: T): T {
    return this.config.evaluate(flagKey, unitId, attributes, defaultValue as T).value;
  }

  /** `evaluate` checked against a type; a value of another type serves the default (`type_mismatch`). */
  evaluateTyped<T>(flagKey: string, unitId: string, attributes: Attributes | null | undefined, defaultValue: T, expected: ExpectedType): Evaluation<T> {
    return this.config.evaluateTyped(flagKey, unitId, attributes, defaultValue, expected);
  }

  boolValue(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue = false): boolean {
    return this.evaluateTyped(flagKey, unitId, attributes, defaultValue, "boolean").value;
  }

  stringValue(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue = ""): string {
    return this.evaluateTyped(flagKey, unitId, attributes, defaultValue, "string").value;
  }

  numberValue(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue = 0): number {
    return this.evaluateTyped(flagKey, unitId, attributes, defaultValue, "number").value;
  }

  jsonValue<T = unknown>(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue?: T): T {
    return this.evaluateTyped(flagKey, unitId, attributes, defaultValue as T, "json").value;
  }

  // -- evidence -------------------------------------------------------------------------

  /** Evaluate and return a scope to run the behavior in; call `end()` when it ran. */
  exposure<T = unknown>(flagKey: string, unitId: string, attributes?: Attributes | null, defaultValue?: T, traceId?: string): ExposureScope<T> {
    return new ExposureScope(this, this.evaluate(flagKey, unitId, attributes, defaultValue), unitId, attributes, traceId);
  }

  /** Run `behavior` with the evaluation's scope; the exposure is recorded when it settles
   *  (returned or threw), with what it served. */
  async withExposure<T, R>(
    flagKey: string,
    unitId: string,
    attributes: Attributes | null | undefined,
    defaultValue: T,
    behavior: (scope: ExposureScope<T>) => R | Promise<R>,
  ): Promise<R> {
    const scope = this.exposure(flagKey, unitId, attributes, defaultValue);
    try {
      return await behavior(scope);
    } finally {
      scope.end();
    }
  }

  /** @internal */
  recordExposure(scope: ExposureScope<unknown>): void {
    const e = scope.evaluation;
    if (e.reason === "error" || e.variation === null || this.closed) return; // nothing was assigned
    const value = scope.value;
    const behavior =
      scope.behavior !== undefined
        ? scope.behavior
        : value !== null && typeof value === "object" && !Array.isArray(value)
          ? value
          : { value };
    this.queue.put("exposures", {
      ts: scope.started.toISOString(),
      flag_key: e.flagKey,
      flag_version: e.flagVersion,
      assignment_unit: e.assignmentUnit ?? "",
      unit_id: scope.unitId,
      assigned_variation: e.variation,
      served_variation: scope.variation ?? e.variation,
      fallback_reason: scope.fallbackReason,
      evaluation_reason: e.reason, // only "rollout" units were randomized: the readout compares those
      behavior,
      attributes: scope.attributes && Object.keys(scope.attributes).length > 0 ? { ...scope.attributes } : null,
      trace_id: scope.traceId ?? null,
      sdk: SDK_NAME,
      event_id: eventId(),
    });
  }

  /** Queue an outcome or guardrail event; false if it could not be queued (see `stats`). */
  track(name: string, unitId: string, options: TrackOptions = {}): boolean {
    if (this.closed) return false;
    const unit = options.assignmentUnit ?? (options.flagKey !== undefined ? this.assignmentUnit(options.flagKey) : undefined) ?? this.defaultAssignmentUnit;
    if (unit === undefined) {
      if (!this.warned.has(name)) {
        this.warned.add(name);
        this.log.warn(`track(${JSON.stringify(name)}) needs assignmentUnit, a flagKey, or the client's defaultAssignmentUnit; not recorded`);
      }
      this.queue.stats.failed += 1;
      return false;
    }
    return this.queue.put("events", {
      ts: (options.ts ?? new Date()).toISOString(),
      name,
      unit_id: unitId,
      assignment_unit: unit,
      value: options.value ?? null,
      properties: options.properties ?? null,
      ids: options.ids ?? null,
      flag_key: options.flagKey ?? null,
      variation: options.variation ?? null,
      trace_id: options.traceId ?? null,
      event_id: eventId(),
    });
  }

  /** Queue an evaluation score (LLM judge, human, heuristic or code) for a unit or trace. */
  score(name: string, score: number, options: ScoreOptions = {}): boolean {
    if (this.closed) return false;
    return this.queue.put("evals", {
      ts: (options.ts ?? new Date()).toISOString(),
      name,
      score,
      evaluator: options.evaluator ?? "llm_judge",
      evaluator_version: options.evaluatorVersion ?? null,
      unit_id: options.unitId ?? null,
      trace_id: options.traceId ?? null,
      span_id: options.spanId ?? null,
      label: options.label ?? null,
      flag_key: options.flagKey ?? null,
      variation: options.variation ?? null,
      comment: options.comment ?? null,
      event_id: eventId(),
    });
  }

  get stats(): Readonly<QueueStats> {
    return this.queue.stats;
  }

  /** Wait up to `timeoutMs` for what is held to be acknowledged; false if it was not. */
  flush(timeoutMs = 10_000): Promise<boolean> {
    return this.queue.flush(timeoutMs);
  }

  /** Stop following the config, send what is held for at most `timeoutMs` (default
   *  `closeTimeoutMs`), and return what the server did not acknowledge by then, by kind. */
  async close(timeoutMs?: number): Promise<Partial<Record<Kind, number>>> {
    if (this.closed) return {};
    this.closed = true;
    const budget = timeoutMs ?? this.closeTimeoutMs;
    const [, unsent] = await Promise.all([this.source.stop(), this.queue.close(budget)]);
    return unsent;
  }
}
