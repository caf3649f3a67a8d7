import { useEffect, useState } from "preact/hooks";
import { Api, type Application } from "./api";
import type { PageProps } from "./page";
import { AppsPage } from "./pages/apps";
import { ConnectionsPage } from "./pages/connections";
import { InspectorPage } from "./pages/inspector";
import { MetricsPage } from "./pages/metrics";
import { ModelsPage } from "./pages/models";
import { ObjectsPage } from "./pages/objects";
import { PeoplePage } from "./pages/people";
import { SignIn } from "./pages/signin";
import { TracesPage } from "./pages/traces";

const KEY = "nexxus.console.operatorKey";
const APP = "nexxus.console.app";

export const PAGES = [
  ["apps", "Applications"],
  ["models", "Models"],
  ["objects", "Objects"],
  ["people", "Users & devices"],
  ["connections", "Connections"],
  ["inspector", "Event inspector"],
  ["metrics", "Metrics & health"],
  ["traces", "Traces"],
] as const;
export type Page = (typeof PAGES)[number][0];

function currentPage(): Page {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0];
  return (PAGES.find(([p]) => p === name)?.[0] ?? "apps") as Page;
}

export function App() {
  const [key, setKey] = useState(() => sessionStorage.getItem(KEY) ?? "");
  const [page, setPage] = useState<Page>(currentPage);
  const [apps, setApps] = useState<Application[]>([]);
  const [appId, setAppId] = useState(() => sessionStorage.getItem(APP) ?? "");
  const api = key ? new Api(key) : null;

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  const refreshApps = async () => {
    if (!api) return;
    const reply = await api.call<{ applications?: Application[] }>("GET", "/v1/admin/apps");
    const list = reply.applications ?? [];
    setApps(list);
    if (!list.some((a) => a.id === appId)) chooseApp(list[0]?.id ?? "");
  };
  useEffect(() => {
    refreshApps().catch(() => undefined);
  }, [key]);

  const chooseApp = (id: string) => {
    setAppId(id);
    sessionStorage.setItem(APP, id);
  };
  const signIn = (k: string) => {
    sessionStorage.setItem(KEY, k);
    setKey(k);
  };
  const signOut = () => {
    sessionStorage.removeItem(KEY);
    setKey("");
    setApps([]);
  };

  if (!api) return <SignIn onSignedIn={signIn} />;

  const ctx: PageProps = { api, appId, apps, refreshApps, chooseApp };
  return (
    <div class="shell" data-page={page}>
      <nav class="sidebar">
        <div class="brand">
          Nexxus <span>console</span>
        </div>
        <label class="app-picker">
          Application
          <select name="app" value={appId} onChange={(e) => chooseApp((e.target as HTMLSelectElement).value)}>
            {apps.length === 0 ? <option value="">(none yet)</option> : null}
            {apps.map((a) => (
              <option value={a.id}>{a.id}</option>
            ))}
          </select>
        </label>
        <ul>
          {PAGES.map(([p, label]) => (
            <li>
              <a href={`#/${p}`} class={p === page ? "active" : ""} data-nav={p}>
                {label}
              </a>
            </li>
          ))}
        </ul>
        <button class="link signout" onClick={signOut}>
          Sign out
        </button>
      </nav>
      <main>
        {page === "apps" && <AppsPage {...ctx} />}
        {page === "models" && <ModelsPage {...ctx} />}
        {page === "objects" && <ObjectsPage {...ctx} />}
        {page === "people" && <PeoplePage {...ctx} />}
        {page === "connections" && <ConnectionsPage {...ctx} />}
        {page === "inspector" && <InspectorPage {...ctx} />}
        {page === "metrics" && <MetricsPage {...ctx} />}
        {page === "traces" && <TracesPage {...ctx} />}
      </main>
    </div>
  );
}
