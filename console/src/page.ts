import type { Api, Application } from "./api";

/** What every page of the console gets: the signed-in API and the chosen application. */
export interface PageProps {
  api: Api;
  appId: string;
  apps: Application[];
  refreshApps: () => Promise<void>;
  chooseApp: (id: string) => void;
}
