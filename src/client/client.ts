import { credentials, Metadata, type CallOptions, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import {
  AgentRuntimeClient,
  type AgentEvent,
  type DeepPartial,
  CancelRequest,
  type CancelResponse,
  ConfigureSessionRequest,
  type ConfigureSessionResponse,
  CreateChildSessionRequest,
  type CreateChildSessionResponse,
  CreateSessionRequest,
  type CreateSessionResponse,
  DestroySessionRequest,
  type DestroySessionResponse,
  GenerateRequest,
  type GenerateResponse,
  GetMessagesRequest,
  type GetMessagesResponse,
  GetSessionRequest,
  type GetSessionResponse,
  ListChildSessionsRequest,
  type ListChildSessionsResponse,
  ListSessionsRequest,
  type ListSessionsResponse,
  PauseRequest,
  type PauseResponse,
  ResumeRequest,
  type ResumeResponse,
  StreamGenerateRequest,
  type StreamGenerateResponse,
} from "../gen/agentd/v1/runtime.js";

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** The part of a generated message's helpers the client needs (fromPartial is generic in ts-proto). */
type RequestBuilder<Req> = { fromPartial(object: DeepPartial<Req>): Req };
type UnaryStub<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: Callback<Res>) => unknown;

/**
 * A promise-based wrapper around the generated AgentRuntime stub, used by the CLI and the tests.
 * Requests are partial: unset fields take their proto3 defaults.
 */
export class AgentdClient {
  readonly stub: AgentRuntimeClient;

  constructor(address: string) {
    this.stub = new AgentRuntimeClient(address, credentials.createInsecure());
  }

  createSession = this.unary<CreateSessionRequest, CreateSessionResponse>(CreateSessionRequest, "createSession");
  getSession = this.unary<GetSessionRequest, GetSessionResponse>(GetSessionRequest, "getSession");
  listSessions = this.unary<ListSessionsRequest, ListSessionsResponse>(ListSessionsRequest, "listSessions");
  destroySession = this.unary<DestroySessionRequest, DestroySessionResponse>(DestroySessionRequest, "destroySession");
  configureSession = this.unary<ConfigureSessionRequest, ConfigureSessionResponse>(ConfigureSessionRequest, "configureSession");
  createChildSession = this.unary<CreateChildSessionRequest, CreateChildSessionResponse>(CreateChildSessionRequest, "createChildSession");
  listChildSessions = this.unary<ListChildSessionsRequest, ListChildSessionsResponse>(ListChildSessionsRequest, "listChildSessions");
  generate = this.unary<GenerateRequest, GenerateResponse>(GenerateRequest, "generate");
  cancel = this.unary<CancelRequest, CancelResponse>(CancelRequest, "cancel");
  pause = this.unary<PauseRequest, PauseResponse>(PauseRequest, "pause");
  resume = this.unary<ResumeRequest, ResumeResponse>(ResumeRequest, "resume");
  getMessages = this.unary<GetMessagesRequest, GetMessagesResponse>(GetMessagesRequest, "getMessages");

  /** Starts a StreamGenerate call; iterate it with `events(call)` or listen to its "data" events. */
  streamGenerate(request: DeepPartial<StreamGenerateRequest>, options: Partial<CallOptions> = {}): ClientReadableStream<StreamGenerateResponse> {
    return this.stub.streamGenerate(StreamGenerateRequest.fromPartial(request), options);
  }

  close(): void {
    this.stub.close();
  }

  private unary<Req, Res>(message: RequestBuilder<Req>, method: keyof AgentRuntimeClient) {
    return (request: DeepPartial<Req>, options: Partial<CallOptions> = {}): Promise<Res> =>
      new Promise((resolve, reject) => {
        const stub = this.stub[method] as unknown as UnaryStub<Req, Res>;
        // fromPartial fills unset fields with proto3 defaults, which the encoder requires.
        stub.call(this.stub, message.fromPartial(request), new Metadata(), options, (error, response) =>
          error ? reject(error) : resolve(response),
        );
      });
  }
}

/** The events of a StreamGenerate call as an async iterable; it throws the call's error status. */
export async function* events(call: ClientReadableStream<StreamGenerateResponse>): AsyncGenerator<AgentEvent> {
  for await (const message of call as AsyncIterable<StreamGenerateResponse>) {
    if (message.event) yield message.event;
  }
}
