/** When to try again: one backoff schedule shared by the config source and the event queue. */

export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

export interface BackoffOptions {
  /** First delay, ms (doubles each attempt). */
  readonly baseMs?: number;
  /** Longest delay, ms. */
  readonly capMs?: number;
  /** Longest Retry-After honoured, ms. */
  readonly maxRetryAfterMs?: number;
}

/** `base · 2^attempt` capped at `cap`, half of it random ("equal jitter", AWS Architecture Blog,
 *  "Exponential Backoff And Jitter", 2015), never shorter than the server's Retry-After. */
export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly maxRetryAfterMs: number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 30_000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 300_000;
  }

  delayMs(attempt: number, retryAfterMs = 0): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(attempt, 62));
    const jittered = ceiling / 2 + Math.random() * (ceiling / 2);
    return Math.max(jittered, Math.min(Math.max(retryAfterMs, 0), this.maxRetryAfterMs));
  }
}

/** Milliseconds a `Retry-After` header asks for: delta-seconds or an HTTP date (RFC 9110
 *  §10.2.3); 0 when absent, unparsable or in the past. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number {
  if (!value) return 0;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? 0 : Math.max(0, when - now);
}

/** Resolves after `ms`, or at once when `signal` aborts; never keeps the process alive. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener("abort", done, { once: true });
  });
}
