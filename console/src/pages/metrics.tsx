import { useEffect, useRef, useState } from "preact/hooks";
import type { PageProps } from "../page";
import { FIGURES, type Sample, parsePrometheus } from "../prometheus";
import { ErrorNote, Section } from "../ui";

const POLL_MS = 2000;
const POINTS = 60;

interface ServiceState {
  name: string;
  role: string;
  url: string;
  ready: boolean;
  checks: Record<string, boolean>;
  error: string;
}

interface Point {
  at: number;
  values: Record<string, number>; // figure id → raw reading (counter totals, gauges)
}

function Sparkline({ points, unit }: { points: number[]; unit: string }) {
  const w = 220;
  const h = 46;
  const finite = points.filter(Number.isFinite);
  const max = Math.max(1e-9, ...finite);
  const step = points.length > 1 ? w / (POINTS - 1) : 0;
  const offset = w - step * (points.length - 1);
  const coords = points
    .map((v, i) => (Number.isFinite(v) ? `${(offset + i * step).toFixed(1)},${(h - 3 - (v / max) * (h - 8)).toFixed(1)}` : null))
    .filter(Boolean)
    .join(" ");
  return (
    <svg class="spark" viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={`max ${max.toFixed(2)} ${unit}`}>
      <line x1="0" y1={h - 3} x2={w} y2={h - 3} class="axis" />
      {coords ? <polyline points={coords} /> : null}
    </svg>
  );
}

const show = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? "–" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);

/** The services' metrics as small charts (counters as rates), and each process's readiness. */
export function MetricsPage({ api, appId }: PageProps) {
  const [history, setHistory] = useState<Point[]>([]);
  const [services, setServices] = useState<ServiceState[]>([]);
  const [onlyApp, setOnlyApp] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [scrapeErrors, setScrapeErrors] = useState<string[]>([]);
  const app = onlyApp ? appId : "";
  const appRef = useRef(app);
  appRef.current = app;

  useEffect(() => {
    setHistory([]);
    let stopped = false;
    const tick = async () => {
      try {
        const [m, s] = await Promise.all([
          api.call<{ services: { name: string; text: string; error: string }[] }>("GET", "/admin/api/metrics"),
          api.call<{ services: ServiceState[] }>("GET", "/admin/api/services"),
        ]);
        if (stopped) return;
        const samples: Sample[] = m.services.flatMap((svc) => parsePrometheus(svc.text));
        const values: Record<string, number> = {};
        for (const f of FIGURES) values[f.id] = f.read(samples, appRef.current);
        setHistory((h) => [...h, { at: Date.now(), values }].slice(-(POINTS + 1)));
        setServices(s.services);
        setScrapeErrors(m.services.filter((x) => x.error).map((x) => `${x.name}: ${x.error}`));
        setError(null);
      } catch (err) {
        if (!stopped) setError(err);
      }
    };
    void tick();
    const timer = setInterval(tick, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [app]);

  const series = (id: string, kind: "rate" | "gauge"): number[] => {
    if (kind === "gauge") return history.map((p) => p.values[id]);
    const out: number[] = [];
    for (let i = 1; i < history.length; i++) {
      const dt = (history[i].at - history[i - 1].at) / 1000;
      const dv = history[i].values[id] - history[i - 1].values[id];
      out.push(dt > 0 && dv >= 0 ? dv / dt : NaN); // a restarted process resets its counters: no point
    }
    return out;
  };

  return (
    <>
      <Section
        title={`Metrics${app ? ` of ${app}` : ""}`}
        actions={
          <label class="check" title="writes and routed events of the chosen application only">
            <input type="checkbox" checked={onlyApp} disabled={!appId} onChange={(e) => setOnlyApp((e.target as HTMLInputElement).checked)} />
            this application only
          </label>
        }
      >
        <ErrorNote error={error} />
        {scrapeErrors.length ? <div class="error">Not scraped: {scrapeErrors.join("; ")}</div> : null}
        <div class="charts" id="charts" data-points={history.length}>
          {FIGURES.map((f) => {
            const points = series(f.id, f.kind);
            const last = points[points.length - 1];
            return (
              <div class="chart" data-figure={f.id} data-value={Number.isFinite(last) ? String(last) : ""}>
                <div class="chart-head">
                  <span>{f.title}</span>
                  <strong>
                    {show(last)}
                    <small> {f.unit}</small>
                  </strong>
                </div>
                <Sparkline points={points} unit={f.unit} />
              </div>
            );
          })}
        </div>
        <p class="muted">
          Every {POLL_MS / 1000} s from each service's <code>/metrics</code>; counters as rates per second, latencies as
          the p95 of the histograms since each process started. Summed over processes.
        </p>
      </Section>
      <Section title="Services">
        <table class="grid" id="services">
          <thead>
            <tr>
              <th>process</th>
              <th>role</th>
              <th>ready</th>
              <th>checks</th>
              <th>observability port</th>
            </tr>
          </thead>
          <tbody>
            {services.map((s) => (
              <tr data-service={s.name} data-ready={String(s.ready)}>
                <td>
                  <strong>{s.name}</strong>
                </td>
                <td>{s.role}</td>
                <td>
                  <span class={`dot ${s.ready ? "alive" : "dead"}`} /> {s.ready ? "ready" : s.error || "not ready"}
                </td>
                <td>
                  {Object.entries(s.checks).map(([k, ok]) => (
                    <span class={`pill ${ok ? "" : "bad"}`}>
                      {ok ? "✓" : "✗"} {k}
                    </span>
                  ))}
                </td>
                <td>
                  <code>{s.url}</code>
                </td>
              </tr>
            ))}
            {services.length === 0 ? (
              <tr>
                <td colSpan={5} class="empty">
                  No service endpoint is known.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
    </>
  );
}
