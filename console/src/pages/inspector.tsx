import { useEffect, useRef, useState } from "preact/hooks";
import { type InspectedEvent, type ModelSchema, kindLabel } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, JsonArea, Section, parseJson, when } from "../ui";

const MAX_SHOWN = 500;

/** The live event inspector: events of an app (a model, a filter) as they commit, with their positions. */
export function InspectorPage({ api, appId }: PageProps) {
  const [models, setModels] = useState<string[]>([]);
  const [model, setModel] = useState("");
  const [filter, setFilter] = useState("");
  const [from, setFrom] = useState("");
  const [events, setEvents] = useState<InspectedEvent[]>([]);
  const [state, setState] = useState<"stopped" | "connecting" | "live">("stopped");
  const [lastBeat, setLastBeat] = useState("");
  const [error, setError] = useState<unknown>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => {
    stop();
    setEvents([]);
    if (!appId) return;
    api
      .call<{ schemas?: ModelSchema[] }>("GET", `/v1/apps/${appId}/models`)
      .then((r) => setModels((r.schemas ?? []).map((s) => s.name)))
      .catch(setError);
  }, [appId]);
  useEffect(() => () => abort.current?.abort(), []);

  function stop() {
    abort.current?.abort();
    abort.current = null;
    setState("stopped");
  }
  const start = (e: Event) => {
    e.preventDefault();
    stop();
    setError(null);
    let body: Record<string, unknown>;
    try {
      body = { model, afterPosition: from.trim() };
      const parsed = parseJson(filter, "the filter");
      if (parsed !== undefined) body.filter = parsed;
    } catch (err) {
      setError(err);
      return;
    }
    const controller = new AbortController();
    abort.current = controller;
    setState("connecting");
    api
      .stream(
        `/v1/admin/apps/${appId}/events:inspect`,
        body,
        (frame) => {
          if (controller.signal.aborted) return;
          setState("live");
          if (frame.event) {
            setEvents((prev) => [frame.event as InspectedEvent, ...prev].slice(0, MAX_SHOWN));
          } else if (typeof frame.heartbeat === "string") {
            setLastBeat(frame.heartbeat);
          }
        },
        controller.signal,
      )
      .then(() => {
        if (!controller.signal.aborted) setError(new Error("the server ended the stream"));
      })
      .catch((err: unknown) => {
        if (!controller.signal.aborted) setError(err);
      })
      .finally(() => {
        if (abort.current === controller) {
          abort.current = null;
          setState("stopped");
        }
      });
  };

  if (!appId) return <Section title="Event inspector">Choose or create an application first.</Section>;
  return (
    <>
      <Section title={`Event inspector: ${appId}`}>
        <form id="inspect" class="stack" onSubmit={start}>
          <div class="row">
            <label>
              Model{" "}
              <select name="model" value={model} onChange={(e) => setModel((e.target as HTMLSelectElement).value)}>
                <option value="">(every model)</option>
                {models.map((m) => (
                  <option value={m}>{m}</option>
                ))}
              </select>
            </label>
            <input name="from" placeholder="start after position (default: now)" value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} />
            <button type="submit">{state === "stopped" ? "Watch" : "Restart"}</button>
            <button type="button" onClick={stop} disabled={state === "stopped"}>
              Stop
            </button>
            <span class={`state ${state}`} id="inspector-state" data-state={state}>
              {state}
              {lastBeat && state === "live" ? ` · heartbeat ${when(lastBeat)}` : ""}
            </span>
          </div>
          <JsonArea name="filter" rows={2} value={filter} onInput={setFilter} placeholder='FilterQuery over the model, e.g. {"priority": {"eq": "high"}} (empty: every event)' />
        </form>
        <ErrorNote error={error} />
      </Section>
      <Section title={`Events (${events.length})`} actions={<button onClick={() => setEvents([])}>Clear</button>}>
        <table class="grid" id="events">
          <thead>
            <tr>
              <th>position</th>
              <th>kind</th>
              <th>model</th>
              <th>object</th>
              <th>version</th>
              <th>data</th>
              <th>time</th>
            </tr>
          </thead>
          <tbody>
            {events.map((ev) => (
              <tr data-event={ev.eventId} data-object={ev.objectId} data-kind={kindLabel(ev.kind)}>
                <td>
                  <code class="position">{ev.position}</code>
                </td>
                <td>
                  <span class={`kind ${kindLabel(ev.kind)}`}>{kindLabel(ev.kind)}</span>
                </td>
                <td>{ev.model}</td>
                <td>
                  <code>{ev.objectId}</code>
                </td>
                <td>{ev.version}</td>
                <td class="data">{ev.object ? JSON.stringify(ev.object.data) : ""}</td>
                <td>{when(ev.time)}</td>
              </tr>
            ))}
            {events.length === 0 ? (
              <tr>
                <td colSpan={7} class="empty">
                  {state === "stopped" ? "Press Watch to see events as they are committed." : "Waiting for events…"}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
    </>
  );
}
