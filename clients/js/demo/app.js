// @ts-check
/**
 * The live task board. Served through Envoy (same origin as the REST API and
 * the WebSocket): /demo/ for this page, /js/nexxus.js for the client.
 *
 * Either log in with the form, or open the page with a fragment:
 *   /demo/#app=APP_ID&token=DEVICE_TOKEN[&filter=URL-ENCODED-JSON]
 */
import { NexxusClient, NexxusError } from "/js/nexxus.js";

/** @typedef {import("../src/nexxus.js").NexxusObject} NexxusObject */
/** @typedef {import("../src/nexxus.js").NexxusEvent} NexxusEvent */

const STATUSES = ["todo", "doing", "done"];
/** @type {Map<string, number>} object id → version shown */
const versions = new Map();

/** @param {string} id @returns {any} */
const $ = (id) => document.getElementById(id);

/** @param {string} text */
function log(text) {
  const el = $("log");
  el.textContent = `${new Date().toISOString().slice(11, 19)} ${text}\n${el.textContent}`.slice(0, 4000);
}

/** @param {string} state */
function setState(state) {
  document.body.dataset.state = state;
  $("status").textContent = state;
}

/** @param {NexxusObject} obj */
function upsert(obj) {
  const version = Number(obj.version);
  if ((versions.get(obj.id) ?? 0) > version) return; // an older event arrived late
  versions.set(obj.id, version);
  const data = obj.data ?? {};
  const status = STATUSES.includes(data.status) ? data.status : "todo";
  let card = document.querySelector(`.task-card[data-id="${CSS.escape(obj.id)}"]`);
  if (!card) {
    card = document.createElement("li");
    card.className = "task-card";
    card.setAttribute("data-id", obj.id);
  }
  card.setAttribute("data-priority", String(data.priority ?? ""));
  card.setAttribute("data-version", String(version));
  card.replaceChildren();
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = String(data.title ?? obj.id);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${data.priority ?? "normal"} · v${version}`;
  card.append(title, meta);
  const list = document.querySelector(`.column[data-status="${status}"] ul`);
  if (list && card.parentElement !== list) list.append(card);
}

/** @param {string} id @param {number} version */
function remove(id, version) {
  versions.set(id, version);
  document.querySelector(`.task-card[data-id="${CSS.escape(id)}"]`)?.remove();
}

/** @param {NexxusEvent} event */
function onEvent(event) {
  log(`${event.kind.replace("EVENT_KIND_", "")} ${event.objectId} v${event.version}`);
  switch (event.kind) {
    case "EVENT_KIND_CREATED":
    case "EVENT_KIND_UPDATED":
    case "EVENT_KIND_ENTERED":
      if (event.object) upsert(event.object);
      break;
    case "EVENT_KIND_LEFT":
    case "EVENT_KIND_DELETED":
      remove(event.objectId, Number(event.version));
      break;
  }
}

/** @param {NexxusClient} client @param {any} filter */
async function start(client, filter) {
  $("login").hidden = true;
  $("board").hidden = false;
  $("filter-label").textContent = filter ? `filter: ${JSON.stringify(filter)}` : "all tasks";
  /** @type {any} */ (window).nexxus = client; // for the browser console (and the browser test)
  client.on("state", (/** @type {string} */ s) => setState(s === "open" ? "live" : s));
  client.on("error", (/** @type {Error} */ err) => log(`error: ${err.message}`));
  const off = client.subscribe({ model: "task", ...(filter ? { filter } : {}) }, onEvent);
  // The first subscription loads the board; after a reconnection the client
  // resumes from its position (the missed events arrive as events), or — when
  // that is too late — says "gap" and sends a snapshot that replaces the board.
  let loaded = false;
  let replaceOnSnapshot = false;
  client.on("subscribed", async () => {
    if (loaded) return;
    loaded = true;
    const { objects } = await client.search("task", filter ? { filter, pageSize: 200 } : { pageSize: 200 });
    objects.forEach(upsert);
  });
  client.on("gap", (/** @type {any} */ gap) => {
    log(`gap (${String(gap.reason ?? "").replace("GAP_REASON_", "").toLowerCase()}): reloading from a snapshot`);
    setState("resyncing");
    replaceOnSnapshot = true;
  });
  client.on("snapshot", (/** @type {any} */ page) => {
    if (replaceOnSnapshot) {
      replaceOnSnapshot = false;
      document.querySelectorAll(".task-card").forEach((card) => card.remove());
      versions.clear();
    }
    (page.objects ?? []).forEach(upsert);
    if (page.done) log(`snapshot loaded at ${page.position}`);
  });
  client.on("resumed", (/** @type {any} */ r) => {
    log(`resumed at ${r.position}: ${r.replayed ?? 0} missed events replayed`);
    setState("live");
  });
  await off.ready;
  setState("live");
  log("subscribed to task");

  $("create").addEventListener("submit", async (/** @type {SubmitEvent} */ ev) => {
    ev.preventDefault();
    const form = /** @type {HTMLFormElement} */ (ev.target);
    const fields = new FormData(form);
    try {
      await client.createObject("task", {
        title: String(fields.get("title")),
        status: String(fields.get("status")),
        priority: String(fields.get("priority")),
      });
      form.reset();
    } catch (err) {
      log(err instanceof NexxusError ? `create failed: ${err.code} ${err.serverMessage}` : String(err));
    }
  });
}

async function main() {
  const params = new URLSearchParams(location.hash.slice(1));
  const filterText = params.get("filter");
  const app = params.get("app");
  const token = params.get("token");
  if (app && token) {
    await start(new NexxusClient({ baseUrl: "", appId: app, token }), filterText ? JSON.parse(filterText) : null);
    return;
  }
  $("login").addEventListener("submit", async (/** @type {SubmitEvent} */ ev) => {
    ev.preventDefault();
    const fields = new FormData(/** @type {HTMLFormElement} */ (ev.target));
    const client = new NexxusClient({ baseUrl: "", appId: String(fields.get("app")) });
    try {
      await client.login(String(fields.get("login")), String(fields.get("password")));
      await client.registerDevice("demo-browser");
      const f = String(fields.get("filter") ?? "").trim();
      await start(client, f ? JSON.parse(f) : null);
    } catch (err) {
      log(`login failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}

main().catch((err) => {
  setState("failed");
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
});
