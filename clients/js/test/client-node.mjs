// @ts-check
/**
 * Drives the JS client in Node 20 (`ws` for the WebSocket) through Envoy,
 * for tests/clients/test_js_client.py. Line protocol on stdout/stdin:
 *   → "STEP <name>"            progress
 *   → "RECONNECT-ME"           the test may now kill the transport, write task "m" (todo)
 *                              while it is down, and restart it
 *   ← "restarted"              (stdin) it did
 *   → "RESUBSCRIBED"           reconnected and re-subscribed; the test writes task "n2"
 *   → "RESULT <json>"          what happened; exit code 0
 * Usage: node client-node.mjs '{"baseUrl": ..., "appId": ..., "username": ..., "password": ...}'
 */
import { createInterface } from "node:readline";
import { NexxusClient, NexxusError, patch } from "../src/nexxus.js";

const args = JSON.parse(process.argv[2] ?? "{}");
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
/** @param {string} s */
const say = (s) => process.stdout.write(`${s}\n`);

/** @type {import("../src/nexxus.js").NexxusEvent[]} */
const events = [];
/** @type {Array<() => void>} */
let waiters = [];
/** @param {(e: import("../src/nexxus.js").NexxusEvent) => boolean} pred */
function nextEvent(pred) {
  return new Promise((resolve) => {
    const check = () => {
      const found = events.find(pred);
      if (found) resolve(found);
      else waiters.push(check);
    };
    check();
  });
}

/** @param {() => Promise<any>} fn @returns {Promise<NexxusError>} */
async function expectError(fn) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof NexxusError) return err;
    throw err;
  }
  throw new Error("expected a NexxusError");
}

const client = new NexxusClient({
  baseUrl: args.baseUrl, appId: args.appId, heartbeatSeconds: 2, backoffInitialMs: 100, backoffMaxMs: 1000,
});
const result = /** @type {Record<string, any>} */ ({});

await client.login(args.username, args.password);
await client.registerDevice("node-test");
say("STEP logged-in");

const badWrite = await expectError(() => client.createObject("task", { status: "todo" }));
result.badWrite = { code: badWrite.code, status: badWrite.status };

const off = client.subscribe({ model: "task", filter: { status: { eq: "todo" } } }, (e) => {
  events.push(e);
  const w = waiters;
  waiters = [];
  w.forEach((f) => f());
});
const sub = await off.ready;
result.subscription = { model: sub.model, hasId: Boolean(sub.id) };
say("STEP subscribed");

const created = await client.createObject("task", { title: "n1", status: "todo" }, { objectId: "n1" });
result.createdVersion = created.object?.version;
const ev1 = await nextEvent((e) => e.objectId === "n1" && e.kind === "EVENT_KIND_CREATED");
result.created = { kind: ev1.kind, title: ev1.object?.data?.title };
await client.updateObject("task", "n1", [patch("replace", "status", "done")]);
const ev2 = await nextEvent((e) => e.objectId === "n1" && e.kind === "EVENT_KIND_LEFT");
result.left = { kind: ev2.kind, version: ev2.version };
const found = await client.search("task", { filter: { status: { eq: "done" } } });
result.searched = found.objects.map((o) => o.id);

result.pong = await client.ping({ n: 7 });
const badOff = client.subscribe({ model: "no_such_model" }, () => {});
const badSub = await expectError(() => badOff.ready);
result.badSubscription = { code: badSub.code };

// Reconnection: wait for a re-subscription on a later connection.
const resubscribed = new Promise((resolve) => {
  const stop = client.on("subscribed", (/** @type {any} */ s) => {
    if (client.connections >= 2) {
      stop();
      resolve(s);
    }
  });
});
say("RECONNECT-ME");
const line = await lines.next();
if (line.value !== "restarted") throw new Error(`unexpected input ${line.value}`);
const again = /** @type {any} */ (await resubscribed);
result.resubscribed = { model: again.model, newId: again.id !== sub.id, connections: client.connections };
say("RESUBSCRIBED");
const missed = await nextEvent((e) => e.objectId === "m" && e.kind === "EVENT_KIND_CREATED");
result.missedWhileDown = { kind: missed.kind, title: missed.object?.data?.title };
const ev3 = await nextEvent((e) => e.objectId === "n2" && e.kind === "EVENT_KIND_CREATED");
result.afterReconnect = { kind: ev3.kind, title: ev3.object?.data?.title };
result.eventIds = events.map((e) => e.eventId);
result.position = client.position;

off();
client.close();
say(`RESULT ${JSON.stringify(result)}`);
stdin.close();
process.exit(0);
