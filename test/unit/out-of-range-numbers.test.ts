import { status, type ServiceDefinition } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { markingOutOfRangeNumbers, refusingOutOfRangeNumbers } from "../../src/server/out-of-range-numbers.js";

/** A one-method service whose requests fail to decode with `message` (as the generated decoders do). */
function answerTo(message: string) {
  const definition = {
    Call: {
      path: "/test.Service/Call",
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
      requestDeserialize: () => {
        throw new Error(message);
      },
      responseSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
      responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
    },
  } as ServiceDefinition;
  const request = markingOutOfRangeNumbers(definition).Call!.requestDeserialize(Buffer.alloc(0));
  let ran = false;
  let answer: { code?: number; details?: string } | null = null;
  const handlers = refusingOutOfRangeNumbers({ Call: () => (ran = true) });
  (handlers.Call as unknown as (call: object, callback: (error: { code?: number; details?: string } | null) => void) => void)(
    { request, emit: () => true },
    (error) => (answer = error),
  );
  return { ran, answer: answer as { code?: number; details?: string } | null };
}

describe("numbers a request cannot hold", () => {
  it("are answered with OUT_OF_RANGE naming the bound that was passed, above and below", () => {
    const above = answerTo("Value is larger than Number.MAX_SAFE_INTEGER");
    expect(above.ran).toBe(false);
    expect(above.answer?.code).toBe(status.OUT_OF_RANGE);
    expect(above.answer?.details).toContain("larger than 9007199254740991 (2^53 - 1)");
    const below = answerTo("Value is smaller than Number.MIN_SAFE_INTEGER");
    expect(below.answer?.code).toBe(status.OUT_OF_RANGE);
    expect(below.answer?.details).toContain("smaller than -9007199254740991");
  });

  it("let any other decoding failure through as it was", () => {
    expect(() => answerTo("invalid wire type 7")).toThrow("invalid wire type 7");
  });
});
