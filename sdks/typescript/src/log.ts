/** Where the SDK reports what goes wrong; never given a key or a header. */
export interface Logger {
  info(message: string, error?: unknown): void;
  warn(message: string, error?: unknown): void;
  error(message: string, error?: unknown): void;
}

/** Warnings and errors to the console, each message at most once a minute. */
export function consoleLogger(intervalMs = 60_000): Logger {
  const last = new Map<string, number>();
  const emit = (level: "warn" | "error", message: string, error?: unknown): void => {
    const now = Date.now();
    if (now - (last.get(message) ?? -Infinity) < intervalMs) return;
    last.set(message, now);
    const why = error instanceof Error ? `: ${error.message}` : "";
    console[level](`ramplight: ${message}${why}`);
  };
  return {
    info: () => undefined,
    warn: (m, e) => emit("warn", m, e),
    error: (m, e) => emit("error", m, e),
  };
}
