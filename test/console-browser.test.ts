/**
 * The console in a real browser: headless Chromium (the distribution's package, /usr/bin/chromium;
 * .ci/run installs it) driven by playwright-core. A person opens the page, picks the session, sends
 * a prompt, approves the tool call the scripted turn waits on, and sees the answer and the cost.
 * The screenshot is kept in test-artifacts/console.png.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { scripted, serversStoppedAfterAll } from "./helpers/harness.js";

const CHROMIUM = process.env.AGENTD_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = path.resolve(import.meta.dirname, "../test-artifacts");
const start = serversStoppedAfterAll();
let browser: Browser | undefined;
afterAll(async () => browser?.close());

describe("the web console in a browser", () => {
  it("a person watches a turn, approves its tool call there, and sees the answer and the cost", async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set AGENTD_CHROMIUM)`);
    const prices = { "scripted/script": { inputPerMillion: 1_000, outputPerMillion: 2_000 } };
    const t = await start({ config: { console: { enabled: true, host: "127.0.0.1", port: 0 }, prices } });
    const steps = [
      { text: "I will write it.", toolCalls: [{ id: "b1", name: "bash", arguments: { command: "echo approved-in-browser > browser.txt" } }], usage: { inputTokens: 100, outputTokens: 50 } },
      { text: "The file is written.", usage: { inputTokens: 120, outputTokens: 10 } },
    ];
    const { session } = await t.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const id = session!.id;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(String(error)));
    page.on("console", (message) => { if (message.type() === "error") problems.push(message.text()); });
    await page.goto(`http://${t.server.consoleAddress}/`);
    await page.click(`button[data-session="${id}"]`);
    await page.fill("#prompt", "write the file");
    await page.click("#prompt-form button");
    // The turn waits for a person: the page shows the call with its buttons.
    const box = page.locator(".confirmation");
    await box.waitFor({ timeout: 10_000 }).catch(async (error: unknown) => {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, "console-failed.png"), fullPage: true });
      throw new Error(`${String(error)}; page problems: ${problems.join(" | ")}; error line: ${await page.locator("#error").textContent()}`);
    });
    expect(await box.locator("strong").textContent()).toBe("bash");
    await box.locator("button", { hasText: "Approve" }).click();
    await page.locator("#answer", { hasText: "The file is written." }).waitFor({ timeout: 10_000 });
    await page.locator("#usage", { hasText: "0.340000 USD" }).waitFor({ timeout: 10_000 });
    expect(await page.locator("#events").textContent()).toMatch(/confirmation_required[\s\S]*confirmation_resolved[\s\S]*turn_completed/);
    expect(await readFile(path.join(session!.workspace, "browser.txt"), "utf8")).toBe("approved-in-browser\n");
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "console.png"), fullPage: true });
    expect(existsSync(path.join(ARTIFACTS, "console.png"))).toBe(true);
  }, 60_000);
});
