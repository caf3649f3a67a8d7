import { useEffect, useState } from "preact/hooks";
import type { ModelSchema } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, JsonArea, Section, parseJson, useAction } from "../ui";

const EXAMPLE = {
  fields: {
    title: { type: "FIELD_TYPE_STRING", required: true },
    status: { type: "FIELD_TYPE_STRING", filterable: true },
  },
};

/** The schema without its defaults (false flags, empty lists and maps), as the server prints every field. */
function prune(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(prune);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const p = prune(v);
      const empty = p === false || p === "" || (Array.isArray(p) && !p.length) || (p && typeof p === "object" && !Object.keys(p).length);
      if (!empty) out[k] = p;
    }
    return out;
  }
  return value;
}

const schemaText = (schema: ModelSchema): string => {
  const { name: _name, ...rest } = schema;
  return JSON.stringify(prune(rest), null, 2);
};

/** Model schemas of the chosen application: view, edit, create; the server's validation errors inline. */
export function ModelsPage({ api, appId }: PageProps) {
  const [schemas, setSchemas] = useState<ModelSchema[]>([]);
  const [model, setModel] = useState("");
  const [text, setText] = useState(JSON.stringify(EXAMPLE, null, 2));
  const [saved, setSaved] = useState("");
  const [loadBusy, loadError, runLoad] = useAction();
  const [busy, error, run] = useAction();

  const load = () =>
    runLoad(async () => {
      if (!appId) return setSchemas([]);
      const reply = await api.call<{ schemas?: ModelSchema[] }>("GET", `/v1/apps/${appId}/models`);
      setSchemas(reply.schemas ?? []);
    });
  useEffect(() => {
    void load();
  }, [appId]);

  const edit = (s: ModelSchema) => {
    setModel(s.name);
    setText(schemaText(s));
    setSaved("");
  };
  const save = (e: Event) => {
    e.preventDefault();
    setSaved("");
    void run(async () => {
      const body = parseJson(text, "the schema") ?? {};
      const reply = await api.call<{ schema: ModelSchema }>("PUT", `/v1/apps/${appId}/models/${model.trim()}`, body);
      setSaved(reply.schema.name);
      setText(schemaText(reply.schema));
      await load();
    });
  };

  if (!appId) return <Section title="Models">Choose or create an application first.</Section>;
  return (
    <>
      <Section title={`Models of ${appId}`} actions={<button onClick={load} disabled={loadBusy}>Refresh</button>}>
        <ErrorNote error={loadError} />
        <table class="grid" id="models">
          <thead>
            <tr>
              <th>model</th>
              <th>fields</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {schemas.map((s) => (
              <tr data-model={s.name} class={s.name === model ? "selected" : ""}>
                <td>
                  <strong>{s.name}</strong>
                </td>
                <td class="fields">
                  {Object.entries(s.fields ?? {}).map(([f, spec]) => (
                    <span class="pill" title={JSON.stringify(spec)}>
                      {f}
                      <small>
                        {String(spec.type ?? "").replace("FIELD_TYPE_", "").toLowerCase()}
                        {spec.required ? " · required" : ""}
                        {spec.filterable ? " · filterable" : ""}
                      </small>
                    </span>
                  ))}
                </td>
                <td class="row-actions">
                  <button onClick={() => edit(s)}>Edit</button>
                </td>
              </tr>
            ))}
            {schemas.length === 0 ? (
              <tr>
                <td colSpan={3} class="empty">
                  No model yet.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
      <Section title={model ? `Schema of ${model}` : "Schema"}>
        <form id="schema" onSubmit={save} class="stack">
          <input name="model" placeholder="model name (a-z, 0-9, _)" value={model} onInput={(e) => setModel((e.target as HTMLInputElement).value)} />
          <JsonArea name="schema" rows={14} value={text} onInput={setText} />
          <div class="row">
            <button type="submit" disabled={busy || !model.trim()}>
              Save schema
            </button>
            {saved ? <span class="ok">Saved {saved}.</span> : null}
          </div>
          <ErrorNote error={error} />
        </form>
      </Section>
    </>
  );
}
