// @ts-check
/**
 * Nexxus client for browsers and Node 20: REST/JSON over fetch (Envoy's
 * gRPC-JSON transcoder) and live events over the WebSocket bridge
 * (`/v1/apps/{appId}/ws`, frames = proto JSON of nexxus.v1.ClientFrame /
 * ServerFrame, see docs/websocket.md).
 *
 *   const client = new NexxusClient({ baseUrl: "http://127.0.0.1:8000", appId: "my-app" });
 *   await client.login("alice", "secret");
 *   await client.registerDevice("browser");          // events need a device-bound token
 *   const off = client.subscribe({ model: "task", filter: { status: { eq: "todo" } } },
 *                                (event) => console.log(event.kind, event.objectId));
 *   await client.createObject("task", { title: "hello", status: "todo" });
 *   off();
 *
 * The WebSocket reconnects with exponential backoff (full jitter), re-sends
 * its subscriptions and resumes from the position of the last event it
 * delivered: what was committed meanwhile arrives, in order, nothing twice
 * (duplicates are dropped by event id). When the server cannot resume from
 * there (too old, or another epoch) the client emits "gap", then "snapshot"
 * pages (the objects the subscriptions match now: replace what you show),
 * then "resumed". An access token that expires is refreshed (`getToken`, or
 * the refresh token with `autoRefreshToken`) and the stream resumes.
 */

/** @typedef {{[key: string]: any}} Json */
/** @typedef {{op: string, path: string[], value?: any[]}} JsonPatchOperation */
/**
 * @typedef {{id: string, model: string, ownerId?: string, version: string,
 *   data?: Json, createTime?: string, updateTime?: string}} NexxusObject
 */
/**
 * @typedef {{eventId: string, operationId?: string,
 *   kind: "EVENT_KIND_CREATED"|"EVENT_KIND_UPDATED"|"EVENT_KIND_DELETED"|"EVENT_KIND_ENTERED"|"EVENT_KIND_LEFT",
 *   model: string, objectId: string, version: string, object?: NexxusObject,
 *   patch?: JsonPatchOperation[], subscriptionIds?: string[], time?: string, position?: string}} NexxusEvent
 */
/**
 * @typedef {{id: string, model: string, userId?: string, objectId?: string, filter?: Json,
 *   deviceId?: string, persistent?: boolean}} Subscription
 */
/** @typedef {{model: string, userId?: string, objectId?: string, filter?: Json, persistent?: boolean}} SubscribeOptions */
/** @typedef {"idle"|"connecting"|"open"|"reconnecting"|"closed"} ConnectionState */
/**
 * @typedef {object} ClientOptions
 * @property {string} baseUrl  Envoy's address, e.g. "http://127.0.0.1:8000" ("" = same origin in a browser)
 * @property {string} appId
 * @property {string} [token]  an access token (device-bound for events)
 * @property {string} [wsUrl]  override the WebSocket base URL (default: baseUrl with ws:// / wss://)
 * @property {number} [heartbeatSeconds]  server heartbeat interval requested (default 15)
 * @property {number} [backoffInitialMs]  first reconnection delay bound (default 250)
 * @property {number} [backoffMaxMs]  largest reconnection delay (default 10000)
 * @property {typeof fetch} [fetch]
 * @property {any} [WebSocket]  a WebSocket constructor (default: globalThis.WebSocket, else the `ws` package)
 * @property {() => Promise<string>} [getToken]  returns a fresh access token when the current one expired
 * @property {string} [refreshToken]  used to refresh the access token (kept up to date by login())
 * @property {boolean} [autoRefreshToken]  refresh with the refresh token when no getToken (default true)
 */
/**
 * @typedef {(() => void) & {ready: Promise<Subscription>}} Unsubscribe
 *   Call to unsubscribe; `ready` resolves with the server's subscription
 *   (after the first `subscribed` reply) or rejects with its error.
 */

const GRPC_CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/** Close codes after which reconnecting cannot help (docs/websocket.md). */
const FATAL_CLOSE_CODES = new Set([4401, 4403, 4404, 4412, 4400]);
/** event ids remembered to drop duplicates after a resume */
const SEEN_EVENTS = 10000;

/** An error from the server (REST status, WebSocket error frame or close). */
export class NexxusError extends Error {
  /**
   * @param {string} code  a google.rpc.Code name, e.g. "INVALID_ARGUMENT"
   * @param {string} message
   * @param {{details?: Json, status?: number, closeCode?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(`${code}: ${message}`);
    this.name = "NexxusError";
    this.code = code;
    this.serverMessage = message;
    /** @type {Json} */
    this.details = extra.details ?? {};
    /** HTTP status of a REST error (0 otherwise). */
    this.status = extra.status ?? 0;
    /** WebSocket close code, when the server closed the connection. */
    this.closeCode = extra.closeCode ?? 0;
  }
}

/** @param {string} op @param {string|string[]} path @param {any} [value] @returns {JsonPatchOperation} */
export function patch(op, path, value) {
  const paths = typeof path === "string" ? [path] : path;
  if (value === undefined) return { op, path: paths };
  return { op, path: paths, value: typeof path === "string" ? [value] : value };
}

/** @returns {Promise<any>} the WebSocket constructor of this runtime */
async function defaultWebSocket() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  const mod = await import("ws"); // Node 20 has no global WebSocket
  return mod.WebSocket ?? mod.default;
}

/** Local state of one `subscribe()` call, kept across reconnections. */
class LocalSubscription {
  /** @param {number} key @param {SubscribeOptions} options @param {(e: NexxusEvent) => void} onEvent */
  constructor(key, options, onEvent) {
    this.key = key;
    this.options = options;
    this.onEvent = onEvent;
    /** the server's id on the current connection */
    this.serverId = "";
    this.active = true;
    /** @type {(s: Subscription) => void} */
    this.resolve = () => {};
    /** @type {(e: Error) => void} */
    this.reject = () => {};
    /** @type {Promise<Subscription>} */
    this.ready = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.ready.catch(() => {}); // observed through `ready` or the "error" listeners
  }
}

export class NexxusClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    this.baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
    this.appId = options.appId;
    this.token = options.token ?? "";
    this.getToken = options.getToken;
    this.refreshToken = options.refreshToken ?? "";
    this.autoRefreshToken = options.autoRefreshToken ?? true;
    /** the position of the last event delivered: where a reconnection resumes */
    this.position = "";
    /** events dropped because they had been delivered already */
    this.duplicates = 0;
    /** @type {Set<string>} */
    this._seen = new Set();
    /** @type {string[]} */
    this._seenOrder = [];
    this._refreshing = false;
    this.heartbeatSeconds = options.heartbeatSeconds ?? 15;
    this.backoffInitialMs = options.backoffInitialMs ?? 250;
    this.backoffMaxMs = options.backoffMaxMs ?? 10000;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._WebSocketOption = options.WebSocket;
    this._wsUrl = options.wsUrl;
    /** @type {ConnectionState} */
    this.state = "idle";
    /** how many times the WebSocket reached `ready` */
    this.connections = 0;
    /** @type {any} */
    this._ws = null;
    this._nextId = 1;
    this._attempt = 0;
    /** @type {Map<number, LocalSubscription>} */
    this._subs = new Map();
    /** @type {Map<string, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<(arg: any) => void>>} */
    this._listeners = new Map();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._idleTimer = undefined;
    /** @type {Promise<void> | null} */
    this._opening = null;
    /** @type {NexxusError | undefined} the last unsolicited error frame (explains a close) */
    this._lastError = undefined;
  }

  // ------------------------------------------------------------------ events

  /**
   * Listens to "event" (every NexxusEvent), "ready" (StreamReady), "state"
   * (ConnectionState), "subscribed" (a Subscription made or re-made after a
   * reconnection), "gap" (a resume came too late: {requestedPosition, reason}),
   * "snapshot" (a page of the objects a subscription matches now, after a gap:
   * {subscriptionId, objects, done, position}), "resumed" (caught up after a
   * reconnection: {position, replayed}), "heartbeat", "error" (NexxusError not
   * tied to a call).
   * @param {"event"|"ready"|"state"|"subscribed"|"gap"|"snapshot"|"resumed"|"heartbeat"|"error"} name
   * @param {(arg: any) => void} listener
   * @returns {() => void} removes the listener
   */
  on(name, listener) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** @param {string} name @param {any} arg */
  _emit(name, arg) {
    for (const listener of this._listeners.get(name) ?? []) {
      try {
        listener(arg);
      } catch (err) {
        console.error("nexxus: listener failed", err);
      }
    }
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  // ------------------------------------------------------------------ REST

  /**
   * One REST call through Envoy's transcoder.
   * @param {string} method @param {string} path  after `/v1/apps/{appId}`
   * @param {Json} [body] @returns {Promise<any>}
   */
  async request(method, path, body) {
    const url = `${this.baseUrl}/v1/apps/${encodeURIComponent(this.appId)}${path}`;
    /** @type {Record<string, string>} */
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const resp = await this._fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    /** @type {any} */
    let json = {};
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = { message: text };
      }
    }
    const grpcStatus = resp.headers.get("grpc-status");
    if (!resp.ok || (grpcStatus && grpcStatus !== "0")) {
      const num = typeof json.code === "number" ? json.code : Number(grpcStatus ?? 2);
      const code = typeof json.code === "string" ? json.code : GRPC_CODES[num] ?? "UNKNOWN";
      const headerMessage = resp.headers.get("grpc-message");
      const message = json.message || (headerMessage ? decodeURIComponent(headerMessage) : resp.statusText);
      /** @type {Json} */
      const details = {};
      for (const d of Array.isArray(json.details) ? json.details : []) {
        if (d && typeof d === "object") Object.assign(details, d.metadata ?? {}, d.reason ? { reason: d.reason } : {});
      }
      throw new NexxusError(code, message, { status: resp.status, details });
    }
    return json;
  }

  /** @param {string} username @param {string} password @param {{email?: string, displayName?: string}} [extra] */
  async registerUser(username, password, extra = {}) {
    return (await this.request("POST", "/users", { username, password, ...extra })).user;
  }

  /**
   * Logs in and keeps the access token.
   * @param {string} login @param {string} password @param {{deviceId?: string}} [extra]
   * @returns {Promise<{user: Json, tokens: {accessToken: string, refreshToken?: string}}>}
   */
  async login(login, password, extra = {}) {
    const resp = await this.request("POST", "/auth:login", { login, password, ...extra });
    this._takeTokens(resp.tokens);
    return resp;
  }

  /** @param {{accessToken: string, refreshToken?: string} | undefined} tokens */
  _takeTokens(tokens) {
    if (!tokens) return;
    this.token = tokens.accessToken;
    if (tokens.refreshToken) this.refreshToken = tokens.refreshToken;
  }

  /**
   * A fresh access token from `getToken`, else the refresh token; the client uses it from now on.
   * @returns {Promise<string>}
   */
  async refreshAccessToken() {
    if (this.getToken) {
      this.token = await this.getToken();
      return this.token;
    }
    if (!this.autoRefreshToken || !this.refreshToken) {
      throw new NexxusError("UNAUTHENTICATED", "the access token expired and cannot be refreshed");
    }
    const resp = await this.request("POST", "/auth:refresh", { refreshToken: this.refreshToken });
    this._takeTokens(resp.tokens);
    return this.token;
  }

  /**
   * Registers a device for the logged-in user and keeps its device-bound token.
   * @param {string} name @param {{platform?: string, transport?: string}} [extra]
   * @returns {Promise<{device: Json, tokens: {accessToken: string}}>}
   */
  async registerDevice(name, extra = {}) {
    const resp = await this.request("POST", "/devices", { name, platform: "web", ...extra });
    this._takeTokens(resp.tokens);
    return resp;
  }

  /** @param {string} model */
  _objects(model) {
    return `/models/${encodeURIComponent(model)}/objects`;
  }

  /**
   * @param {string} model @param {Json} data @param {{objectId?: string, wait?: boolean}} [opts]
   * @returns {Promise<{operation: Json, object?: NexxusObject}>}
   */
  createObject(model, data, opts = {}) {
    return this.request("POST", this._objects(model), { data, objectId: opts.objectId ?? "", wait: opts.wait ?? true });
  }

  /** @param {string} model @param {string} objectId @returns {Promise<NexxusObject>} */
  async getObject(model, objectId) {
    return (await this.request("GET", `${this._objects(model)}/${encodeURIComponent(objectId)}`)).object;
  }

  /**
   * @param {string} model @param {string} objectId
   * @param {JsonPatchOperation[]} ops  e.g. [patch("replace", "status", "done")]
   * @param {{expectedVersion?: number, wait?: boolean}} [opts]
   * @returns {Promise<{operation: Json, object?: NexxusObject}>}
   */
  updateObject(model, objectId, ops, opts = {}) {
    return this.request("PATCH", `${this._objects(model)}/${encodeURIComponent(objectId)}`, {
      patch: ops,
      expectedVersion: String(opts.expectedVersion ?? 0),
      wait: opts.wait ?? true,
    });
  }

  /** @param {string} model @param {string} objectId @returns {Promise<{operation: Json}>} */
  deleteObject(model, objectId) {
    return this.request("DELETE", `${this._objects(model)}/${encodeURIComponent(objectId)}?wait=true`);
  }

  /**
   * @param {string} model
   * @param {{filter?: Json, sort?: {field: string, descending?: boolean}[], pageSize?: number, pageToken?: string}} [opts]
   * @returns {Promise<{objects: NexxusObject[], nextPageToken?: string}>}
   */
  async search(model, opts = {}) {
    const resp = await this.request("POST", `${this._objects(model)}:search`, opts);
    return { objects: resp.objects ?? [], nextPageToken: resp.nextPageToken };
  }

  /** @param {SubscribeOptions} opts @returns {Promise<Subscription>} a subscription over REST (events come on the socket) */
  async createSubscription(opts) {
    return (await this.request("POST", "/subscriptions", { ...opts })).subscription;
  }

  /** @returns {Promise<Subscription[]>} */
  async listSubscriptions() {
    return (await this.request("GET", "/subscriptions")).subscriptions ?? [];
  }

  /** @param {string} subscriptionId */
  async deleteSubscription(subscriptionId) {
    await this.request("DELETE", `/subscriptions/${encodeURIComponent(subscriptionId)}`);
  }

  // ------------------------------------------------------------------ WebSocket

  _socketUrl() {
    let base = this._wsUrl ?? this.baseUrl;
    if (!base && typeof location !== "undefined") base = location.origin;
    base = base.replace(/^http(s?):\/\//, "ws$1://").replace(/\/+$/, "");
    return `${base}/v1/apps/${encodeURIComponent(this.appId)}/ws?heartbeat_seconds=${this.heartbeatSeconds}`;
  }

  /**
   * Opens the WebSocket (subscribe() does it on demand) and resolves once the
   * server sent `ready`.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closed") this.state = "idle";
    if (!this._opening) {
      this._opening = new Promise((resolve, reject) => {
        const off = this.on("ready", () => {
          off();
          offErr();
          resolve();
        });
        const offErr = this.on("error", (err) => {
          if (this.state === "closed") {
            off();
            offErr();
            reject(err);
          }
        });
      });
      this._opening.catch(() => {});
      if (this.state === "idle") this._open();
    }
    const opening = this._opening;
    return opening;
  }

  async _open() {
    clearTimeout(this._retryTimer);
    this._setState(this.connections === 0 && this._attempt === 0 ? "connecting" : "reconnecting");
    /** @type {any} */
    let ws;
    try {
      const WS = this._WebSocketOption ?? (await defaultWebSocket());
      ws = new WS(this._socketUrl());
    } catch (err) {
      this._emit("error", new NexxusError("UNAVAILABLE", String(err)));
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._send({ id: this._id(), auth: { accessToken: this.token } });
      this._touch();
    };
    ws.onmessage = (/** @type {{data: any}} */ msg) => {
      if (this._ws !== ws) return;
      this._touch();
      let frame;
      try {
        frame = JSON.parse(typeof msg.data === "string" ? msg.data : String(msg.data));
      } catch {
        this._emit("error", new NexxusError("INTERNAL", "server sent invalid JSON"));
        return;
      }
      this._onFrame(frame);
    };
    ws.onerror = () => {}; // onclose follows and decides
    ws.onclose = (/** @type {{code: number, reason: string}} */ ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      clearTimeout(this._idleTimer);
      this._failPending(new NexxusError("UNAVAILABLE", "connection closed", { closeCode: ev.code }));
      for (const sub of this._subs.values()) sub.serverId = "";
      if (this.state === "closed") return;
      const expired = ev.code === 4401 && this._lastError?.details?.reason === "TOKEN_EXPIRED";
      if (expired && !this._refreshing && (this.getToken || (this.autoRefreshToken && this.refreshToken))) {
        // The access token expired on a long stream: refresh it, then resume.
        this._refreshing = true;
        this.refreshAccessToken().then(
          () => this._scheduleReconnect(),
          (/** @type {any} */ err) => {
            this._setState("closed");
            this._opening = null;
            this._emit("error", err);
          },
        );
        return;
      }
      if (FATAL_CLOSE_CODES.has(ev.code)) {
        const err = this._lastError ?? new NexxusError("UNAUTHENTICATED", ev.reason || "closed by server");
        err.closeCode = ev.code;
        this._setState("closed");
        this._opening = null;
        this._emit("error", err);
        for (const sub of this._subs.values()) sub.reject(err);
        return;
      }
      this._scheduleReconnect();
    };
  }

  _scheduleReconnect() {
    if (this.state === "closed") return;
    this._setState("reconnecting");
    const bound = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** this._attempt);
    this._attempt += 1;
    this._retryTimer = setTimeout(() => this._open(), Math.random() * bound);
  }

  /** A connection with no frame for two heartbeat periods is dead: drop it and reconnect. */
  _touch() {
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => {
      const ws = this._ws;
      if (!ws) return;
      this._ws = null;
      try {
        ws.close(4000, "heartbeat timeout");
      } catch {
        // already closing
      }
      this._failPending(new NexxusError("UNAVAILABLE", "heartbeat timeout"));
      for (const sub of this._subs.values()) sub.serverId = "";
      this._scheduleReconnect();
    }, (this.heartbeatSeconds * 2 + 5) * 1000);
  }

  _id() {
    return String(this._nextId++);
  }

  /** @param {Json} frame */
  _send(frame) {
    this._ws?.send(JSON.stringify(frame));
  }

  /** @param {Json} frame @returns {Promise<any>} the reply frame */
  _call(frame) {
    const id = this._id();
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._send({ id, ...frame });
    });
  }

  /** @param {Error} err */
  _failPending(err) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(err);
  }

  /** @param {Json} frame */
  _onFrame(frame) {
    if (frame.error) {
      const e = frame.error;
      const err = new NexxusError(e.code ?? "UNKNOWN", e.message ?? "", { details: e.details ?? {} });
      const pending = frame.replyTo ? this._pending.get(frame.replyTo) : undefined;
      if (pending) {
        this._pending.delete(frame.replyTo);
        pending.reject(err);
      } else {
        this._lastError = err; // a close usually follows
        this._emit("error", err);
      }
      return;
    }
    if (frame.ready) {
      this._lastError = undefined;
      this._attempt = 0;
      this._refreshing = false;
      this.connections += 1;
      this._setState("open");
      this._opening = null;
      const resumeFrom = this.position;
      if (!this.position) this.position = frame.ready.position ?? "";
      // Re-make the subscriptions, then resume: the missed events are matched
      // against them (the server holds live events meanwhile).
      const made = [...this._subs.values()].map((sub) => this._sendSubscribe(sub));
      this._emit("ready", frame.ready);
      if (resumeFrom) {
        Promise.all(made).then(() => {
          this._call({ resume: { position: resumeFrom } }).catch((/** @type {any} */ err) => {
            if (err.code !== "UNAVAILABLE") this._emit("error", err);
          });
        });
      }
      return;
    }
    if (frame.gap) {
      this._emit("gap", frame.gap);
      return;
    }
    if (frame.snapshot) {
      if (frame.snapshot.position) this.position = frame.snapshot.position;
      this._emit("snapshot", frame.snapshot);
      return;
    }
    if (frame.resumed) {
      if (frame.resumed.position) this.position = frame.resumed.position;
      this._emit("resumed", frame.resumed);
      const pending = frame.replyTo ? this._pending.get(frame.replyTo) : undefined;
      if (pending) {
        this._pending.delete(frame.replyTo);
        pending.resolve(frame);
      }
      return;
    }
    if (frame.event) {
      /** @type {NexxusEvent} */
      const event = frame.event;
      if (this._seen.has(event.eventId)) {
        this.duplicates += 1;
        return;
      }
      this._seen.add(event.eventId);
      this._seenOrder.push(event.eventId);
      if (this._seenOrder.length > SEEN_EVENTS) this._seen.delete(/** @type {string} */ (this._seenOrder.shift()));
      if (event.position) this.position = event.position;
      const ids = new Set(event.subscriptionIds ?? []);
      for (const sub of this._subs.values()) {
        if (sub.active && sub.serverId && ids.has(sub.serverId)) {
          try {
            sub.onEvent(event);
          } catch (err) {
            console.error("nexxus: event callback failed", err);
          }
        }
      }
      this._emit("event", event);
      return;
    }
    if (frame.heartbeat) {
      this._emit("heartbeat", frame.heartbeat);
      return;
    }
    const pending = frame.replyTo ? this._pending.get(frame.replyTo) : undefined;
    if (pending) {
      this._pending.delete(frame.replyTo);
      pending.resolve(frame);
    }
  }

  /** @param {LocalSubscription} sub */
  _sendSubscribe(sub) {
    return this._call({ subscribe: sub.options }).then(
      (reply) => {
        /** @type {Subscription} */
        const s = reply.subscribed.subscription;
        if (!sub.active) {
          this._send({ id: this._id(), unsubscribe: { subscriptionId: s.id } });
          return;
        }
        sub.serverId = s.id;
        sub.resolve(s);
        this._emit("subscribed", s);
      },
      (err) => {
        if (err.code === "UNAVAILABLE") return; // connection lost: re-sent after reconnecting
        sub.active = false;
        this._subs.delete(sub.key);
        sub.reject(err);
        this._emit("error", err);
      },
    );
  }

  /**
   * Subscribes to live events; opens the WebSocket if needed. The
   * subscription is re-created after every reconnection.
   * @param {SubscribeOptions} options
   * @param {(event: NexxusEvent) => void} onEvent
   * @returns {Unsubscribe}
   */
  subscribe(options, onEvent) {
    const sub = new LocalSubscription(this._nextId++, { ...options }, onEvent);
    this._subs.set(sub.key, sub);
    if (this.state === "open") this._sendSubscribe(sub);
    else this.connect().catch(() => {});
    const unsubscribe = () => {
      if (!sub.active) return;
      sub.active = false;
      this._subs.delete(sub.key);
      if (sub.serverId && this.state === "open") {
        this._call({ unsubscribe: { subscriptionId: sub.serverId } }).catch(() => {});
      }
    };
    return Object.assign(unsubscribe, { ready: sub.ready });
  }

  /**
   * Round trip over the socket.
   * @param {Json} [payload] @returns {Promise<Json>} the pong's payload
   */
  async ping(payload = {}) {
    await this.connect();
    const reply = await this._call({ ping: { payload } });
    return reply.pong?.payload ?? {};
  }

  /** Closes the WebSocket for good (no reconnection). */
  close() {
    this._setState("closed");
    clearTimeout(this._retryTimer);
    clearTimeout(this._idleTimer);
    this._opening = null;
    const ws = this._ws;
    this._ws = null;
    this._failPending(new NexxusError("CANCELLED", "client closed"));
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closed
      }
    }
  }
}
