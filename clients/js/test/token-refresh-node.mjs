// @ts-check
/**
 * The JS client's token refresh on a long stream, in Node 20 through Envoy,
 * for tests/clients/test_js_client.py. The client starts with an access token
 * that expires a few seconds later; `getToken` hands out a fresh one. The
 * server closes the WebSocket (TOKEN_EXPIRED), the client calls getToken,
 * reconnects and resumes from its position.
 *
 * Line protocol on stdout/stdin:
 *   → "TOKEN?"                 started; waiting for the expiring token
 *   ← "<access token>"         (stdin) minted just now, so its lifetime is the stream's
 *   → "SUBSCRIBED"             the subscription is live; the test starts writing
 *   → "RESULT <json>"          once every object reached its final version (or
 *                              the deadline passed): what arrived; exit code 0
 * Usage: node token-refresh-node.mjs '{"baseUrl", "appId", "freshToken",
 *        "objects": n, "finalVersion": v}'
 */
import { createInterface } from "node:readline";
import { NexxusClient } from "../src/nexxus.js";

const args = JSON.parse(process.argv[2] ?? "{}");
/** @param {string} s */
const say = (s) => process.stdout.write(`${s}\n`);
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
say("TOKEN?");
const expiringToken = String((await lines.next()).value ?? "").trim();

let tokensHandedOut = 0;
const client = new NexxusClient({
  baseUrl: args.baseUrl,
  appId: args.appId,
  token: expiringToken,
  getToken: async () => {
    tokensHandedOut += 1;
    return args.freshToken;
  },
  heartbeatSeconds: 2,
  backoffInitialMs: 100,
  backoffMaxMs: 1000,
});

/** @type {Array<{objectId: string, version: number, eventId: string}>} */
const events = [];
/** @type {Map<string, number>} */
const latest = new Map();
/** @type {string[]} */
const errors = [];
let resumed = 0;
let gaps = 0;
client.on("error", (/** @type {any} */ err) => errors.push(`${err.code}:${err.details?.reason ?? ""}`));
client.on("resumed", () => {
  resumed += 1;
});
client.on("gap", () => {
  gaps += 1;
});

/** @type {() => void} */
let settle = () => {};
const allArrived = new Promise((resolve) => {
  settle = () => resolve(undefined);
});
const done = () =>
  latest.size === args.objects && [...latest.values()].every((v) => v === args.finalVersion);

const off = client.subscribe({ model: "task" }, (e) => {
  const version = Number(e.version);
  events.push({ objectId: e.objectId, version, eventId: e.eventId });
  latest.set(e.objectId, Math.max(latest.get(e.objectId) ?? 0, version));
  if (done()) settle();
});
await off.ready;
say("SUBSCRIBED");

const deadline = new Promise((resolve) => setTimeout(resolve, (args.deadlineSeconds ?? 60) * 1000));
await Promise.race([allArrived, deadline]);

say(
  `RESULT ${JSON.stringify({
    events,
    tokensHandedOut,
    connections: client.connections,
    token: client.token === args.freshToken ? "fresh" : "other",
    duplicatesDropped: client.duplicates,
    resumed,
    gaps,
    errors,
    complete: done(),
  })}`,
);
off();
client.close();
stdin.close();
process.exit(0);
