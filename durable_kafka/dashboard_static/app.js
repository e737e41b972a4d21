// The durable-kafka dashboard: plain JS, no build step, no dependencies (docs/DASHBOARD.md).
// Reads come from dashboard/api/*; every action is the management API's own route
// (runtime/webhooks/durabletask/*). All paths are relative, so the app also works mounted under a prefix.
"use strict";

const API = "runtime/webhooks/durabletask";
const DASH = "dashboard/api";
const STATUSES = ["Pending", "Running", "Suspended", "Completed", "Failed", "Terminated", "ContinuedAsNew"];
const TERMINAL = new Set(["Completed", "Failed", "Terminated", "ContinuedAsNew"]);
const REFRESH_MS = 5000;
const HUB_REFRESH_MS = 15000; // the hub page asks the brokers for offsets and reads dead letters
let refreshTimer = null;
let renderSeq = 0;
let viewIsFinal = false; // an ended instance's page: nothing changes until an action, so no polling

// ------------------------------------------------------------------ DOM and formatting helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function fmtTime(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").replace("Z", "");
}

function fmtJson(value) {
  if (value === null || value === undefined) return "null";
  return JSON.stringify(value, null, 2);
}

function badge(status) { return h("span", { class: `badge ${status}` }, status); }

function instanceLink(id) { return h("a", { href: `#/instance/${encodeURIComponent(id)}`, class: "mono" }, id); }

function toast(message, bad) {
  const el = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(el);
  setTimeout(() => el.remove(), bad ? 9000 : 5000);
}

// ------------------------------------------------------------------ API calls with the key

function apiKey() {
  const code = new URLSearchParams(location.search).get("code");
  if (code) sessionStorage.setItem("dk-api-key", code);
  return sessionStorage.getItem("dk-api-key");
}

function askKey() {
  const dialog = document.getElementById("login");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = document.getElementById("login-key").value;
      if (key) sessionStorage.setItem("dk-api-key", key);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

async function call(method, path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = {};
    const key = apiKey();
    if (key) headers["Authorization"] = `Bearer ${key}`;
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) { await askKey(); continue; }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    return { status: response.status, ok: response.ok, data };
  }
  return { status: 401, ok: false, data: { error: "no valid API key" } };
}

async function getJson(path) {
  const r = await call("GET", path);
  if (!r.ok) throw new Error((r.data && r.data.error) || `HTTP ${r.status}`);
  return r.data;
}

// ------------------------------------------------------------------ routing

function route() {
  const hash = location.hash.replace(/^#/, "") || "/instances";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  return { page: parts[0] || "instances", arg: parts.slice(1).map(decodeURIComponent).join("/"), params };
}

function setParams(page, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  location.hash = `#/${page}` + (s ? `?${s}` : "");
}

async function render() {
  const seq = ++renderSeq;
  clearTimeout(refreshTimer);
  const r = route();
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === (r.page === "instance" ? "instances" : r.page)));
  viewIsFinal = false;
  const views = { instances: viewInstances, instance: viewInstance, entities: viewEntities, hub: viewHub };
  const view = views[r.page] || viewInstances;
  let node;
  try {
    node = await view(r);
  } catch (error) {
    node = h("div", { class: "card" }, h("p", { class: "error", id: "load-error" }, String(error.message || error)));
  }
  if (seq !== renderSeq) return; // a newer render started meanwhile
  const main = document.getElementById("view");
  const focused = document.activeElement && document.activeElement.id;
  main.replaceChildren(node);
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  main.dataset.loaded = String(seq);
  scheduleRefresh();
}

// Auto-refresh re-renders the page, but never under an open dialog or while a field is being edited.
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!document.getElementById("auto-refresh").checked || viewIsFinal) return;
  refreshTimer = setTimeout(() => {
    const active = document.activeElement;
    const editing = active && active.closest("#view") && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
    if (editing || document.querySelector("dialog[open]")) scheduleRefresh();
    else render();
  }, route().page === "hub" ? HUB_REFRESH_MS : REFRESH_MS);
}

// ------------------------------------------------------------------ instances

// datetime-local gives "2026-12-02T07:30" (or with seconds); the filters are UTC.
function toIso(local) { return !local ? "" : local.length === 16 ? `${local}:00Z` : `${local}Z`; }

async function viewInstances(r) {
  const p = r.params;
  const limit = Number(p.get("limit") || 50);
  const offset = Number(p.get("offset") || 0);
  const q = new URLSearchParams({ offset, limit });
  for (const k of ["status", "name", "prefix", "from", "to"]) if (p.get(k)) q.set(k, p.get(k));
  const data = await getJson(`${DASH}/instances?${q}`);
  const current = Object.fromEntries(["status", "name", "prefix", "from", "to", "limit"].map((k) => [k, p.get(k) || ""]));
  const go = (changes) => setParams("instances", { ...current, offset: 0, ...changes });

  const counts = h("div", { class: "counts", id: "counts" },
    h("div", { class: "count" + (current.status ? "" : " selected"), "data-status": "", onclick: () => go({ status: "" }) },
      h("b", {}, Object.values(data.counts).reduce((a, b) => a + b, 0)), "All"),
    STATUSES.map((s) => h("div", {
      class: "count" + (current.status === s ? " selected" : ""), "data-status": s, onclick: () => go({ status: s }),
    }, h("b", {}, data.counts[s] || 0), badge(s))));

  const form = h("form", { class: "filters card", id: "filters" },
    h("label", {}, "Status", h("select", { id: "f-status" }, h("option", { value: "" }, "all"),
      STATUSES.map((s) => h("option", { value: s, selected: current.status === s }, s)))),
    h("label", {}, "Name contains", h("input", { id: "f-name", value: current.name, placeholder: "orchestrator" })),
    h("label", {}, "Id prefix", h("input", { id: "f-prefix", value: current.prefix, placeholder: "order-" })),
    h("label", {}, "Created from (UTC)", h("input", { id: "f-from", type: "datetime-local", value: current.from.slice(0, 16) })),
    h("label", {}, "Created to (UTC)", h("input", { id: "f-to", type: "datetime-local", value: current.to.slice(0, 16) })),
    h("label", {}, "Page size", h("select", { id: "f-limit" },
      [25, 50, 100, 250, 500].map((n) => h("option", { value: n, selected: limit === n }, n)))),
    h("button", { class: "primary", type: "submit", id: "f-apply" }, "Apply"),
    h("button", { type: "button", id: "f-clear", onclick: () => setParams("instances", {}) }, "Clear"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    go({ status: v("f-status"), name: v("f-name"), prefix: v("f-prefix"),
         from: toIso(v("f-from")), to: toIso(v("f-to")), limit: v("f-limit") });
  });

  const rows = data.items.map((i) => h("tr", { "data-id": i.instanceId },
    h("td", {}, badge(i.runtimeStatus)), h("td", {}, i.name), h("td", {}, instanceLink(i.instanceId)),
    h("td", { class: "mono" }, fmtTime(i.createdTime)), h("td", { class: "mono" }, fmtTime(i.lastUpdatedTime))));
  const table = h("table", { id: "instances" },
    h("thead", {}, h("tr", {}, ["Status", "Name", "Instance id", "Created (UTC)", "Updated (UTC)"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No instance matches."))));
  const last = Math.min(offset + limit, data.total);
  const pager = h("div", { class: "pager" },
    h("button", { id: "prev", disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) }) }, "‹ Previous"),
    h("span", { id: "page-info" }, data.total ? `${offset + 1}–${last} of ${data.total}` : "0 of 0"),
    h("button", { id: "next", disabled: last >= data.total, onclick: () => go({ offset: offset + limit }) }, "Next ›"));
  return h("section", {}, h("h1", {}, "Instances"), counts, form, table, pager);
}

// ------------------------------------------------------------------ one instance

function drawTimeline(tl) {
  if (!tl.start) return h("p", { class: "muted" }, "No history yet.");
  const t0 = Date.parse(tl.start);
  const t1 = Math.max(Date.parse(tl.end), t0 + 1);
  const span = t1 - t0;
  const pct = (iso) => ((Math.min(Math.max(Date.parse(iso), t0), t1) - t0) / span) * 100;
  const axis = h("div", { class: "tl-axis" });
  for (let i = 0; i <= 4; i++) {
    const ms = (span * i) / 4;
    const label = ms >= 10000 ? `${(ms / 1000).toFixed(0)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
    axis.append(h("span", { style: `left:${i * 25}%` }, `+${label}`));
  }
  const rows = tl.bars.map((b) => {
    const left = pct(b.start);
    const right = b.end ? pct(b.end) : 100;
    const duration = b.end ? `${Date.parse(b.end) - Date.parse(b.start)} ms` : "outstanding";
    const label = b.instanceId ? h("a", { href: `#/instance/${encodeURIComponent(b.instanceId)}` }, b.label) : b.label;
    return h("div", { class: "tl-row", "data-kind": b.kind },
      h("div", { class: "tl-label", title: b.label }, h("span", { class: "muted" }, `${b.kind} `), label),
      h("div", { class: "tl-track" }, h("div", {
        class: `tl-bar k-${b.kind} ${b.status}`, style: `left:${left}%;width:${Math.max(right - left, 0.3)}%`,
        title: `${b.label}: ${b.status}, ${duration}\n${fmtTime(b.start)} → ${b.end ? fmtTime(b.end) : "…"}`,
      })));
  });
  const legend = h("div", { class: "legend" },
    ["activity", "suborchestration", "timer", "event", "entity", "waiting", "suspended"].map((k) =>
      h("span", {}, h("i", { class: `tl-bar k-${k}`, style: "position:static;display:inline-block" }), k)),
    h("span", {}, "striped = outstanding, red = failed"));
  return h("div", { class: "timeline", id: "timeline" }, axis, rows, legend);
}

function historyTable(history) {
  const skip = new Set(["EventType", "Timestamp", "EventId"]);
  return h("table", { id: "history" },
    h("thead", {}, h("tr", {}, ["#", "Event", "Time (UTC)", "Details"].map((t) => h("th", {}, t)))),
    h("tbody", {}, history.map((e) => {  // one row per event; details are the event's own fields
      const details = Object.fromEntries(Object.entries(e).filter(([k, v]) => !skip.has(k) && v !== null
        && !(typeof v === "object" && Object.keys(v).length === 0)));
      return h("tr", {}, h("td", { class: "mono" }, e.EventId), h("td", {}, e.EventType),
        h("td", { class: "mono" }, fmtTime(e.Timestamp)),
        h("td", {}, Object.keys(details).length ? h("pre", {}, JSON.stringify(details)) : ""));
    })));
}

function field(label, input) { return h("label", { class: "field" }, label, input); }

// Ask for confirmation (and the action's fields); resolve with the field values, or null if cancelled.
function confirmDialog(title, text, fields, validate) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-fields").replaceChildren(...fields);
  const error = document.getElementById("confirm-error");
  const ok = document.getElementById("confirm-ok");
  const check = () => {
    const problem = validate ? validate() : null;
    error.textContent = problem || "";
    ok.disabled = Boolean(problem);
  };
  fields.forEach((f) => f.addEventListener("input", check));
  check();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? true : null), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function parseJsonOrError(text) {
  if (!text.trim()) return { value: null };
  try { return { value: JSON.parse(text) }; } catch (e) { return { error: `not valid JSON: ${e.message}` }; }
}

function actionButtons(state) {
  const id = state.instanceId;
  const base = `${API}/instances/${encodeURIComponent(id)}`;
  const ended = TERMINAL.has(state.runtimeStatus);
  const reasonInput = () => h("input", { id: "act-reason", placeholder: "optional" });

  async function run(method, path, body, done) {
    const r = await call(method, path, body);
    if (r.ok) { toast(done); return r; }
    const reason = (r.data && r.data.error) || `HTTP ${r.status}`;
    toast(`${done.split(" ")[0]} failed (HTTP ${r.status}): ${reason}`, true);
    return r;
  }
  const reasonQuery = () => {
    const v = document.getElementById("act-reason").value;
    return v ? `?reason=${encodeURIComponent(v)}` : "";
  };

  const raise = async () => {
    const name = h("input", { id: "act-event-name", placeholder: "EventName" });
    const data = h("textarea", { id: "act-event-data", spellcheck: "false" }, "{\n  \n}");
    const ok = await confirmDialog("Raise event", `Send an external event to ${id}.`,
      [field("Event name", name), field("Data (JSON)", data)], () => {
        if (!name.value.trim()) return "the event name is required";
        return parseJsonOrError(data.value).error || null;
      });
    if (ok) await run("POST", `${base}/raiseEvent/${encodeURIComponent(name.value.trim())}`,
      parseJsonOrError(data.value).value, `Event ${name.value.trim()} raised`);
  };
  const simple = (verb, label, text) => async () => {
    const ok = await confirmDialog(label, text, [field("Reason", reasonInput())]);
    if (ok) await run("POST", `${base}/${verb}${reasonQuery()}`, undefined, `${label} requested`);
  };
  const restart = async () => {
    const fresh = h("input", { type: "checkbox", id: "act-new-id" });
    const ok = await confirmDialog("Restart", `Run ${state.name} again with its original input.`,
      [h("label", { class: "field" }, h("span", {}, fresh, " with a new instance id"))]);
    if (!ok) return;
    const r = await run("POST", `${base}/restart?restartWithNewInstanceId=${fresh.checked}`, undefined, "Restart requested");
    if (r.ok && r.data && r.data.id && r.data.id !== id) location.hash = `#/instance/${encodeURIComponent(r.data.id)}`;
  };
  const rewind = async () => {
    const ok = await confirmDialog("Rewind", `Rewind the failed instance ${id}: its failed work runs again.`,
      [field("Reason", reasonInput())]);
    if (!ok) return;
    const r = await call("POST", `${base}/rewind${reasonQuery()}`);
    if (r.ok) toast("Rewind requested");
    else if (r.status === 404 || r.status === 501 || r.status === 405) {
      toast(`Rewind is not available on this server (HTTP ${r.status}): ${(r.data && r.data.error) || "no rewind route"}. `
        + "Use Restart to run the orchestration again.", true);
    } else toast(`Rewind failed (HTTP ${r.status}): ${(r.data && r.data.error) || ""}`, true);
  };
  const purge = async () => {
    const ok = await confirmDialog("Purge", `Delete ${id}, its history and its sub-orchestrations. This cannot be undone.`, []);
    if (!ok) return;
    const r = await run("DELETE", base, undefined, "Purged");
    if (r.ok) location.hash = "#/instances";
  };
  // after the dialog (confirmed or not), show the instance as it is now
  const b = (id_, label, action, enabled, cls) =>
    h("button", { id: id_, onclick: async () => { await action(); render(); }, disabled: !enabled, class: cls || "" }, label);
  return h("div", { class: "actions", id: "actions" },
    b("act-raise", "Raise event…", raise, !ended),
    b("act-suspend", "Suspend", simple("suspend", "Suspend", `Suspend ${id}: it takes no step until resumed.`),
      !ended && state.runtimeStatus !== "Suspended"),
    b("act-resume", "Resume", simple("resume", "Resume", `Resume ${id}.`), state.runtimeStatus === "Suspended"),
    b("act-terminate", "Terminate", simple("terminate", "Terminate", `Terminate ${id} (and its sub-orchestrations); the reason becomes its output.`), !ended, "danger"),
    b("act-restart", "Restart…", restart, true),
    b("act-rewind", "Rewind", rewind, state.runtimeStatus === "Failed"),
    b("act-purge", "Purge", purge, ended, "danger"));
}

async function viewInstance(r) {
  const s = await getJson(`${DASH}/instances/${encodeURIComponent(r.arg)}`);
  viewIsFinal = TERMINAL.has(s.runtimeStatus); // (each refresh reads the history from Kafka)
  const kv = h("dl", { class: "kv" },
    h("dt", {}, "Name"), h("dd", {}, s.name),
    h("dt", {}, "Status"), h("dd", { id: "status" }, badge(s.runtimeStatus)),
    h("dt", {}, "Created"), h("dd", { class: "mono" }, fmtTime(s.createdTime)),
    h("dt", {}, "Updated"), h("dd", { class: "mono" }, fmtTime(s.lastUpdatedTime)),
    h("dt", {}, "Parent"), h("dd", { id: "parent" }, s.parentInstanceId ? instanceLink(s.parentInstanceId) : "—"));
  const payloads = h("div", { class: "grid2" },
    h("div", { class: "card" }, h("h2", {}, "Input"), h("pre", { id: "input" }, fmtJson(s.input))),
    h("div", { class: "card" }, h("h2", {}, "Output"), h("pre", { id: "output" }, fmtJson(s.output))),
    h("div", { class: "card" }, h("h2", {}, "Custom status"), h("pre", { id: "custom-status" }, fmtJson(s.customStatus))));
  const failure = s.failureDetails ? h("div", { class: "card", id: "failure" }, h("h2", {}, "Failure"),
    h("p", {}, h("b", {}, s.failureDetails.errorType), ": ", s.failureDetails.errorMessage),
    h("pre", { id: "stack-trace" }, s.failureDetails.stackTrace || "(no stack trace)")) : null;
  const children = s.children.length ? h("div", { class: "card" }, h("h2", {}, "Sub-orchestrations"),
    h("table", { id: "children" }, h("tbody", {}, s.children.map((c) =>
      h("tr", {}, h("td", {}, badge(c.runtimeStatus)), h("td", {}, c.name), h("td", {}, instanceLink(c.instanceId))))))) : null;
  return h("section", {},
    h("p", {}, h("a", { href: "#/instances" }, "‹ Instances")),
    h("h1", { class: "mono", id: "instance-id" }, s.instanceId),
    h("div", { class: "card" }, kv, actionButtons(s)),
    failure, payloads, children,
    h("div", { class: "card" }, h("h2", {}, "Timeline"), drawTimeline(s.timeline)),
    h("div", { class: "card" }, h("h2", {}, `History (${s.history.length} events)`), historyTable(s.history)));
}

// ------------------------------------------------------------------ entities

const signalDraft = {};

async function viewEntities(r) {
  const name = r.params.get("name") || "";
  const offset = Number(r.params.get("offset") || 0);
  const q = new URLSearchParams({ offset, limit: 50 });
  if (name) q.set("name", name);
  const data = await getJson(`${DASH}/entities?${q}`);
  const names = h("div", { class: "names card", id: "entity-names" }, h("h2", {}, "Names"),
    h("button", { class: name ? "" : "selected", onclick: () => setParams("entities", {}) }, "all"),
    data.names.map((n) => h("button", { class: n.name === name ? "selected" : "", "data-name": n.name,
      onclick: () => setParams("entities", { name: n.name }) }, `${n.name} (${n.count})`)));
  // what was typed survives the auto-refresh's re-render
  const draft = (id, init) => { signalDraft[id] = signalDraft[id] ?? init; return signalDraft[id]; };
  const keep = (el) => { el.addEventListener("input", () => { signalDraft[el.id] = el.value; }); return el; };
  const sName = keep(h("input", { id: "sig-name", value: draft("sig-name", name), placeholder: "counter" }));
  const sKey = keep(h("input", { id: "sig-key", value: draft("sig-key", ""), placeholder: "key" }));
  const sOp = keep(h("input", { id: "sig-op", value: draft("sig-op", ""), placeholder: "operation" }));
  const sInput = keep(h("textarea", { id: "sig-input", spellcheck: "false", style: "min-height:60px" },
    draft("sig-input", "")));
  const signal = h("form", { class: "card", id: "signal-form" }, h("h2", {}, "Signal an entity"),
    h("div", { class: "filters" }, field("Name", sName), field("Key", sKey), field("Operation", sOp)),
    field("Input (JSON, optional)", sInput), h("button", { class: "primary", type: "submit", id: "sig-send" }, "Send signal"));
  signal.addEventListener("submit", async (e) => {
    e.preventDefault();
    const parsed = parseJsonOrError(sInput.value);
    if (parsed.error) { toast(parsed.error, true); return; }
    if (!sName.value.trim() || !sKey.value.trim() || !sOp.value.trim()) { toast("name, key and operation are required", true); return; }
    const path = `${API}/entities/${encodeURIComponent(sName.value.trim())}/${encodeURIComponent(sKey.value.trim())}`
      + `?op=${encodeURIComponent(sOp.value.trim())}`;
    const res = await call("POST", path, parsed.value);
    if (res.ok) toast(`Signal ${sOp.value.trim()} sent to @${sName.value.trim()}@${sKey.value.trim()}`);
    else toast(`Signal failed (HTTP ${res.status}): ${(res.data && res.data.error) || ""}`, true);
  });
  const table = h("table", { id: "entities" },
    h("thead", {}, h("tr", {}, ["Name", "Key", "Last operation (UTC)", "State"].map((t) => h("th", {}, t)))),
    h("tbody", {}, data.items.length ? data.items.map((e) => h("tr", { "data-key": e.key },
      h("td", {}, e.name), h("td", { class: "mono" }, e.key), h("td", { class: "mono" }, fmtTime(e.lastOperationTime)),
      h("td", {}, h("pre", {}, fmtJson(e.state))))) : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No entity."))));
  const last = Math.min(offset + 50, data.total);
  const pager = h("div", { class: "pager" },
    h("button", { disabled: offset === 0, onclick: () => setParams("entities", { name, offset: Math.max(0, offset - 50) }) }, "‹ Previous"),
    h("span", {}, data.total ? `${offset + 1}–${last} of ${data.total}` : "0 of 0"),
    h("button", { disabled: last >= data.total, onclick: () => setParams("entities", { name, offset: offset + 50 }) }, "Next ›"));
  return h("section", {}, h("h1", {}, "Entities"),
    h("div", { class: "layout-entities" }, names, h("div", {}, signal, table, pager)));
}

// ------------------------------------------------------------------ hub

async function viewHub() {
  const data = await getJson(`${DASH}/hub`);
  const topics = h("table", { id: "topics" },
    h("thead", {}, h("tr", {}, ["Topic", "Partitions", "Leaders", "Replicas per partition"].map((t) => h("th", {}, t)))),
    h("tbody", {}, data.topics.map((t) => h("tr", {}, h("td", { class: "mono" }, t.name), h("td", {}, t.partitions.length),
      h("td", { class: "mono" }, [...new Set(t.partitions.map((p) => p.leader))].join(", ")),
      h("td", {}, t.partitions.length ? t.partitions[0].replicas.length : 0)))));
  const groups = data.groups.map((g) => h("div", { class: "card group", "data-group": g.group },
    h("h2", {}, `${g.group} `, h("span", { class: "muted" }, `${g.state}, ${g.members} member(s), total lag ${g.totalLag}`)),
    g.error ? h("p", { class: "muted" }, g.error) : null,
    h("table", {}, h("thead", {}, h("tr", {}, ["Topic", "Partition", "Owner (worker)", "Host", "Committed", "End", "Lag"].map((t) => h("th", {}, t)))),
      h("tbody", {}, g.partitions.map((p) => h("tr", {},
        h("td", { class: "mono" }, p.topic), h("td", {}, p.partition),
        h("td", { class: "mono", title: p.owner ? `member ${p.owner.memberId}` : "" }, p.owner ? p.owner.worker : "— unassigned"),
        h("td", { class: "mono" }, p.owner ? p.owner.host : ""),
        h("td", {}, p.committed === null ? "—" : p.committed), h("td", {}, p.end),
        h("td", { class: p.lag > 1000 ? "lag-high" : "" }, p.lag)))))));
  const dl = data.deadLetters;
  const letters = h("div", { class: "card", id: "dead-letters" },
    h("h2", {}, `Dead letters: `, h("span", { id: "dead-letter-count" }, dl.approximate ? `≈${dl.count}` : dl.count),
      dl.complete ? "" : " (or more: still reading)"),
    h("p", { class: "muted" }, `topic ${dl.topic}; records that could not be decoded or applied, with the reason`),
    dl.latest.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Failed at (UTC)", "Source", "Instance", "Error type", "Reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, dl.latest.map((d) => h("tr", {}, h("td", { class: "mono" }, fmtTime(d.failedAt)),
        h("td", { class: "mono" }, `${d.topic}[${d.partition}]@${d.offset}`),
        h("td", {}, d.instanceId ? instanceLink(d.instanceId) : "—"), h("td", {}, d.errorType),
        h("td", {}, h("pre", {}, d.reason)))))) : h("p", {}, "None."));
  return h("section", {}, h("h1", {}, `Hub ${data.hub}`), letters,
    h("h2", {}, "Consumer groups"), groups,
    h("h2", {}, "Topics"), topics);
}

// ------------------------------------------------------------------ start

window.addEventListener("hashchange", render);
document.getElementById("auto-refresh").addEventListener("change", render);
render();
