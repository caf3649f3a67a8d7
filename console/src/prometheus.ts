// Reading the Prometheus text format (0.0.4) of the services' /metrics, and the figures the charts show.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

type Match = (labels: Record<string, string>) => boolean;
const all: Match = () => true;

/** The sum of a metric's samples (over every process and label set that `match` keeps). */
export function total(samples: Sample[], name: string, match: Match = all): number {
  return samples.filter((s) => s.name === name && match(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** The `q` quantile of a histogram (summed over processes), from its cumulative buckets; NaN when empty. */
export function quantile(samples: Sample[], name: string, q: number, match: Match = all): number {
  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !match(s.labels)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const count = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!count) return NaN;
  const rank = q * count;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of sorted) {
    if (c >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      // Linear interpolation inside the bucket, as Prometheus' histogram_quantile does.
      return c === prevCount ? le : prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

/** One chart: how its value is read from a scrape; counters are shown as a rate per second. */
export interface Figure {
  id: string;
  title: string;
  unit: string;
  kind: "rate" | "gauge";
  read: (samples: Sample[], app: string) => number;
}

const forApp = (app: string): Match => (labels) => !app || labels.app === app;

export const FIGURES: Figure[] = [
  { id: "writes-accepted", title: "Writes accepted", unit: "/s", kind: "rate", read: (s, a) => total(s, "nexxus_writes_accepted_total", forApp(a)) },
  { id: "writes-applied", title: "Writes applied", unit: "/s", kind: "rate", read: (s, a) => total(s, "nexxus_writes_applied_total", forApp(a)) },
  { id: "writes-failed", title: "Writes failed", unit: "/s", kind: "rate", read: (s, a) => total(s, "nexxus_writes_failed_total", forApp(a)) },
  { id: "router-events", title: "Events routed", unit: "/s", kind: "rate", read: (s, a) => total(s, "nexxus_router_events_total", forApp(a)) },
  { id: "deliveries", title: "Deliveries (all transports)", unit: "/s", kind: "rate", read: (s) => total(s, "nexxus_deliveries_total") },
  { id: "write-to-push-p95", title: "Write → push p95", unit: "ms", kind: "gauge", read: (s) => quantile(s, "nexxus_write_to_push_seconds", 0.95) * 1000 },
  { id: "router-match-p95", title: "Router match p95", unit: "ms", kind: "gauge", read: (s) => quantile(s, "nexxus_router_match_seconds", 0.95) * 1000 },
  { id: "commit-p95", title: "Writer commit p95", unit: "ms", kind: "gauge", read: (s) => quantile(s, "nexxus_writer_commit_seconds", 0.95) * 1000 },
  { id: "connections", title: "Connections", unit: "", kind: "gauge", read: (s) => total(s, "nexxus_connections") },
  { id: "subscriptions", title: "Subscriptions (on connections)", unit: "", kind: "gauge", read: (s) => total(s, "nexxus_subscriptions") },
  { id: "consumer-lag", title: "Consumer lag (pending)", unit: "msgs", kind: "gauge", read: (s) => total(s, "nexxus_consumer_pending") },
  { id: "stream-messages", title: "Messages in streams", unit: "msgs", kind: "gauge", read: (s) => total(s, "nexxus_stream_messages") },
  { id: "auth-failures", title: "Auth failures", unit: "/s", kind: "rate", read: (s) => total(s, "nexxus_auth_failures_total") },
  { id: "throttled", title: "Throttled", unit: "/s", kind: "rate", read: (s) => total(s, "nexxus_throttled_total") },
  { id: "slow-drops", title: "Slow-consumer drops", unit: "/s", kind: "rate", read: (s) => total(s, "nexxus_slow_consumer_drops_total") },
  {
    id: "errors",
    title: "Database + bus errors",
    unit: "/s",
    kind: "rate",
    read: (s) => total(s, "nexxus_database_errors_total") + total(s, "nexxus_bus_errors_total"),
  },
];
