// @ts-check
/**
 * Cross-language proof: a Node gRPC client built at runtime from proto/
 * (@grpc/proto-loader + @grpc/grpc-js, no generated code) opens
 * EventService.StreamEvents with an inline subscription, creates an object
 * with ObjectService.CreateObject, and prints the event it receives:
 *
 *   node stream.mjs '{"target": "127.0.0.1:8000", "appId": "...", "token": "<device token>",
 *                     "model": "task", "data": {"title": "hi"}, "objectId": "x1"}'
 *
 * `target` is Envoy (gRPC passes through it) or, without Envoy, the api and
 * the transport directly: {"apiTarget": "...", "eventsTarget": "..."}.
 * Prints "READY <json>", then "RESULT <json>"; exits 0, or 1 with the error.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const args = JSON.parse(process.argv[2] ?? "{}");

const definition = protoLoader.loadSync(
  ["nexxus/v1/objects.proto", "nexxus/v1/events.proto"],
  {
    // Well-known types (google/protobuf/*.proto) ship with proto-loader;
    // extra dirs (e.g. grpcio-tools' _proto) may be passed as includeDirs.
    includeDirs: [path.join(root, "proto"), path.join(root, "third_party", "googleapis"), ...(args.includeDirs ?? [])],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  },
);
const pkg = /** @type {any} */ (grpc.loadPackageDefinition(definition)).nexxus.v1;
const creds = grpc.credentials.createInsecure();
const events = new pkg.EventService(args.eventsTarget ?? args.target, creds);
const objects = new pkg.ObjectService(args.apiTarget ?? args.target, creds);
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${args.token}`);

/** @param {unknown} err */
function fail(err) {
  process.stderr.write(`stream.mjs failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
}

const call = events.StreamEvents(
  { appId: args.appId, subscriptions: [{ model: args.model }], heartbeatSeconds: 5 },
  metadata,
);
call.on("error", (/** @type {grpc.ServiceError} */ err) => {
  if (err.code !== grpc.status.CANCELLED) fail(err);
});
call.on("data", (/** @type {any} */ frame) => {
  if (frame.frame === "ready") {
    process.stdout.write(`READY ${JSON.stringify({ subscriptions: frame.ready.subscriptions.map((/** @type {any} */ s) => s.id) })}\n`);
    objects.CreateObject(
      { appId: args.appId, model: args.model, objectId: args.objectId, data: toStruct(args.data), wait: true },
      metadata,
      (/** @type {grpc.ServiceError | null} */ err, /** @type {any} */ resp) => {
        if (err) fail(err);
        else process.stdout.write(`CREATED ${JSON.stringify({ operationId: resp.operation.operationId })}\n`);
      },
    );
  } else if (frame.frame === "event" && frame.event.objectId === args.objectId) {
    const e = frame.event;
    const result = {
      kind: e.kind,
      objectId: e.objectId,
      version: e.version,
      operationId: e.operationId,
      data: fromStruct(e.object?.data),
    };
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    call.cancel();
    events.close();
    objects.close();
  } else if (frame.frame === "error") {
    fail(new Error(`${frame.error.code}: ${frame.error.message}`));
  }
});

// google.protobuf.Struct / Value in proto-loader's object form.
/** @param {any} v @returns {any} */
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
/** @param {Record<string, any>} obj */
function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}
/** @param {any} v @returns {any} */
function fromValue(v) {
  switch (v.kind) {
    case "nullValue": return null;
    case "listValue": return (v.listValue.values ?? []).map(fromValue);
    case "structValue": return fromStruct(v.structValue);
    default: return v[v.kind];
  }
}
/** @param {any} s */
function fromStruct(s) {
  return s ? Object.fromEntries(Object.entries(s.fields ?? {}).map(([k, v]) => [k, fromValue(v)])) : null;
}
