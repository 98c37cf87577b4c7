import type { ServerWritableStream } from "@grpc/grpc-js";
import type { SessionEvent } from "../events/types.js";
import type { StreamGenerateResponse } from "../gen/agentd/v1/runtime.js";
import { toEventProto } from "./wire.js";

/** A merged delta stays far below the 4 MiB a gRPC client accepts by default in one message. */
const MAX_MERGED_CHARS = 32_768;
/** Small pieces are joined this often, so waiting text is flat strings, not one object per delta. */
const JOIN_EVERY = 256;

/** An event waiting for the reader; a text delta may gather the text of the deltas after it. */
interface Waiting {
  event: SessionEvent;
  /** The merged text so far, in pieces; undefined for an event nothing was merged into. */
  pieces?: string[];
  chars: number;
}

/**
 * Writes a session's events to a server stream without letting a slow reader make the server hold
 * every event. While `call.write` reports a full buffer, events wait here, and consecutive text
 * deltas of one turn are merged (up to MAX_MERGED_CHARS each, carrying the last one's sequence
 * number and time), so what waits is about the size of the text, not thousands of small messages. The turn itself never
 * waits for the reader: the server owns it.
 */
export class EventWriter {
  private readonly waiting: Waiting[] = [];
  private draining = false;
  private ending = false;
  private closed = false;

  constructor(private readonly call: ServerWritableStream<unknown, StreamGenerateResponse>) {
    call.on("drain", () => this.drain());
  }

  write(event: SessionEvent): void {
    if (this.closed || this.ending) return;
    if (this.draining) {
      this.enqueue(event);
      return;
    }
    if (!this.call.write({ event: toEventProto(event) })) this.draining = true;
  }

  /** Ends the call once everything waiting has been written. */
  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (!this.draining) this.finish();
  }

  /** The reader is gone: drop what is waiting. */
  close(): void {
    this.closed = true;
    this.waiting.length = 0;
  }

  /** Events waiting for the reader (after merging), for tests and diagnostics. */
  get backlog(): number {
    return this.waiting.length;
  }

  private enqueue(event: SessionEvent): void {
    const last = this.waiting.at(-1);
    const { payload } = event;
    if (
      payload.type === "text_delta" &&
      last?.event.payload.type === "text_delta" &&
      last.event.turnId === event.turnId &&
      last.chars < MAX_MERGED_CHARS
    ) {
      const pieces = (last.pieces ??= [last.event.payload.text]);
      pieces.push(payload.text);
      if (pieces.length >= JOIN_EVERY) pieces.splice(0, pieces.length, pieces.join(""));
      last.chars += payload.text.length;
      // The merged event is the latest one: its sequence number and time.
      last.event = event;
      return;
    }
    this.waiting.push({ event, chars: payload.type === "text_delta" ? payload.text.length : 0 });
  }

  private drain(): void {
    if (this.closed) return;
    this.draining = false;
    while (this.waiting.length > 0) {
      const { event: latest, pieces } = this.waiting.shift()!;
      const event: SessionEvent = pieces ? { ...latest, payload: { type: "text_delta", text: pieces.join("") } } : latest;
      if (!this.call.write({ event: toEventProto(event) })) {
        this.draining = true;
        return;
      }
    }
    if (this.ending) this.finish();
  }

  private finish(): void {
    this.closed = true;
    this.call.end();
  }
}
