// The console's calls: Nexxus's REST/JSON API through Envoy (same origin), with the operator key.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: number,
    readonly field: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

interface ErrorBody {
  code?: number;
  message?: string;
  details?: { "@type"?: string; reason?: string; metadata?: Record<string, string> }[];
}

function toError(status: number, body: unknown): ApiError {
  const b = (body && typeof body === "object" ? body : {}) as ErrorBody;
  const info = (b.details ?? []).find((d) => (d["@type"] ?? "").endsWith("google.rpc.ErrorInfo"));
  return new ApiError(
    status,
    b.message ?? (typeof body === "string" && body ? body : `HTTP ${status}`),
    b.code ?? 0,
    info?.metadata?.field ?? "",
    info?.reason ?? "",
  );
}

export class Api {
  constructor(readonly key: string) {}

  headers(): Record<string, string> {
    return { authorization: `Bearer ${this.key}`, "content-type": "application/json" };
  }

  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    params?: Record<string, string>,
  ): Promise<T> {
    const query = params && Object.keys(params).length ? `?${new URLSearchParams(params)}` : "";
    const resp = await fetch(`${path}${query}`, {
      method,
      headers: this.headers(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      /* not JSON: keep the text */
    }
    if (!resp.ok) throw toError(resp.status, parsed);
    return parsed as T;
  }

  /** A transcoded server stream (one JSON object per line) until `signal` aborts it. */
  async stream(
    path: string,
    body: unknown,
    onFrame: (frame: Record<string, unknown>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const resp = await fetch(path, { method: "POST", headers: this.headers(), body: JSON.stringify(body), signal });
    if (!resp.ok || !resp.body) {
      const text = await resp.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep the text */
      }
      throw toError(resp.status, parsed);
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      pending += value;
      let newline = pending.indexOf("\n");
      while (newline >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line) onFrame(JSON.parse(line) as Record<string, unknown>);
        newline = pending.indexOf("\n");
      }
    }
  }
}

// ----------------------------------------------------------------------------- shapes

export interface Application {
  id: string;
  displayName: string;
  optionalAuth: boolean;
  createTime: string;
}

export interface FieldSchema {
  type?: string;
  required?: boolean;
  filterable?: boolean;
  [key: string]: unknown;
}

export interface ModelSchema {
  name: string;
  fields?: Record<string, FieldSchema>;
  [key: string]: unknown;
}

export interface StoredObject {
  id: string;
  model?: string;
  version: string;
  ownerId?: string;
  data: Record<string, unknown>;
  createTime?: string;
  updateTime?: string;
}

export interface User {
  id: string;
  username: string;
  email: string;
  displayName: string;
  createTime: string;
}

export interface Device {
  id: string;
  userId: string;
  name: string;
  platform: string;
  transport: string;
  createTime: string;
}

export interface Subscription {
  id: string;
  model: string;
  userId: string;
  objectId: string;
  filter?: Record<string, unknown> | null;
  deviceId: string;
  persistent: boolean;
}

export interface TransportNode {
  nodeId: string;
  alive: boolean;
  connections?: { appId: string; connectionId: string; deviceId: string; subscriptions?: Subscription[] }[];
}

export interface InspectedEvent {
  eventId: string;
  operationId: string;
  kind: string;
  model: string;
  objectId: string;
  version: string;
  object?: StoredObject | null;
  position: string;
  time?: string;
}

export const kindLabel = (kind: string): string => kind.replace(/^EVENT_KIND_/, "").toLowerCase();
