import { useState } from "preact/hooks";
import type { Application } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, Section, useAction, when } from "../ui";

/** Applications: list, create (the server key is shown once), delete. */
export function AppsPage({ api, apps, appId, refreshApps, chooseApp }: PageProps) {
  const [newId, setNewId] = useState("");
  const [name, setName] = useState("");
  const [optionalAuth, setOptionalAuth] = useState(false);
  const [created, setCreated] = useState<{ app: Application; serverKey: string; rotated?: boolean } | null>(null);
  const [busy, error, run] = useAction();

  const create = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const reply = await api.call<{ application: Application; serverKey: string }>("POST", "/v1/apps", {
        appId: newId.trim(),
        displayName: name.trim(),
        optionalAuth,
      });
      setCreated({ app: reply.application, serverKey: reply.serverKey });
      setNewId("");
      setName("");
      await refreshApps();
      chooseApp(reply.application.id);
    });
  };
  const rotate = (app: Application) =>
    run(async () => {
      if (!confirm(`Replace the server key of ${app.id}? The current key stops working.`)) return;
      const reply = await api.call<{ serverKey: string }>("POST", `/v1/admin/apps/${app.id}:rotateServerKey`, {});
      setCreated({ app, serverKey: reply.serverKey, rotated: true });
    });
  const remove = (id: string) =>
    run(async () => {
      if (!confirm(`Delete application ${id} with all its data?`)) return;
      await api.call("DELETE", `/v1/apps/${id}`);
      await refreshApps();
    });

  return (
    <>
      <Section title="Applications" actions={<button onClick={() => run(refreshApps)}>Refresh</button>}>
        <table class="grid" id="apps">
          <thead>
            <tr>
              <th>id</th>
              <th>name</th>
              <th>anonymous devices</th>
              <th>created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {apps.map((a) => (
              <tr data-app={a.id} class={a.id === appId ? "selected" : ""}>
                <td>
                  <button class="link" onClick={() => chooseApp(a.id)}>
                    {a.id}
                  </button>
                </td>
                <td>{a.displayName}</td>
                <td>{a.optionalAuth ? "allowed" : "no"}</td>
                <td>{when(a.createTime)}</td>
                <td class="row-actions">
                  <button onClick={() => rotate(a)}>Rotate server key</button>
                  <button class="danger" onClick={() => remove(a.id)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
            {apps.length === 0 ? (
              <tr>
                <td colSpan={5} class="empty">
                  No application yet: create one below.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
      <Section title="New application">
        <form id="create-app" class="inline-form" onSubmit={create}>
          <input name="appId" placeholder="id (a-z, 0-9, -)" value={newId} onInput={(e) => setNewId((e.target as HTMLInputElement).value)} />
          <input name="displayName" placeholder="display name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          <label class="check">
            <input type="checkbox" checked={optionalAuth} onChange={(e) => setOptionalAuth((e.target as HTMLInputElement).checked)} />
            anonymous devices
          </label>
          <button type="submit" disabled={busy}>
            Create
          </button>
        </form>
        <ErrorNote error={error} />
        {created ? (
          <div class="notice" id="server-key">
            {created.rotated ? "The new server key of " : "Application "}
            <strong>{created.app.id}</strong>
            {created.rotated ? "" : " created"}. Its server key is shown <em>once</em>; store it like a password:
            <pre>{created.serverKey}</pre>
          </div>
        ) : null}
      </Section>
    </>
  );
}
