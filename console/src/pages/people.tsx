import { useEffect, useState } from "preact/hooks";
import type { Device, User } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, Section, useAction, when } from "../ui";

/** Users and devices of the chosen application; revoking either closes its connections. */
export function PeoplePage({ api, appId }: PageProps) {
  const [users, setUsers] = useState<User[]>([]);
  const [devices, setDevices] = useState<Device[]>([]);
  const [owner, setOwner] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, error, run] = useAction();

  const load = () =>
    run(async () => {
      if (!appId) return;
      const [u, d] = await Promise.all([
        api.call<{ users?: User[] }>("GET", `/v1/admin/apps/${appId}/users`, undefined, { pageSize: "1000" }),
        api.call<{ devices?: Device[] }>("GET", `/v1/admin/apps/${appId}/devices`, undefined, {
          pageSize: "1000",
          ...(owner ? { ownerId: owner } : {}),
        }),
      ]);
      setUsers(u.users ?? []);
      setDevices(d.devices ?? []);
    });
  useEffect(() => {
    setNotice("");
    void load();
  }, [appId, owner]);

  const names = new Map(users.map((u) => [u.id, u.username || u.email || u.id]));
  const revokeUser = (u: User) =>
    run(async () => {
      if (!confirm(`Revoke every token of ${u.username || u.id}?`)) return;
      await api.call("POST", `/v1/admin/apps/${appId}/users/${u.id}:revoke`, {});
      setNotice(`${u.username || u.id}: every token revoked, connections closed.`);
    });
  const revokeDevice = (d: Device) =>
    run(async () => {
      if (!confirm(`Revoke device ${d.name || d.id}? It is deleted with its subscriptions.`)) return;
      await api.call("POST", `/v1/admin/apps/${appId}/devices/${d.id}:revoke`, {});
      setNotice(`Device ${d.name || d.id} revoked.`);
      await load();
    });

  if (!appId) return <Section title="Users & devices">Choose or create an application first.</Section>;
  return (
    <>
      <ErrorNote error={error} />
      {notice ? <div class="notice">{notice}</div> : null}
      <Section title={`Users of ${appId}`} actions={<button onClick={load} disabled={busy}>Refresh</button>}>
        <table class="grid" id="users">
          <thead>
            <tr>
              <th>username</th>
              <th>e-mail</th>
              <th>id</th>
              <th>created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr data-user={u.id}>
                <td>{u.username}</td>
                <td>{u.email}</td>
                <td>
                  <code>{u.id}</code>
                </td>
                <td>{when(u.createTime)}</td>
                <td class="row-actions">
                  <button onClick={() => setOwner(u.id)}>Devices</button>
                  <button class="danger" onClick={() => revokeUser(u)}>
                    Revoke tokens
                  </button>
                </td>
              </tr>
            ))}
            {users.length === 0 ? (
              <tr>
                <td colSpan={5} class="empty">
                  No user yet.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
      <Section
        title={owner ? `Devices of ${names.get(owner) ?? owner}` : "Devices"}
        actions={owner ? <button onClick={() => setOwner("")}>All devices</button> : null}
      >
        <table class="grid" id="devices">
          <thead>
            <tr>
              <th>name</th>
              <th>user</th>
              <th>platform</th>
              <th>transport</th>
              <th>id</th>
              <th>created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {devices.map((d) => (
              <tr data-device={d.id}>
                <td>{d.name}</td>
                <td>{names.get(d.userId) ?? d.userId}</td>
                <td>{d.platform}</td>
                <td>{d.transport}</td>
                <td>
                  <code>{d.id}</code>
                </td>
                <td>{when(d.createTime)}</td>
                <td class="row-actions">
                  <button class="danger" onClick={() => revokeDevice(d)}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
            {devices.length === 0 ? (
              <tr>
                <td colSpan={7} class="empty">
                  No device.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Section>
    </>
  );
}
