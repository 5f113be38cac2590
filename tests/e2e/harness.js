// Shared pieces of the end-to-end tests: the smartlaunch binary, a tiny static server for the
// app pages (a secure context on 127.0.0.1, so WebCrypto and PKCE work), and Chromium.
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const ROOT = path.resolve(__dirname, "../..");
const BIN = process.env.SMARTLAUNCH_BIN || path.join(ROOT, "target/debug/smartlaunch");

/** Starts `smartlaunch serve` on a free port with a fresh data directory. */
async function startServer() {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "smartlaunch-e2e-"));
  const child = spawn(BIN, ["serve", "--data", data, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
  const base = await new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error("smartlaunch did not start: " + seen)), 60000);
    child.stdout.on("data", chunk => {
      seen += chunk;
      const m = seen.match(/running on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on("exit", code => reject(new Error("smartlaunch exited with " + code)));
  });
  return {
    base,
    fhir: base + "/fhir",
    async stop() {
      child.kill("SIGTERM");
      await new Promise(r => child.once("exit", r));
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

/** Serves tests/e2e/app plus fhir-client.js and a config.json the test can change. */
async function startApp() {
  const files = {
    "/launch.html": [path.join(__dirname, "app/launch.html"), "text/html"],
    "/index.html": [path.join(__dirname, "app/index.html"), "text/html"],
    "/fhir-client.js": [require.resolve("fhirclient/build/fhir-client.js"), "text/javascript"],
  };
  const app = { config: {} };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/config.json") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(app.config));
    }
    const file = files[url.pathname];
    if (!file) { res.writeHead(404); return res.end("not found"); }
    res.writeHead(200, { "content-type": file[1] });
    fs.createReadStream(file[0]).pipe(res);
  });
  await new Promise(r => server.listen(0, "127.0.0.1", r));
  app.origin = "http://127.0.0.1:" + server.address().port;
  app.stop = () => new Promise(r => server.close(r));
  return app;
}

/** Registers the app with RFC 7591, as a real app would. */
async function register(server, app, extra = {}) {
  const res = await fetch(server.base + "/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "E2E Test App",
      redirect_uris: [app.origin + "/index.html"],
      initiate_login_uri: app.origin + "/launch.html",
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "none",
      ...extra,
    }),
  });
  if (res.status !== 201) throw new Error("registration failed: " + res.status + " " + await res.text());
  return res.json();
}

async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/** Signs in on a sign-in form (the demo accounts' password is their username). */
async function signIn(page, username) {
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(username);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Waits for the app (a page, or the frame it runs in) to finish and returns its JSON output. */
async function appResult(page) {
  await page.waitForSelector("body[data-done]", { timeout: 30000 });
  const done = await page.getAttribute("body", "data-done");
  const text = await page.textContent("#out");
  if (done !== "ok") throw new Error("the app failed: " + text);
  return JSON.parse(text);
}

/** Waits for the app to finish and returns `{ done, text }` whether it succeeded or failed. */
async function appOutcome(page) {
  await page.waitForSelector("body[data-done]", { timeout: 30000 });
  return { done: await page.getAttribute("body", "data-done"), text: await page.textContent("#out") };
}

/** The chart's app frame, once the page has attached it (a page rendered with the app already
 * in its frame may report its banner before the frame exists). */
async function appFrame(page) {
  const element = await page.waitForSelector('iframe[name="app-frame"]', { state: "attached", timeout: 30000 });
  return element.contentFrame();
}

module.exports = { startServer, startApp, register, launchBrowser, appResult, appOutcome, signIn, appFrame };
