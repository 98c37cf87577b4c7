import type { ServerWritableStream } from "@grpc/grpc-js";
import type { SessionEvent } from "../events/types.js";
import type { AgentEvent } from "../gen/agentd/v1/runtime.js";
import { toEventProto } from "./wire.js";

/** A merged delta stays far below the 4 MiB a gRPC client accepts by default in one message. */
const MAX_MERGED_CHARS = 32_768;
/** Small pieces are joined this often, so waiting text is flat strings, not one object per delta. */
const JOIN_EVERY = 256;

/**
 * How much may wait for one slow reader before it is cut off (it resubscribes from where it was).
 * Characters count the text of deltas and the JSON of every other event.
 */
export interface WriterLimits {
  maxWaitingMessages: number;
  maxWaitingChars: number;
}

export const DEFAULT_WRITER_LIMITS: WriterLimits = { maxWaitingMessages: 1_000, maxWaitingChars: 512 * 1024 };

/** What a marker (caught_up, heartbeat) is charged: small, but not free. */
const MESSAGE_CHARS = 64;

/** Something waiting for the reader: an event (a text delta may gather the ones after it), or another message. */
interface Waiting {
  event?: SessionEvent;
  /** The merged text so far, in pieces; undefined for an event nothing was merged into. */
  pieces?: string[];
  chars: number;
  message?: object;
}

/** Every stream of events (StreamGenerate, WatchTurn, Subscribe) carries them in a field named `event`. */
type EventMessage = { event?: AgentEvent | undefined };
type EventStream = ServerWritableStream<unknown, EventMessage>;

/**
 * Writes a session's events to a server stream without letting a slow reader make the server hold
 * every event. While `call.write` reports a full buffer, events wait here, and consecutive text
 * deltas of one turn are merged (up to MAX_MERGED_CHARS each, carrying the last one's sequence
 * number and time), so what waits is about the size of the text, not thousands of small messages.
 * A reader that falls further behind than the limits is cut off (`onOverflow`, with the last
 * sequence written to it), so the server's memory does not grow with a stalled client. The turn
 * itself never waits for the reader: the server owns it.
 */
export class EventWriter {
  private readonly waiting: Waiting[] = [];
  private waitingChars = 0;
  private draining = false;
  private ending = false;
  private closed = false;
  private lastWritten = 0;

  constructor(
    private readonly call: EventStream,
    private readonly onOverflow: (lastSequence: number) => void = () => {},
    private readonly limits: WriterLimits = DEFAULT_WRITER_LIMITS,
    /**
     * The session whose sequence numbers are the resume point; a stream that carries descendants'
     * events too (their numbers are their own) reports only this session's. Any when empty.
     */
    private readonly resumeSessionId = "",
  ) {
    call.on("drain", () => this.drain());
  }

  /** Resolves when the stream takes writes again (at once when it does now). */
  whenWritable(): Promise<void> {
    if (!this.draining || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!this.draining || this.closed) resolve();
        else this.call.once("drain", () => setImmediate(check));
      };
      check();
    });
  }

  /** The sequence of the last event (of the resume session) handed to the stream. */
  get lastSequence(): number {
    return this.lastWritten;
  }

  /** Where the reader resumes from when nothing of its own session has been written yet: its cursor. */
  startAfter(sequence: number): void {
    this.lastWritten = Math.max(this.lastWritten, sequence);
  }

  write(event: SessionEvent): void {
    if (this.closed || this.ending) return;
    if (this.draining) {
      this.enqueue(event);
      return;
    }
    this.wrote(event);
    if (!this.call.write({ event: toEventProto(event) })) this.draining = true;
  }

  /** Writes a message that is not an event (a marker), in order with the events. */
  writeMessage(message: object): void {
    if (this.closed || this.ending) return;
    if (this.draining) {
      this.waiting.push({ message, chars: MESSAGE_CHARS });
      this.waitingChars += MESSAGE_CHARS;
      this.checkLimits();
      return;
    }
    if (!this.call.write(message as EventMessage)) this.draining = true;
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
    this.waitingChars = 0;
  }

  /** Messages waiting for the reader (after merging), for tests and diagnostics. */
  get backlog(): number {
    return this.waiting.length;
  }

  private enqueue(event: SessionEvent): void {
    const last = this.waiting.at(-1);
    const { payload } = event;
    const chars = payload.type === "text_delta" ? payload.text.length : JSON.stringify(payload).length;
    this.waitingChars += chars;
    if (
      payload.type === "text_delta" &&
      last?.event?.payload.type === "text_delta" &&
      last.event.turnId === event.turnId &&
      last.chars < MAX_MERGED_CHARS
    ) {
      const pieces = (last.pieces ??= [last.event.payload.text]);
      pieces.push(payload.text);
      if (pieces.length >= JOIN_EVERY) pieces.splice(0, pieces.length, pieces.join(""));
      last.chars += chars;
      // The merged event is the latest one: its sequence number and time.
      last.event = event;
    } else {
      this.waiting.push({ event, chars });
    }
    this.checkLimits();
  }

  private checkLimits(): void {
    if (this.waiting.length <= this.limits.maxWaitingMessages && this.waitingChars <= this.limits.maxWaitingChars) return;
    const last = this.lastWritten;
    this.close();
    this.onOverflow(last);
  }

  private drain(): void {
    if (this.closed) return;
    this.draining = false;
    while (this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      this.waitingChars -= next.chars;
      let ok: boolean;
      if (next.event) {
        const { event: latest, pieces } = next;
        const event: SessionEvent = pieces ? { ...latest, payload: { type: "text_delta", text: pieces.join("") } } : latest;
        this.wrote(event);
        ok = this.call.write({ event: toEventProto(event) });
      } else {
        ok = this.call.write(next.message as EventMessage);
      }
      if (!ok) {
        this.draining = true;
        return;
      }
    }
    if (this.ending) this.finish();
  }

  private wrote(event: SessionEvent): void {
    // A notice outside the log (sequence 0) is no place to resume from.
    if (event.sequence > 0 && (this.resumeSessionId === "" || event.sessionId === this.resumeSessionId)) this.lastWritten = event.sequence;
  }

  private finish(): void {
    this.closed = true;
    this.call.end();
  }
}
