import { useEffect, useState } from "preact/hooks";
import type { PageProps } from "../page";
import { ErrorNote, Section, useAction } from "../ui";

interface TraceSummary {
  trace_id: string;
  name: string;
  services: string[];
  start_ns: number;
  end_ns: number;
  spans: number;
}

interface Span {
  trace_id: string;
  span_id: string;
  parent_id: string | null;
  name: string;
  service: string;
  start_ns: number;
  end_ns: number;
  attributes: Record<string, unknown>;
}

const PIPELINE = ["api", "writer", "router", "transport"];
const inPipelineOrder = (services: string[]): string[] =>
  [...services].sort((a, b) => (PIPELINE.indexOf(a) + 1 || 99) - (PIPELINE.indexOf(b) + 1 || 99) || a.localeCompare(b));

const ms = (ns: number): string => `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 1)} ms`;

/** Spans in tree order (each after its parent), with their depth. */
function ordered(spans: Span[]): [Span, number][] {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map<string, Span[]>();
  for (const s of spans) {
    const parent = s.parent_id && ids.has(s.parent_id) ? s.parent_id : "";
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const out: [Span, number][] = [];
  const walk = (parent: string, depth: number) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.start_ns - b.start_ns)) {
      out.push([s, depth]);
      walk(s.span_id, depth + 1);
    }
  };
  walk("", 0);
  return out;
}

/** Recent traces across every service, and one trace's spans as a waterfall (write → commit → match → push). */
export function TracesPage({ api }: PageProps) {
  const [traces, setTraces] = useState<TraceSummary[]>([]);
  const [chosen, setChosen] = useState("");
  const [spans, setSpans] = useState<Span[]>([]);
  const [busy, error, run] = useAction();

  const load = () =>
    run(async () => {
      const reply = await api.call<{ traces: TraceSummary[] }>("GET", "/admin/api/traces", undefined, { limit: "50" });
      setTraces(reply.traces);
    });
  const open = (id: string) =>
    run(async () => {
      setChosen(id);
      const reply = await api.call<{ spans: Span[] }>("GET", `/admin/api/traces/${id}`);
      setSpans(reply.spans);
    });
  useEffect(() => {
    void load();
  }, []);

  const start = Math.min(...spans.map((s) => s.start_ns));
  const end = Math.max(...spans.map((s) => s.end_ns));
  const width = Math.max(1, end - start);
  return (
    <>
      <ErrorNote error={error} />
      <Section title="Recent traces" actions={<button onClick={load} disabled={busy}>Refresh</button>}>
        <table class="grid" id="traces">
          <thead>
            <tr>
              <th>trace</th>
              <th>root</th>
              <th>services</th>
              <th>spans</th>
              <th>duration</th>
              <th>started</th>
            </tr>
          </thead>
          <tbody>
            {traces.map((t) => (
              <tr data-trace={t.trace_id} class={t.trace_id === chosen ? "selected" : ""} onClick={() => open(t.trace_id)}>
                <td>
                  <code>{t.trace_id.slice(0, 16)}…</code>
                </td>
                <td>{t.name}</td>
                <td>{inPipelineOrder(t.services).join(" → ")}</td>
                <td>{t.spans}</td>
                <td>{ms(t.end_ns - t.start_ns)}</td>
                <td>{new Date(t.start_ns / 1e6).toLocaleTimeString()}</td>
              </tr>
            ))}
            {traces.length === 0 ? (
              <tr>
                <td colSpan={6} class="empty">
                  No trace kept yet: write an object.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
      {chosen ? (
        <Section title={`Trace ${chosen}`}>
          <div class="waterfall" id="waterfall">
            {ordered(spans).map(([s, depth]) => (
              <div class="span-row" data-span={s.name} data-service={s.service}>
                <div class="span-label" style={{ paddingLeft: `${depth * 14}px` }} title={JSON.stringify(s.attributes, null, 1)}>
                  <strong>{s.name}</strong> <small>{s.service}</small>
                </div>
                <div class="span-track">
                  <div
                    class={`span-bar ${s.service}`}
                    style={{
                      left: `${((s.start_ns - start) / width) * 100}%`,
                      width: `${Math.max(0.5, ((s.end_ns - s.start_ns) / width) * 100)}%`,
                    }}
                  />
                </div>
                <div class="span-ms">{ms(s.end_ns - s.start_ns)}</div>
              </div>
            ))}
          </div>
        </Section>
      ) : null}
    </>
  );
}
