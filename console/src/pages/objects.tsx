import { useEffect, useState } from "preact/hooks";
import type { ModelSchema, StoredObject } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, JsonArea, Section, parseJson, useAction, when } from "../ui";

const PATCH_EXAMPLE = '[{"op": "replace", "path": ["status"], "value": ["done"]}]';

/** The object browser: FilterQuery search, create, JsonPatch edits, delete. */
export function ObjectsPage({ api, appId }: PageProps) {
  const [models, setModels] = useState<string[]>([]);
  const [model, setModel] = useState("");
  const [filter, setFilter] = useState("");
  const [objects, setObjects] = useState<StoredObject[]>([]);
  const [next, setNext] = useState("");
  const [selected, setSelected] = useState<StoredObject | null>(null);
  const [patch, setPatch] = useState(PATCH_EXAMPLE);
  const [newData, setNewData] = useState('{"title": "Hello"}');
  const [newId, setNewId] = useState("");
  const [searchBusy, searchError, runSearch] = useAction();
  const [patchBusy, patchError, runPatch] = useAction();
  const [createBusy, createError, runCreate] = useAction();

  useEffect(() => {
    setObjects([]);
    setSelected(null);
    if (!appId) return;
    void runSearch(async () => {
      const reply = await api.call<{ schemas?: ModelSchema[] }>("GET", `/v1/apps/${appId}/models`);
      const names = (reply.schemas ?? []).map((s) => s.name);
      setModels(names);
      setModel((m) => (names.includes(m) ? m : (names[0] ?? "")));
    });
  }, [appId]);

  const base = `/v1/apps/${appId}/models/${model}/objects`;
  const search = (pageToken = "") =>
    runSearch(async () => {
      const body: Record<string, unknown> = { pageSize: 50, pageToken };
      const parsed = parseJson(filter, "the filter");
      if (parsed !== undefined) body.filter = parsed;
      const reply = await api.call<{ objects?: StoredObject[]; nextPageToken?: string }>("POST", `${base}:search`, body);
      setObjects((prev) => (pageToken ? [...prev, ...(reply.objects ?? [])] : (reply.objects ?? [])));
      setNext(reply.nextPageToken ?? "");
    });
  useEffect(() => {
    if (model) void search();
  }, [model]);

  const applyPatch = (e: Event) => {
    e.preventDefault();
    if (!selected) return;
    void runPatch(async () => {
      const ops = parseJson(patch, "the patch");
      const reply = await api.call<{ object?: StoredObject }>("PATCH", `${base}/${selected.id}`, {
        patch: Array.isArray(ops) ? ops : [ops],
        wait: true,
      });
      if (reply.object) setSelected(reply.object);
      await search();
    });
  };
  const create = (e: Event) => {
    e.preventDefault();
    void runCreate(async () => {
      const data = parseJson(newData, "the object's data") ?? {};
      const reply = await api.call<{ object?: StoredObject }>("POST", base, { objectId: newId.trim(), data, wait: true });
      setNewId("");
      if (reply.object) setSelected(reply.object);
      await search();
    });
  };
  const remove = (id: string) =>
    runPatch(async () => {
      await api.call("DELETE", `${base}/${id}`, undefined, { wait: "true" });
      setSelected(null);
      await search();
    });

  if (!appId) return <Section title="Objects">Choose or create an application first.</Section>;
  return (
    <>
      <Section title="Search">
        <form
          id="search"
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            void search();
          }}
        >
          <div class="row">
            <label>
              Model{" "}
              <select name="model" value={model} onChange={(e) => setModel((e.target as HTMLSelectElement).value)}>
                {models.map((m) => (
                  <option value={m}>{m}</option>
                ))}
              </select>
            </label>
            <button type="submit" disabled={searchBusy || !model}>
              Search
            </button>
          </div>
          <JsonArea name="filter" rows={3} value={filter} onInput={setFilter} placeholder='FilterQuery, e.g. {"status": {"eq": "todo"}} (empty: every object)' />
        </form>
        <ErrorNote error={searchError} />
        <table class="grid" id="objects">
          <thead>
            <tr>
              <th>id</th>
              <th>version</th>
              <th>data</th>
              <th>updated</th>
            </tr>
          </thead>
          <tbody>
            {objects.map((o) => (
              <tr data-object={o.id} class={o.id === selected?.id ? "selected" : ""} onClick={() => setSelected(o)}>
                <td>
                  <code>{o.id}</code>
                </td>
                <td>{o.version}</td>
                <td class="data">{JSON.stringify(o.data)}</td>
                <td>{when(o.updateTime ?? o.createTime)}</td>
              </tr>
            ))}
            {objects.length === 0 ? (
              <tr>
                <td colSpan={4} class="empty">
                  No object matches.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        {next ? <button onClick={() => search(next)}>More</button> : null}
      </Section>
      <div class="columns">
        <Section title={selected ? `Object ${selected.id}` : "Object"}>
          {selected ? (
            <form id="patch" class="stack" onSubmit={applyPatch}>
              <pre class="object">{JSON.stringify(selected, null, 2)}</pre>
              <label>JsonPatch</label>
              <JsonArea name="patch" rows={4} value={patch} onInput={setPatch} />
              <div class="row">
                <button type="submit" disabled={patchBusy}>
                  Apply patch
                </button>
                <button type="button" class="danger" onClick={() => remove(selected.id)}>
                  Delete
                </button>
              </div>
              <ErrorNote error={patchError} />
            </form>
          ) : (
            <p class="muted">Pick an object in the list to see it and patch it.</p>
          )}
        </Section>
        <Section title="New object">
          <form id="create-object" class="stack" onSubmit={create}>
            <input name="objectId" placeholder="id (optional)" value={newId} onInput={(e) => setNewId((e.target as HTMLInputElement).value)} />
            <JsonArea name="data" rows={5} value={newData} onInput={setNewData} />
            <button type="submit" disabled={createBusy || !model}>
              Create in {model || "…"}
            </button>
            <ErrorNote error={createError} />
          </form>
        </Section>
      </div>
    </>
  );
}
