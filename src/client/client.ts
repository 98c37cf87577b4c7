import { readFileSync } from "node:fs";
import {
  credentials,
  type ChannelCredentials,
  InterceptingCall,
  Metadata,
  status,
  type CallOptions,
  type ClientReadableStream,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";
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
  ConfirmToolCallRequest,
  type ConfirmToolCallResponse,
  ListPendingConfirmationsRequest,
  type ListPendingConfirmationsResponse,
  ListToolsRequest,
  WatchTurnRequest,
  type WatchTurnResponse,
  type ListToolsResponse,
  type GetMessagesResponse,
  GetSessionRequest,
  type GetSessionResponse,
  GetOwnerUsageRequest,
  type GetOwnerUsageResponse,
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
  StartTurnRequest,
  type StartTurnResponse,
  SubscribeRequest,
  type SubscribeResponse,
  ReloadSkillsRequest,
  type ReloadSkillsResponse,
  LoadSkillRequest,
  type LoadSkillResponse,
  UnloadSkillRequest,
  type UnloadSkillResponse,
  ListSkillsRequest,
  type ListSkillsResponse,
  GetSkillRequest,
  type GetSkillResponse,
  AddMcpServerRequest,
  type AddMcpServerResponse,
  RemoveMcpServerRequest,
  type RemoveMcpServerResponse,
  ListMcpServersRequest,
  type ListMcpServersResponse,
  ReloadAgentsRequest,
  type ReloadAgentsResponse,
  LoadAgentRequest,
  type LoadAgentResponse,
  UnloadAgentRequest,
  type UnloadAgentResponse,
  ListAgentsRequest,
  type ListAgentsResponse,
  GetContextUsageRequest,
  type GetContextUsageResponse,
  CompactSessionRequest,
  type CompactSessionResponse,
  ClearContextRequest,
  type ClearContextResponse,
  RewindSessionRequest,
  type RewindSessionResponse,
  ForkSessionRequest,
  type ForkSessionResponse,
} from "../gen/agentd/v1/runtime.js";

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
/** The part of a generated message's helpers the client needs (fromPartial is generic in ts-proto). */
type RequestBuilder<Req> = { fromPartial(object: DeepPartial<Req>): Req };
type UnaryStub<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => { cancel(): void };

/**
 * grpc-js call options (deadline, ...) plus an AbortSignal: aborting it cancels the call, which then
 * fails with status CANCELLED, as `call.cancel()` does; a signal that is already aborted cancels at once.
 */
export interface ClientCallOptions extends Partial<CallOptions> {
  signal?: AbortSignal;
}

/**
 * A promise-based wrapper around the generated AgentRuntime stub, used by the CLI and the tests.
 * Requests are partial: unset fields take their proto3 defaults.
 */
export class AgentdClient {
  readonly stub: AgentRuntimeClient;

  constructor(address: string, options: ConnectOptions = {}) {
    const interceptors = options.token ? [bearer(options.token)] : [];
    this.stub = new AgentRuntimeClient(address, options.credentials ?? credentials.createInsecure(), { interceptors });
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
  confirmToolCall = this.unary<ConfirmToolCallRequest, ConfirmToolCallResponse>(ConfirmToolCallRequest, "confirmToolCall");
  listPendingConfirmations = this.unary<ListPendingConfirmationsRequest, ListPendingConfirmationsResponse>(
    ListPendingConfirmationsRequest,
    "listPendingConfirmations",
  );
  listTools = this.unary<ListToolsRequest, ListToolsResponse>(ListToolsRequest, "listTools");
  reloadSkills = this.unary<ReloadSkillsRequest, ReloadSkillsResponse>(ReloadSkillsRequest, "reloadSkills");
  loadSkill = this.unary<LoadSkillRequest, LoadSkillResponse>(LoadSkillRequest, "loadSkill");
  unloadSkill = this.unary<UnloadSkillRequest, UnloadSkillResponse>(UnloadSkillRequest, "unloadSkill");
  listSkills = this.unary<ListSkillsRequest, ListSkillsResponse>(ListSkillsRequest, "listSkills");
  getSkill = this.unary<GetSkillRequest, GetSkillResponse>(GetSkillRequest, "getSkill");
  addMcpServer = this.unary<AddMcpServerRequest, AddMcpServerResponse>(AddMcpServerRequest, "addMcpServer");
  removeMcpServer = this.unary<RemoveMcpServerRequest, RemoveMcpServerResponse>(RemoveMcpServerRequest, "removeMcpServer");
  listMcpServers = this.unary<ListMcpServersRequest, ListMcpServersResponse>(ListMcpServersRequest, "listMcpServers");
  reloadAgents = this.unary<ReloadAgentsRequest, ReloadAgentsResponse>(ReloadAgentsRequest, "reloadAgents");
  loadAgent = this.unary<LoadAgentRequest, LoadAgentResponse>(LoadAgentRequest, "loadAgent");
  unloadAgent = this.unary<UnloadAgentRequest, UnloadAgentResponse>(UnloadAgentRequest, "unloadAgent");
  listAgents = this.unary<ListAgentsRequest, ListAgentsResponse>(ListAgentsRequest, "listAgents");
  getContextUsage = this.unary<GetContextUsageRequest, GetContextUsageResponse>(GetContextUsageRequest, "getContextUsage");
  compactSession = this.unary<CompactSessionRequest, CompactSessionResponse>(CompactSessionRequest, "compactSession");
  clearContext = this.unary<ClearContextRequest, ClearContextResponse>(ClearContextRequest, "clearContext");
  rewindSession = this.unary<RewindSessionRequest, RewindSessionResponse>(RewindSessionRequest, "rewindSession");
  forkSession = this.unary<ForkSessionRequest, ForkSessionResponse>(ForkSessionRequest, "forkSession");
  getOwnerUsage = this.unary<GetOwnerUsageRequest, GetOwnerUsageResponse>(GetOwnerUsageRequest, "getOwnerUsage");

  startTurn = this.unary<StartTurnRequest, StartTurnResponse>(StartTurnRequest, "startTurn");

  /** Follows a session: its events after a sequence number, a caught_up marker, then live events. */
  subscribe(request: DeepPartial<SubscribeRequest>, options: ClientCallOptions = {}): ClientReadableStream<SubscribeResponse> {
    const { signal, callOptions } = splitSignal(options);
    const call = this.stub.subscribe(SubscribeRequest.fromPartial(request), callOptions);
    if (signal) call.once("status", cancelOnAbort(signal, () => call.cancel()));
    return call;
  }

  /** Follows a session's running turn from now until its end; cancelling it leaves the turn running. */
  watchTurn(request: DeepPartial<WatchTurnRequest>, options: ClientCallOptions = {}): ClientReadableStream<WatchTurnResponse> {
    const { signal, callOptions } = splitSignal(options);
    const call = this.stub.watchTurn(WatchTurnRequest.fromPartial(request), callOptions);
    if (signal) call.once("status", cancelOnAbort(signal, () => call.cancel()));
    return call;
  }

  /**
   * Starts a StreamGenerate call; iterate it with `events(call)` or listen to its "data" events.
   * Aborting `options.signal` cancels it like `call.cancel()`: the stream ends with status CANCELLED.
   */
  streamGenerate(request: DeepPartial<StreamGenerateRequest>, options: ClientCallOptions = {}): ClientReadableStream<StreamGenerateResponse> {
    const { signal, callOptions } = splitSignal(options);
    const call = this.stub.streamGenerate(StreamGenerateRequest.fromPartial(request), callOptions);
    if (signal) call.once("status", cancelOnAbort(signal, () => call.cancel()));
    return call;
  }

  close(): void {
    this.stub.close();
  }

  private unary<Req, Res>(message: RequestBuilder<Req>, method: keyof AgentRuntimeClient) {
    return (request: DeepPartial<Req>, options: ClientCallOptions = {}): Promise<Res> =>
      new Promise((resolve, reject) => {
        const { signal, callOptions } = splitSignal(options);
        const stub = this.stub[method] as unknown as UnaryStub<Req, Res>;
        let detach = () => {};
        // fromPartial fills unset fields with proto3 defaults, which the encoder requires.
        const call = stub.call(this.stub, message.fromPartial(request), new Metadata(), callOptions, (error, response) => {
          detach();
          if (error) reject(error);
          else resolve(response);
        });
        if (signal) detach = cancelOnAbort(signal, () => call.cancel());
      });
  }
}

export interface ConnectOptions {
  /** TLS (and a client certificate for mTLS); plaintext when absent. See tlsCredentials(). */
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer <token>` with every call. */
  token?: string;
}

/** TLS credentials from PEM files: the CA that signed the server's certificate, and a client certificate for mTLS. */
export function tlsCredentials(files: { caFile?: string; certFile?: string; keyFile?: string }): ChannelCredentials {
  const read = (file?: string) => (file ? readFileSync(file) : null);
  return credentials.createSsl(read(files.caFile), read(files.keyFile), read(files.certFile));
}

/** Adds the bearer token to every call's metadata. */
function bearer(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * Separates the signal from grpc-js's options. With a signal that is already aborted, the call is
 * never sent: an interceptor ends it at once with the status `call.cancel()` gives.
 */
function splitSignal({ signal, ...callOptions }: ClientCallOptions): { signal?: AbortSignal; callOptions: Partial<CallOptions> } {
  if (signal?.aborted) callOptions.interceptors = [cancelledBeforeStart, ...(callOptions.interceptors ?? [])];
  return { signal, callOptions };
}

const cancelledBeforeStart: Interceptor = (options, nextCall) => {
  const inner = nextCall(options);
  return new InterceptingCall(inner, {
    start(_metadata, listener) {
      // Ends the inner call, which was never started: grpc-js drops its deadline timer and counts it done.
      inner.cancelWithStatus(status.CANCELLED, "Cancelled on client");
      // Later, as any status: the caller first gets the call and attaches its listeners.
      setImmediate(() => listener.onReceiveStatus({ code: status.CANCELLED, details: "Cancelled on client", metadata: new Metadata() }));
    },
    sendMessage() {},
    halfClose() {},
  });
};

/**
 * Runs `cancel` when `signal` aborts; returns what removes the listener, to call when the call
 * ends. Nothing to do for a signal already aborted: splitSignal kept that call from starting.
 */
function cancelOnAbort(signal: AbortSignal, cancel: () => void): () => void {
  if (signal.aborted) return () => {};
  signal.addEventListener("abort", cancel, { once: true });
  return () => signal.removeEventListener("abort", cancel);
}

/** The events of a StreamGenerate call as an async iterable; it throws the call's error status. */
export async function* events(call: ClientReadableStream<StreamGenerateResponse>): AsyncGenerator<AgentEvent> {
  for await (const message of call as AsyncIterable<StreamGenerateResponse>) {
    if (message.event) yield message.event;
  }
}
