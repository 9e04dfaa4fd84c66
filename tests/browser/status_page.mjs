// Drives Debian's Chromium, headless, through the status page of a live rerankd: loads it, waits for
// its first refresh from /status.json, reads what it shows, fills and submits the rerank form
// (without, then with the API key), reads the ranked results, and saves a screenshot. Prints one JSON report on stdout for the Rust test
// (tests/it/status_page.rs) to assert on; exits non-zero when the browser or the page fails.
//
// It speaks the DevTools protocol over Chromium's --remote-debugging-pipe (file descriptors 3 and
// 4): no npm package, no port, nothing to install but the browser.
//
// Usage: node tests/browser/status_page.mjs BASE_URL SCREENSHOT.png \
//   '{"query": ..., "documents": [...], "api_key": ...}'
// The form is submitted twice: without the key (its refusal is reported as withoutKey), then with it.
// Owns: the browser's life and what is read off the page. Must never: assert (the Rust test does),
// or reach anything but BASE_URL.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [baseUrl, screenshotPath, inputJson] = process.argv.slice(2);
if (!baseUrl || !screenshotPath || !inputJson) {
  console.error("usage: status_page.mjs BASE_URL SCREENSHOT.png INPUT_JSON");
  process.exit(2);
}
const input = JSON.parse(inputJson);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 20000;

const profile = mkdtempSync(join(tmpdir(), "rerankd-status-chromium-"));
const browser = spawn(CHROMIUM, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", `--user-data-dir=${profile}`, "--remote-debugging-pipe",
  "--window-size=1280,1000", "about:blank",
], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
let browserLog = "";
browser.stderr.on("data", (chunk) => { browserLog = (browserLog + chunk).slice(-4000); });

// Stops the browser, waits for it to exit (it writes its profile until then), removes the profile.
async function finish(code) {
  browser.removeAllListeners("exit");
  if (browser.exitCode === null && browser.signalCode === null) {
    const exited = new Promise((resolve) => browser.once("exit", resolve));
    browser.kill("SIGKILL");
    await exited;
  }
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
  } catch (error) {
    console.error(`status_page.mjs: leaving ${profile}: ${error.message}`);
  }
  process.exit(code);
}
function fail(message) {
  console.error(`status_page.mjs: ${message}\n--- chromium's stderr (tail) ---\n${browserLog}`);
  finish(1);
}
const deadline = setTimeout(() => fail(`gave up after ${2 * WAIT_MS} ms`), 2 * WAIT_MS);
browser.on("exit", (code) => fail(`chromium exited (${code})`));

// The protocol: JSON messages ended by NUL, commands with ids, events with a method.
const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];
let nextId = 1;
const pending = new Map();
const listeners = [];
let buffered = "";
fromBrowser.on("data", (chunk) => {
  buffered += chunk.toString("utf8");
  let end;
  while ((end = buffered.indexOf("\0")) >= 0) {
    const message = JSON.parse(buffered.slice(0, end));
    buffered = buffered.slice(end + 1);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject, method } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(`${method}: ${JSON.stringify(message.error)}`));
      else resolve(message.result);
    } else if (message.method) {
      for (const listen of listeners) listen(message);
    }
  }
});
function send(method, params = {}, sessionId = undefined) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    toBrowser.write(JSON.stringify({ id, method, params, sessionId }) + "\0");
  });
}
function nextEvent(method, sessionId) {
  return new Promise((resolve) => {
    const listen = (message) => {
      if (message.method === method && message.sessionId === sessionId) {
        listeners.splice(listeners.indexOf(listen), 1);
        resolve(message.params);
      }
    };
    listeners.push(listen);
  });
}

const problems = [];
listeners.push((message) => {
  if (message.method === "Runtime.exceptionThrown") {
    problems.push("exception: " + JSON.stringify(message.params.exceptionDetails.exception?.description
      ?? message.params.exceptionDetails.text));
  } else if (message.method === "Log.entryAdded" && message.params.entry.level === "error") {
    problems.push(`${message.params.entry.source}: ${message.params.entry.text}`);
  } else if (message.method === "Runtime.consoleAPICalled" && message.params.type === "error") {
    problems.push("console.error: " + JSON.stringify(message.params.args.map((a) => a.value)));
  }
});

try {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  await Promise.all([page("Page.enable"), page("Runtime.enable"), page("Log.enable")]);
  await page("Emulation.setDeviceMetricsOverride",
    { width: 1280, height: 1000, deviceScaleFactor: 1, mobile: false });
  // Evaluates `body` (an async function's body) in the page and returns its value.
  const run = async (body, ...args) => {
    const expression = `(async (...args) => { ${body} })(...${JSON.stringify(args)})`;
    const { result, exceptionDetails } = await page("Runtime.evaluate",
      { expression, awaitPromise: true, returnByValue: true });
    if (exceptionDetails) throw new Error(`in the page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
    return result.value;
  };
  // Resolves once `condition` (an expression) holds in the page, checking at each animation frame.
  const waitFor = (condition, what) => run(`
    const until = Date.now() + ${WAIT_MS};
    while (!(${condition})) {
      if (Date.now() > until) throw new Error(${JSON.stringify("timed out waiting for " + what)});
      await new Promise((r) => requestAnimationFrame(r));
    }
    return true;`);

  const loaded = nextEvent("Page.loadEventFired", sessionId);
  const navigation = await page("Page.navigate", { url: baseUrl });
  if (navigation.errorText) throw new Error(`navigating to ${baseUrl}: ${navigation.errorText}`);
  await loaded;
  await waitFor("Number(document.body.dataset.refreshes) >= 1", "the first refresh");

  const shown = await run(`
    const text = (selector, root = document) => root.querySelector(selector)?.textContent ?? null;
    return {
      title: document.title,
      model: text("#model"), devices: text("#devices"), precision: text("#precision"),
      window: text("#window"), state: text("#state"),
      workers: [...document.querySelectorAll(".worker")].map((card) => ({
        device: text(".device", card), budget: text(".budget", card), free: text(".free", card),
        serving: text(".serving", card), charts: card.querySelectorAll("svg").length,
      })),
    };`);
  // The JSON as a client other than the page reads it, right after: nothing else runs meanwhile.
  const json = await (await fetch(new URL("status.json", baseUrl), { cache: "no-store" })).json();

  // Without the key first: the page shows the server's refusal. Then with it. A click runs the
  // form's handler at once up to its fetch, which clears the results and the "bad" mark first.
  const answered = `document.querySelectorAll("#results li").length === ${input.documents.length}
    || document.getElementById("rerank-state").classList.contains("bad")`;
  await run(`
    document.getElementById("query").value = args[0];
    document.getElementById("documents").value = args[1].join("\\n");
    document.querySelector("#rerank button[type=submit]").click();`, input.query, input.documents);
  await waitFor(answered, "the answer without a key");
  const withoutKey = await run(`return document.getElementById("rerank-state").textContent;`);
  await run(`
    document.getElementById("api-key").value = args[0];
    document.querySelector("#rerank button[type=submit]").click();`, input.api_key);
  await waitFor(answered, "the ranked results");
  const ranked = await run(`
    return {
      state: document.getElementById("rerank-state").textContent,
      results: [...document.querySelectorAll("#results li")].map((item) => ({
        index: Number(item.dataset.index),
        score: item.querySelector(".score").textContent,
        text: item.querySelector(".text").textContent,
      })),
      elementsInResults: [...document.querySelectorAll("#results li *")].map((e) => e.tagName),
    };`);

  const { data } = await page("Page.captureScreenshot", { format: "png" });
  writeFileSync(screenshotPath, Buffer.from(data, "base64"));
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ shown, json, withoutKey, ranked, problems }) + "\n");
  await finish(0);
} catch (error) {
  fail(error.stack || String(error));
}
