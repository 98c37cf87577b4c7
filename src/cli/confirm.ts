import type { ServiceError } from "@grpc/grpc-js";
import type { AgentdClient } from "../client/client.js";
import { ConfirmDecision, type PendingConfirmation } from "../gen/agentd/v1/runtime.js";

/** Asks the person at the terminal one question; null when there is nobody to ask. */
export type Ask = (question: string) => Promise<string | null>;

const HELP = "[y]es, once · [n]o · [a]lways (this tool, or this command prefix) · [e]dit the arguments";

/**
 * Answers a confirmation the way a person at a terminal expects: shows the call (as a diff for
 * file edits), asks yes / no / always / edit, and sends the answer. With `autoApprove`, approves
 * and says so; with nobody to ask, says how to answer from elsewhere and lets the call wait.
 */
export async function answerConfirmation(
  client: AgentdClient,
  confirmation: PendingConfirmation,
  options: { ask: Ask | null; autoApprove: boolean },
): Promise<void> {
  const { id, sessionId, toolName } = confirmation;
  const send = (decision: ConfirmDecision, extra: { editedArgumentsJson?: string; remember?: boolean; reason?: string } = {}) =>
    client.confirmToolCall({ sessionId, confirmationId: id, decision, ...extra });

  console.error(`\n[confirm] ${toolName}${confirmation.rule ? ` (rule ${confirmation.rule})` : ""}\n${describeCall(confirmation)}`);
  if (options.autoApprove) {
    await send(ConfirmDecision.CONFIRM_DECISION_APPROVE, { reason: "approved by --yes" });
    console.error("[approved: --yes]");
    return;
  }
  if (!options.ask) {
    console.error(`[waiting] nobody here to ask: answer with ConfirmToolCall (session ${sessionId}, confirmation ${id}), or run chat with --yes`);
    return;
  }
  for (;;) {
    const answer = (await options.ask(`Allow ${toolName}? ${HELP}: `))?.trim().toLowerCase();
    try {
      switch (answer) {
        case "y":
        case "yes":
          await send(ConfirmDecision.CONFIRM_DECISION_APPROVE);
          return;
        case "a":
        case "always": {
          const reply = await send(ConfirmDecision.CONFIRM_DECISION_APPROVE, { remember: true });
          console.error(`[allowed from now on: ${reply.rememberedRule}]`);
          return;
        }
        case "e":
        case "edit": {
          const edited = await options.ask(`New arguments as JSON (was ${confirmation.argumentsJson}): `);
          if (edited === null || edited.trim() === "") continue;
          await send(ConfirmDecision.CONFIRM_DECISION_APPROVE, { editedArgumentsJson: edited });
          return;
        }
        case "n":
        case "no":
        case null:
        case undefined: {
          const reason = answer === null || answer === undefined ? "" : ((await options.ask("Why (told to the model, optional): ")) ?? "");
          await send(ConfirmDecision.CONFIRM_DECISION_REJECT, { reason });
          return;
        }
        default:
          console.error(HELP);
      }
    } catch (error) {
      // Edited arguments that do not fit leave the confirmation pending: ask again.
      console.error(`[error] ${(error as Partial<ServiceError>).details ?? String(error)}`);
      if ((error as Partial<ServiceError>).code !== 3) return;
    }
  }
}

/** The call as a person reads it: a diff for file edits and writes, the command for bash, else the JSON. */
export function describeCall(confirmation: Pick<PendingConfirmation, "toolName" | "argumentsJson">): string {
  let args: Record<string, unknown>;
  try {
    args = JSON.parse(confirmation.argumentsJson) as Record<string, unknown>;
  } catch {
    return `  ${confirmation.argumentsJson}`;
  }
  const lines = (text: unknown, mark: string) =>
    String(text ?? "")
      .split("\n")
      .slice(0, 40)
      .map((line) => `  ${mark} ${line}`)
      .join("\n");
  switch (confirmation.toolName) {
    case "edit_file":
      return `  ${String(args.path)}\n${lines(args.old_string, "-")}\n${lines(args.new_string, "+")}`;
    case "write_file":
      return `  ${String(args.path)} (whole file)\n${lines(args.content, "+")}`;
    case "bash":
      return `  $ ${String(args.command)}`;
    default:
      return `  ${confirmation.argumentsJson}`;
  }
}
