import { useEffect, useState } from "preact/hooks";
import type { Subscription, TransportNode } from "../api";
import type { PageProps } from "../page";
import { ErrorNote, Section } from "../ui";

const describe = (s: Subscription): string =>
  [
    s.model,
    s.userId ? `user ${s.userId}` : "",
    s.objectId ? `object ${s.objectId}` : "",
    s.filter && Object.keys(s.filter).length ? JSON.stringify(s.filter) : "",
    s.persistent ? "persistent" : "",
  ]
    .filter(Boolean)
    .join(" · ");

/** Live connections per transport node, with each connection's subscriptions (refreshed every 2 s). */
export function ConnectionsPage({ api, appId }: PageProps) {
  const [nodes, setNodes] = useState<TransportNode[]>([]);
  const [allApps, setAllApps] = useState(false);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let stopped = false;
    const tick = async () => {
      try {
        const params: Record<string, string> = allApps || !appId ? {} : { appId };
        const reply = await api.call<{ nodes?: TransportNode[] }>("GET", "/v1/admin/connections", undefined, params);
        if (!stopped) {
          setNodes(reply.nodes ?? []);
          setError(null);
        }
      } catch (err) {
        if (!stopped) setError(err);
      }
    };
    void tick();
    const timer = setInterval(tick, 2000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [appId, allApps]);

  const total = nodes.reduce((n, node) => n + (node.connections?.length ?? 0), 0);
  return (
    <Section
      title={`Connections${allApps || !appId ? "" : ` of ${appId}`}: ${total}`}
      actions={
        <label class="check">
          <input type="checkbox" checked={allApps} onChange={(e) => setAllApps((e.target as HTMLInputElement).checked)} />
          every application
        </label>
      }
    >
      <ErrorNote error={error} />
      {nodes.length === 0 ? <p class="muted">No transport node holds a connection.</p> : null}
      {nodes.map((node) => (
        <div class="node" data-node={node.nodeId}>
          <h3>
            <span class={`dot ${node.alive ? "alive" : "dead"}`} /> {node.nodeId}{" "}
            <small>
              {node.alive ? "lease current" : "lease lapsed (being reaped)"} · {node.connections?.length ?? 0} connections
            </small>
          </h3>
          <table class="grid connections">
            <thead>
              <tr>
                <th>app</th>
                <th>device</th>
                <th>connection</th>
                <th>subscriptions</th>
              </tr>
            </thead>
            <tbody>
              {(node.connections ?? []).map((c) => (
                <tr data-connection={c.connectionId} data-device={c.deviceId}>
                  <td>{c.appId}</td>
                  <td>
                    <code>{c.deviceId}</code>
                  </td>
                  <td>
                    <code>{c.connectionId}</code>
                  </td>
                  <td>
                    {(c.subscriptions ?? []).map((s) => (
                      <div class="sub" title={s.id}>
                        {describe(s)}
                      </div>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </Section>
  );
}
