import { useState } from "preact/hooks";
import { Api } from "../api";
import { ErrorNote, useAction } from "../ui";

/** Sign in with the operator key (printed by `nexxus dev`, kept in .nexxus/operator.key). */
export function SignIn({ onSignedIn }: { onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await new Api(key.trim()).call("GET", "/v1/admin/apps"); // refused unless it is the operator key
      onSignedIn(key.trim());
    });
  };
  return (
    <div class="signin">
      <form id="signin" class="card" onSubmit={submit}>
        <h1>
          Nexxus <span>console</span>
        </h1>
        <p>Sign in with the operator key (printed by <code>nexxus dev</code>).</p>
        <input
          name="key"
          type="password"
          autocomplete="off"
          placeholder="operator key"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy || !key.trim()}>
          Sign in
        </button>
        <ErrorNote error={error} />
      </form>
    </div>
  );
}
