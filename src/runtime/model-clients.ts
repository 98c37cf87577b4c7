import { failedPrecondition } from "../errors.js";
import type { LlmClientFactory } from "../llm/factory.js";
import type { LlmClient, ModelSettings } from "../llm/types.js";
import type { Session } from "../session/session.js";

/**
 * One model client per session, built when a turn first needs it and rebuilt when the session's
 * model changes. A key passed with a request is used for that turn only and never cached.
 */
export class ModelClients {
  private readonly clients = new Map<string, { key: string; client: LlmClient }>();

  constructor(private readonly factory: LlmClientFactory) {}

  /** Throws INVALID_ARGUMENT for settings that can never work. */
  validate(model: ModelSettings): void {
    this.factory.validate(model);
  }

  /** The client for the session's next turn; FAILED_PRECONDITION when it has no model or no key. */
  clientFor(session: Session, apiKey: string): LlmClient {
    const model = session.config.model;
    if (!model) {
      throw failedPrecondition(
        `session ${session.id} has no model; set one with ConfigureSession (provider and model) or start the server with a default model (--provider, --model)`,
      );
    }
    const progress = session.scriptProgress;
    const agent = session.agent;
    if (apiKey !== "") return this.factory.create(model, { apiKey, progress, agent });
    const key = JSON.stringify(model);
    const cached = this.clients.get(session.id);
    if (cached?.key === key) return cached.client;
    const client = this.factory.create(model, { progress, agent });
    this.clients.set(session.id, { key, client });
    return client;
  }

  forget(sessionId: string): void {
    this.clients.delete(sessionId);
  }
}
