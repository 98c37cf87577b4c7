/**
 * The console's one page: plain HTML, CSS and JavaScript (no framework, no build step, nothing
 * fetched from elsewhere). It lists sessions as trees, follows one session's events live (SSE from
 * its last sequence, so a reload replays), shows its pending confirmations with approve / reject /
 * edit / always, its usage and cost, and starts turns. Text is always set as text, never as HTML.
 */
export const CONSOLE_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>agentd console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; display: grid; grid-template-columns: 320px 1fr; height: 100vh; color: #1d1d1f; }
  aside { border-right: 1px solid #ddd; overflow: auto; padding: 8px; background: #fafafa; }
  main { overflow: auto; padding: 12px 16px; }
  h1 { font-size: 16px; margin: 4px 0 8px; }
  h2 { font-size: 14px; margin: 16px 0 6px; }
  ul { list-style: none; padding-left: 14px; margin: 0; }
  li button.session { all: unset; cursor: pointer; display: block; padding: 3px 4px; border-radius: 4px; }
  li button.session:hover, li button.session.selected { background: #e8eefc; }
  .state { font-size: 11px; color: #666; margin-left: 4px; }
  .running { color: #0a7a2f; font-weight: 600; }
  #events { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; background: #f6f6f6; padding: 8px; max-height: 40vh; overflow: auto; }
  #answer { white-space: pre-wrap; border-left: 3px solid #9bb4f3; padding: 4px 8px; min-height: 1.4em; }
  .confirmation { border: 1px solid #f0c36d; background: #fff8e6; border-radius: 6px; padding: 8px; margin: 6px 0; }
  .confirmation pre { margin: 4px 0; white-space: pre-wrap; }
  .confirmation textarea { width: 100%; font-family: ui-monospace, monospace; }
  button { margin-right: 6px; }
  #error { color: #b00020; }
  .muted { color: #666; }
</style>
</head>
<body>
<aside>
  <h1>agentd</h1>
  <div id="login" hidden>
    <p class="muted">This server needs a token.</p>
    <input id="token" type="password" placeholder="bearer token" size="24"> <button id="use-token">Use</button>
  </div>
  <ul id="sessions"></ul>
</aside>
<main>
  <div id="error" role="alert"></div>
  <div id="empty" class="muted">Pick a session on the left.</div>
  <section id="detail" hidden>
    <h1 id="title"></h1>
    <div id="usage" class="muted"></div>
    <div id="context" class="muted"></div>
    <h2>Waiting for you</h2>
    <div id="confirmations"><span class="muted">Nothing.</span></div>
    <h2>Turn</h2>
    <form id="prompt-form"><input id="prompt" size="60" placeholder="Ask the agent..."> <button>Send</button></form>
    <div id="answer"></div>
    <h2>Event log</h2>
    <div id="events"></div>
    <h2>MCP servers</h2>
    <ul id="mcp"></ul>
    <h2>Skills</h2>
    <ul id="skills"></ul>
  </section>
</main>
<script>
"use strict";
const state = { token: sessionStorage.getItem("agentd-token") || "", selected: null, source: null };
const $ = (id) => document.getElementById(id);
const text = (tag, value, className) => { const node = document.createElement(tag); node.textContent = value; if (className) node.className = className; return node; };

async function api(path, init) {
  const headers = { "content-type": "application/json" };
  if (state.token) headers.authorization = "Bearer " + state.token;
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { $("login").hidden = false; throw new Error(body.message || "a token is needed"); }
  if (!response.ok) throw new Error(body.message || response.statusText);
  $("error").textContent = "";
  return body;
}
const show = (error) => { $("error").textContent = String(error.message || error); };

async function loadSessions() {
  const { sessions } = await api("/api/sessions");
  const byParent = new Map([["", []]]);
  for (const s of sessions) { const key = s.parentId || ""; if (!byParent.has(key)) byParent.set(key, []); byParent.get(key).push(s); }
  const ids = new Set(sessions.map((s) => s.id));
  const tree = (parent) => {
    const list = document.createElement("ul");
    for (const s of byParent.get(parent) || []) {
      const item = document.createElement("li");
      const button = text("button", (s.agent ? s.agent + " " : "") + s.id.slice(0, 8), "session" + (s.id === state.selected ? " selected" : ""));
      button.dataset.session = s.id;
      button.title = s.id;
      button.onclick = () => select(s.id).catch(show);
      button.append(text("span", s.turnActive ? "running" : s.state, "state" + (s.turnActive ? " running" : "")));
      item.append(button);
      if (byParent.has(s.id)) item.append(tree(s.id));
      list.append(item);
    }
    return list;
  };
  // Roots: top-level sessions, and children whose parent is not listed.
  for (const s of sessions) if (s.parentId && !ids.has(s.parentId)) { byParent.get("").push(s); }
  $("sessions").replaceChildren(...tree("").children);
}

async function select(id) {
  state.selected = id;
  if (state.source) state.source.close();
  $("empty").hidden = true;
  $("detail").hidden = false;
  $("events").textContent = "";
  $("answer").textContent = "";
  await refresh();
  await loadSessions();
  const query = "?after=0" + (state.token ? "&access_token=" + encodeURIComponent(state.token) : "");
  const source = new EventSource("/api/sessions/" + encodeURIComponent(id) + "/events" + query);
  state.source = source;
  source.addEventListener("agentd", (message) => onEvent(JSON.parse(message.data)));
  source.addEventListener("failed", (message) => show(new Error(JSON.parse(message.data).message)));
}

async function refresh() {
  const id = state.selected;
  const { session, treeUsage, ownerUsage, confirmations, context, mcpServers, skills } = await api("/api/sessions/" + encodeURIComponent(id));
  $("context").textContent = "context: " + context.tokens + " tokens" + (context.contextWindow ? " of " + context.contextWindow + " (" + Math.round(context.fraction * 100) + "%)" : " (window unknown)") + (context.autoCompact ? ", compacts automatically" : "");
  $("mcp").replaceChildren(...(mcpServers.length ? mcpServers.map((m) => text("li", m.name + " — " + m.state + ", " + m.toolCount + " tools (" + m.scope + ", " + m.transport + ")" + (m.error ? ": " + m.error : ""))) : [text("li", "None.", "muted")]));
  $("skills").replaceChildren(...(skills.length ? skills.map((s) => text("li", s.name + " — " + s.description + " (" + s.scope + ")")) : [text("li", "None.", "muted")]));
  $("title").textContent = "Session " + session.id;
  const cost = (u) => (u.costUsd || 0).toFixed(6) + " USD";
  $("usage").textContent = [session.model || "no model", session.turnActive ? "turn running" : session.state, session.messageCount + " messages",
    session.usage.inputTokens + " in / " + session.usage.outputTokens + " out tokens, " + cost(session.usage), "tree: " + cost(treeUsage)]
    .concat(ownerUsage ? ["owner " + ownerUsage.owner + ": " + cost(ownerUsage.usage) + (ownerUsage.period === "total" ? "" : " this " + ownerUsage.period) + (ownerUsage.budgetUsd > 0 ? " of " + ownerUsage.budgetUsd + " USD" : "")] : []).join(" · ");
  const list = confirmations.map((c) => {
    const box = document.createElement("div");
    box.className = "confirmation";
    box.dataset.confirmation = c.id;
    box.append(text("strong", c.toolName), text("span", c.rule ? "  (rule " + c.rule + ")" : "", "muted"), text("pre", c.argumentsJson));
    const edit = document.createElement("textarea");
    edit.rows = 3; edit.value = c.argumentsJson; edit.hidden = true;
    const answer = (decision, extra) => api("/api/sessions/" + encodeURIComponent(c.sessionId) + "/confirmations/" + encodeURIComponent(c.id), { method: "POST", body: JSON.stringify({ decision, ...extra }) }).then(refresh).catch(show);
    const approve = text("button", "Approve"); approve.onclick = () => answer("approve", edit.hidden ? {} : { editedArgumentsJson: edit.value });
    const always = text("button", "Always"); always.onclick = () => answer("approve", { remember: true });
    const reject = text("button", "Reject"); reject.onclick = () => answer("reject", { reason: "rejected in the console" });
    const editButton = text("button", "Edit"); editButton.onclick = () => { edit.hidden = !edit.hidden; };
    box.append(approve, always, reject, editButton, edit);
    return box;
  });
  $("confirmations").replaceChildren(...(list.length ? list : [text("span", "Nothing.", "muted")]));
}

function onEvent(event) {
  const payload = event.payload;
  const line = "#" + event.sequence + " " + payload.type + (payload.type === "text_delta" ? " " + JSON.stringify(payload.text) : payload.type === "tool_call" ? " " + payload.call.name : "");
  $("events").append(text("div", line));
  $("events").scrollTop = $("events").scrollHeight;
  if (payload.type === "turn_started") $("answer").textContent = "";
  if (payload.type === "text_delta") $("answer").append(payload.text);
  if (payload.type === "tool_result") $("answer").append("\\n");
  if (["confirmation_required", "confirmation_resolved", "turn_completed", "turn_failed", "turn_cancelled", "usage", "state_changed"].includes(payload.type)) {
    refresh().catch(show);
    if (payload.type.startsWith("turn_")) loadSessions().catch(show);
  }
}

$("prompt-form").onsubmit = (e) => {
  e.preventDefault();
  const prompt = $("prompt").value;
  if (!state.selected || !prompt) return;
  api("/api/sessions/" + encodeURIComponent(state.selected) + "/turns", { method: "POST", body: JSON.stringify({ prompt }) })
    .then(() => { $("prompt").value = ""; }).catch(show);
};
$("use-token").onclick = () => { state.token = $("token").value; sessionStorage.setItem("agentd-token", state.token); $("login").hidden = true; loadSessions().catch(show); };
loadSessions().catch(show);
setInterval(() => loadSessions().catch(() => {}), 5000);
</script>
</body>
</html>
`;
