import { AgentdError } from "../errors.js";
import { priceOf, type Price } from "../llm/prices.js";
import type { ModelSettings } from "../llm/types.js";

/**
 * A model without a price would cost a budgeted owner nothing, so no budget could stop it: such an
 * owner's model calls (turns, summaries) need a priced model (a configured price of 0 is one). The
 * scripted model is free. `budgetUsd`: the owner's budget; 0, none.
 */
export function checkPricedForBudget(model: ModelSettings | null, owner: string, budgetUsd: number, prices: Readonly<Record<string, Price>>): void {
  if (!model || model.provider === "scripted" || !(budgetUsd > 0) || priceOf(model, prices)) return;
  const key = `${model.provider}/${model.model}`;
  throw new AgentdError(
    "failed_precondition",
    `the model ${key} has no price, so owner ${JSON.stringify(owner)}'s budget could not count what it costs; choose a model with a price, or ask the operator to add prices[${JSON.stringify(key)}] to the server's configuration`,
  );
}
