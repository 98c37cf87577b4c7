import { parseArgs } from "node:util";
import type { OwnerUsage } from "../gen/agentd/v1/runtime.js";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";

const HELP = `agentd usage: what an owner spent in the current budget period, and their budget

  agentd usage [--owner NAME]     your own by default; an admin may name another owner

${CONNECT_HELP}`;

export async function runUsage(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { ...connectOptions, owner: { type: "string", default: "" }, help: { type: "boolean", short: "h" } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const client = connect(values);
  try {
    console.log(describeOwnerUsage((await client.getOwnerUsage({ owner: values.owner })).ownerUsage!));
    return 0;
  } finally {
    client.close();
  }
}

export function describeOwnerUsage(spent: OwnerUsage): string {
  const usage = spent.usage;
  const period = spent.period === "total" ? "in all" : `this ${spent.period} (since ${spent.periodStart?.toISOString().slice(0, 10)})`;
  const budget =
    spent.budgetUsd > 0
      ? `; budget ${spent.budgetUsd} USD, ${Math.max(0, spent.budgetUsd - (usage?.costUsd ?? 0)).toFixed(4)} USD left${spent.periodEnd ? `, renews ${spent.periodEnd.toISOString()}` : ""}`
      : "; no budget";
  return `${spent.owner}: ${(usage?.costUsd ?? 0).toFixed(6)} USD ${period}, ${usage?.inputTokens ?? 0} in / ${usage?.outputTokens ?? 0} out tokens${budget}`;
}
