// @ts-check
/**
 * Headless Chromium (playwright-core, Debian's /usr/bin/chromium) loads the
 * demo page through Envoy, for tests/clients/test_browser_demo.py.
 * Line protocol on stdout/stdin:
 *   → "READY"                     the page is live (subscribed)
 *   ← "expect <todo-title>"       the test created that task over REST
 *   → "STEP seen"                 the card appeared in "To do"
 *     (the page's form then adds "<todo-title> (browser)" as "doing")
 *   → "STEP form"                 that card appeared in "Doing"
 *   ← "moved <todo-title>"        the test moved the task to done
 *     (the page then reconnects with a position of another epoch, as if saved
 *     before a server reset: the board shows the gap and reloads from the
 *     snapshot, which removes a card the server does not have)
 *   → "RESULT <json>"             the columns' titles, what the gap showed; exit code 0
 * Usage: node browser-demo.mjs '{"url": ..., "screenshot": ..., "userDataDir": ...}'
 */
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2] ?? "{}");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** @param {string} s */
const say = (s) => process.stdout.write(`${s}\n`);
/** @param {string} prefix */
async function expectLine(prefix) {
  const { value } = await lines.next();
  if (typeof value !== "string" || !value.startsWith(`${prefix} `)) throw new Error(`expected ${prefix}, got ${value}`);
  return value.slice(prefix.length + 1);
}

const context = await chromium.launchPersistentContext(args.userDataDir, {
  executablePath: args.executablePath ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1100, height: 640 },
});
const consoleLines = /** @type {string[]} */ ([]);
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => consoleLines.push(`pageerror: ${err.message}`));
  page.setDefaultTimeout(30000);
  await page.goto(args.url);
  await page.waitForSelector('body[data-state="live"]');
  say("READY");

  const title = await expectLine("expect");
  const todoCard = page.locator('.column[data-status="todo"] .task-card', { hasText: title });
  await todoCard.waitFor();
  say("STEP seen");

  const formTitle = `${title} (browser)`;
  await page.fill('#create input[name="title"]', formTitle);
  await page.selectOption('#create select[name="status"]', "doing");
  await page.selectOption('#create select[name="priority"]', "high");
  await page.click('#create button[type="submit"]');
  await page.locator('.column[data-status="doing"] .task-card', { hasText: formTitle }).waitFor();
  say("STEP form");

  const moved = await expectLine("moved");
  await page.locator('.column[data-status="done"] .task-card', { hasText: moved }).waitFor();
  await page.locator('.column[data-status="todo"] .task-card', { hasText: moved }).waitFor({ state: "detached" });

  // The gap path: a stale card the server does not have, then a resume from a
  // position the server cannot resume from (another epoch).
  await page.evaluate(() => {
    const ghost = document.createElement("li");
    ghost.className = "task-card";
    ghost.setAttribute("data-id", "ghost");
    ghost.innerHTML = '<div class="title">ghost</div>';
    document.querySelector('.column[data-status="todo"] ul')?.append(ghost);
    const client = /** @type {any} */ (window).nexxus;
    client.position = "zzzzzz.7";
    client._ws?.close();
  });
  await page.locator("#log", { hasText: "gap (unknown_epoch)" }).waitFor();
  await page.locator("#log", { hasText: "snapshot loaded" }).waitFor();
  await page.locator(".task-card", { hasText: "ghost" }).waitFor({ state: "detached" });
  await page.waitForSelector('body[data-state="live"]');
  const gapLog = (await page.locator("#log").textContent()) ?? "";
  const gap = {
    shown: gapLog.includes("gap (unknown_epoch): reloading from a snapshot"),
    snapshotLoaded: gapLog.includes("snapshot loaded at"),
    resumed: gapLog.includes("resumed at"),
  };

  /** @type {Record<string, string[]>} */
  const columns = {};
  for (const status of ["todo", "doing", "done"]) {
    columns[status] = await page
      .locator(`.column[data-status="${status}"] .task-card .title`)
      .allTextContents();
  }
  await page.screenshot({ path: args.screenshot, fullPage: true });
  const state = await page.locator("body").getAttribute("data-state");
  const loginVisible = await page.locator("#login").isVisible();
  say(`RESULT ${JSON.stringify({ columns, state, loginVisible, gap, console: consoleLines.filter((l) => !l.startsWith("log")) })}`);
} catch (err) {
  process.stderr.write(`browser-demo failed: ${err}\nconsole:\n${consoleLines.join("\n")}\n`);
  process.exitCode = 1;
} finally {
  await context.close();
}
process.exit(process.exitCode ?? 0);
