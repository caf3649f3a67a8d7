// @ts-check
/**
 * Headless Chromium (playwright-core, Debian's /usr/bin/chromium) drives the
 * admin console through Envoy, for tests/clients/test_browser_console.py:
 * sign in with the operator key, create an application and a model (a bad
 * schema first: its error shows inline), watch the event inspector in one tab
 * while another tab writes and patches objects in the object browser, then
 * users, devices and the live connections of a second, prepared application,
 * then the metrics charts with every process's readiness, and one write's trace.
 * A screenshot of every page goes to `args.screenshots`.
 *
 * Prints "STEP <name>" as it goes and "RESULT <json>" at the end (exit code 0).
 * Usage: node console-e2e.mjs '{"url", "operatorKey", "appId", "watched": {"appId", "deviceId", "username"},
 *                               "screenshots", "userDataDir", "executablePath"}'
 */
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2] ?? "{}");
/** @param {string} s */
const say = (s) => process.stdout.write(`${s}\n`);

const GOOD_SCHEMA = {
  fields: {
    title: { type: "FIELD_TYPE_STRING", required: true },
    priority: { type: "FIELD_TYPE_STRING", filterable: true },
  },
};
const BAD_SCHEMA = {
  fields: { title: { type: "FIELD_TYPE_STRING" }, priority: { type: "FIELD_TYPE_INTEGER", enumValues: ["high"] } },
};

const context = await chromium.launchPersistentContext(args.userDataDir, {
  executablePath: args.executablePath ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 800 },
});
const consoleLines = /** @type {string[]} */ ([]);
const failedCalls = /** @type {string[]} */ ([]); // "<status> <method> <path>" of every refused request
context.on("response", (resp) => {
  if (resp.status() >= 400) failedCalls.push(`${resp.status()} ${resp.request().method()} ${new URL(resp.url()).pathname}`);
});

/** @param {import("playwright-core").Page} page @param {string} name */
const shot = (page, name) => page.screenshot({ path: `${args.screenshots}/${name}.png`, fullPage: true });

/** @param {import("playwright-core").Page} page */
async function signIn(page) {
  await page.goto(`${args.url}/admin/`);
  await page.fill('#signin input[name="key"]', args.operatorKey);
  await page.click('#signin button[type="submit"]');
  await page.waitForSelector(".shell");
}

try {
  const page = context.pages()[0] ?? (await context.newPage());
  for (const p of [page]) {
    p.on("console", (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
    p.on("pageerror", (err) => consoleLines.push(`pageerror: ${err.message}`));
  }
  page.setDefaultTimeout(30000);

  // Sign-in: a wrong key is refused on the form, the operator key opens the console.
  await page.goto(`${args.url}/admin/`);
  await page.waitForSelector("#signin");
  await page.fill('#signin input[name="key"]', "not-the-operator-key");
  await page.click('#signin button[type="submit"]');
  const signinError = await page.locator("#signin .error").textContent();
  await shot(page, "01-signin-refused");
  await page.fill('#signin input[name="key"]', args.operatorKey);
  await page.click('#signin button[type="submit"]');
  await page.waitForSelector(".shell");
  say("STEP signed-in");

  // An application: its server key is shown once.
  await page.fill('#create-app input[name="appId"]', args.appId);
  await page.fill('#create-app input[name="displayName"]', "Console test");
  await page.click('#create-app button[type="submit"]');
  const serverKey = (await page.locator("#server-key pre").textContent())?.trim() ?? "";
  await page.locator(`#apps tr[data-app="${args.appId}"]`).waitFor();
  await shot(page, "02-apps");
  say("STEP app");

  // A model: a bad schema's error shows inline with its field, then the good one is saved.
  await page.click('a[data-nav="models"]');
  await page.fill('#schema input[name="model"]', "task");
  await page.fill('#schema textarea[name="schema"]', JSON.stringify(BAD_SCHEMA, null, 2));
  await page.click('#schema button[type="submit"]');
  const schemaError = page.locator("#schema .error");
  await schemaError.waitFor();
  const schemaErrorField = await schemaError.getAttribute("data-field");
  const schemaErrorText = await schemaError.textContent();
  await shot(page, "03-schema-error");
  await page.fill('#schema textarea[name="schema"]', JSON.stringify(GOOD_SCHEMA, null, 2));
  await page.click('#schema button[type="submit"]');
  await page.locator('#models tr[data-model="task"]').waitFor();
  await page.locator("#schema .ok").waitFor();
  await shot(page, "04-models");
  say("STEP model");

  // The inspector watches high-priority tasks in this tab...
  await page.click('a[data-nav="inspector"]');
  await page.locator('#inspect select[name="model"] option[value="task"]').waitFor({ state: "attached" });
  await page.selectOption('#inspect select[name="model"]', "task");
  await page.fill('#inspect textarea[name="filter"]', '{"priority": {"eq": "high"}}');
  await page.click('#inspect button[type="submit"]');
  await page.locator('#inspector-state[data-state="live"]').waitFor();
  say("STEP inspecting");

  // ...while a second tab writes through the object browser.
  const writer = await context.newPage();
  writer.setDefaultTimeout(30000);
  writer.on("pageerror", (err) => consoleLines.push(`pageerror (writer): ${err.message}`));
  await signIn(writer);
  await writer.selectOption('select[name="app"]', args.appId);
  await writer.click('a[data-nav="objects"]');
  await writer.locator('#search select[name="model"] option[value="task"]').waitFor({ state: "attached" });
  for (const [id, priority] of [["t-high", "high"], ["t-low", "low"]]) {
    await writer.fill('#create-object input[name="objectId"]', id);
    await writer.fill('#create-object textarea[name="data"]', JSON.stringify({ title: `Task ${id}`, priority }));
    await writer.click('#create-object button[type="submit"]');
    await writer.locator(`#objects tr[data-object="${id}"]`).waitFor();
  }
  // FilterQuery search: only the high one.
  await writer.fill('#search textarea[name="filter"]', '{"priority": {"eq": "high"}}');
  await writer.click('#search button[type="submit"]');
  await writer.locator('#objects tr[data-object="t-low"]').waitFor({ state: "detached" });
  const searched = await writer.locator("#objects tbody tr[data-object]").evaluateAll((rows) =>
    rows.map((r) => r.getAttribute("data-object")),
  );
  // A JsonPatch edit: a wrong one is refused inline, then the high task goes low (it leaves the filter).
  await writer.click('#objects tr[data-object="t-high"]');
  await writer.fill('#patch textarea[name="patch"]', '[{"op": "replace", "path": ["nope"], "value": [1]}]');
  await writer.click('#patch button[type="submit"]');
  const patchError = writer.locator("#patch .error");
  await patchError.waitFor();
  const patchErrorText = await patchError.textContent();
  await writer.fill('#patch textarea[name="patch"]', '[{"op": "replace", "path": ["priority"], "value": ["low"]}]');
  await writer.click('#patch button[type="submit"]');
  await writer.locator("#patch pre.object", { hasText: '"version": "2"' }).waitFor();
  await shot(writer, "05-objects");
  say("STEP written");

  // The inspector saw the high task's creation and its leaving the filter, each with a position.
  await page.bringToFront();
  await page.locator('#events tr[data-object="t-high"][data-kind="created"]').waitFor();
  await page.locator('#events tr[data-object="t-high"][data-kind="left"]').waitFor();
  const events = await page.locator("#events tbody tr[data-event]").evaluateAll((rows) =>
    rows.map((r) => ({
      objectId: r.getAttribute("data-object"),
      kind: r.getAttribute("data-kind"),
      position: r.querySelector("code.position")?.textContent ?? "",
    })),
  );
  await shot(page, "06-inspector");
  say("STEP inspected");

  // Users and devices of the prepared application.
  await page.selectOption('select[name="app"]', args.watched.appId);
  await page.click('a[data-nav="people"]');
  await page.locator(`#devices tr[data-device="${args.watched.deviceId}"]`).waitFor();
  const users = await page.locator("#users tbody tr[data-user] td:first-child").allTextContents();
  await shot(page, "07-people");

  // Its device's live connection, on its transport node, with its subscription.
  await page.click('a[data-nav="connections"]');
  const connection = page.locator(`.node tr[data-device="${args.watched.deviceId}"]`);
  await connection.waitFor();
  const subscriptions = await connection.locator(".sub").allTextContents();
  const nodes = await page.locator(".node").evaluateAll((ns) => ns.map((n) => n.getAttribute("data-node")));
  await shot(page, "08-connections");
  say("STEP connections");

  // Metrics as small charts, and every process's readiness.
  await page.click('a[data-nav="metrics"]');
  for (const role of ["api", "writer", "router", "transport"]) {
    await page.locator(`#services tr[data-service="${role}"][data-ready="true"]`).waitFor();
  }
  await page.waitForFunction(() => Number(document.querySelector("#charts")?.getAttribute("data-points")) >= 3);
  const figures = Object.fromEntries(
    await page.locator("#charts .chart").evaluateAll((charts) =>
      charts.map((c) => [c.getAttribute("data-figure"), c.getAttribute("data-value")]),
    ),
  );
  await shot(page, "09-metrics");
  say("STEP metrics");

  // One of the console's writes followed from the api through the writer and the router.
  await page.click('a[data-nav="traces"]');
  await page.locator("#traces tbody tr[data-trace]", { hasText: "writer" }).first().click();
  await page.locator('#waterfall .span-row[data-span="router.match"]').waitFor();
  const spans = await page.locator("#waterfall .span-row").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-span")));
  await shot(page, "10-traces");
  say("STEP traces");

  say(
    `RESULT ${JSON.stringify({
      figures,
      spans,
      signinError,
      serverKey,
      schemaErrorField,
      schemaErrorText,
      searched,
      patchErrorText,
      events,
      users,
      subscriptions,
      nodes,
      failedCalls,
      // Refused calls show up as "Failed to load resource" errors too: they are in failedCalls.
      console: consoleLines.filter((l) => !/^(log|debug)|Failed to load resource/.test(l)),
    })}`,
  );
} catch (err) {
  process.stderr.write(`console-e2e failed: ${err}\nconsole:\n${consoleLines.join("\n")}\n`);
  process.exitCode = 1;
} finally {
  await context.close();
}
process.exit(process.exitCode ?? 0);
