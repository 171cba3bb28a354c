/** A Server-Sent Events parser (WHATWG HTML "Interpreting an event stream"), fed text chunks. */

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  /** The last event id seen on the stream so far (it persists across events, as in the spec). */
  readonly id: string;
}

/** Feed decoded text as it arrives; complete events come back, partial lines wait. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private eventType = "";
  private sawCarriageReturn = false;
  lastEventId = "";
  /** The last `retry:` the server asked for, ms. */
  retryMs: number | undefined;

  feed(chunk: string): SseEvent[] {
    let text = chunk;
    // a CRLF split across chunks: the LF belongs to the CR already taken as a line end
    if (this.sawCarriageReturn && text.startsWith("\n")) text = text.slice(1);
    this.sawCarriageReturn = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) {
        this.sawCarriageReturn = true; // maybe half of a CRLF: take the line, skip a leading LF next
      }
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  private line(line: string): SseEvent | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined; // a comment: a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
    }
    return undefined;
  }

  private dispatch(): SseEvent | undefined {
    const data = this.data;
    const event = this.eventType || "message";
    this.data = [];
    this.eventType = "";
    if (data.length === 0) return undefined;
    return { event, data: data.join("\n"), id: this.lastEventId };
  }
}
