// Small shared pieces: error display, JSON editing, time formatting.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError } from "./api";

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div class="error" role="alert" data-field={e?.field ?? ""}>
      <strong>{e ? `${e.status}${e.reason ? ` ${e.reason}` : ""}` : "error"}</strong> {message}
      {e?.field ? (
        <span class="error-field">
          {" "}
          at <code>{e.field}</code>
        </span>
      ) : null}
    </div>
  );
}

/** Parses a JSON text area's content, or returns the parse error as an Error. */
export function parseJson(text: string, what: string): unknown {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

export function JsonArea(props: {
  name: string;
  value: string;
  onInput: (value: string) => void;
  rows?: number;
  placeholder?: string;
}) {
  return (
    <textarea
      class="json"
      name={props.name}
      rows={props.rows ?? 8}
      spellcheck={false}
      placeholder={props.placeholder}
      value={props.value}
      onInput={(e) => props.onInput((e.target as HTMLTextAreaElement).value)}
    />
  );
}

export function Section(props: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{props.title}</h2>
        <div class="actions">{props.actions}</div>
      </header>
      {props.children}
    </section>
  );
}

export const when = (iso?: string): string => (iso ? new Date(iso).toLocaleString() : "");

/** Runs an async action, tracking whether it is busy and its error. */
export function useAction(): [boolean, unknown, (fn: () => Promise<void>) => Promise<void>, (e: unknown) => void] {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return [busy, error, run, setError];
}
