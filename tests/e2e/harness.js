// Shared pieces of the end-to-end tests: the smartlaunch binary, a tiny static server for the
// app pages (a secure context on 127.0.0.1, so WebCrypto and PKCE work), and Chromium.
"use strict";
const { execFileSync, spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const ROOT = path.resolve(__dirname, "../..");
const BIN = process.env.SMARTLAUNCH_BIN || path.join(ROOT, "target/debug/smartlaunch");

/** Starts `smartlaunch serve` with `args` (plus `--listen 127.0.0.1:0`) and `env` added, and
 * resolves to `{ child, base, addr, demo }` once it has printed its banner: where it runs (its
 * public URL), where it listens, and the URL of the Vitals demo app beside it (if it runs). */
async function spawnServer(args, env = {}) {
  const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", ...args],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  const [base, addr, demo] = await new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error("smartlaunch did not start: " + seen)), 60000);
    child.stdout.on("data", chunk => {
      seen += chunk;
      const m = seen.match(/running on (http:\/\/[^ ]+) \(listening on ([0-9.:]+)\)/);
      if (m && seen.includes("Press Ctrl-C")) {
        clearTimeout(timer);
        const d = seen.match(/Demo app \(Vitals\) +(http:\/\/[^ ]+)/);
        resolve([m[1], "http://" + m[2], d ? d[1] : null]);
      }
    });
    child.on("exit", code => reject(new Error("smartlaunch exited with " + code)));
  });
  return { child, base, addr, demo };
}

/** Runs `smartlaunch demo-app` for the server at `base` on a free port; resolves to
 * `{ child, url, dir }` once it prints where it runs. */
async function spawnDemoApp(base) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "smartlaunch-e2e-vitals-"));
  const child = spawn(BIN, ["demo-app", "--fhir-base", base + "/fhir", "--listen", "127.0.0.1:0", "--data", dir],
    { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error("the demo app did not start: " + seen)), 60000);
    child.stdout.on("data", chunk => {
      seen += chunk;
      const m = seen.match(/Vitals is running on (http:\/\/[^ ]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on("exit", code => reject(new Error("the demo app exited with " + code)));
  });
  return { child, url, dir };
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  await new Promise(r => child.once("exit", r));
}

/** Starts `smartlaunch serve` on a free port with a fresh data directory; with
 * SMARTLAUNCH_E2E_PROXY=1, two nodes on a fresh PostgreSQL database behind nginx instead. */
async function startServer() {
  if (process.env.SMARTLAUNCH_E2E_PROXY === "1") return startProxiedNodes();
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "smartlaunch-e2e-"));
  const { child, base, demo } = await spawnServer(["--data", data]);
  return {
    base,
    fhir: base + "/fhir",
    demo,
    async stop() {
      await stopChild(child);
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

/** A free loopback port (nginx takes it right after). */
async function freePort() {
  const server = net.createServer();
  await new Promise(r => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  await new Promise(r => server.close(r));
  return port;
}

function psql(url, sql) {
  execFileSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { stdio: ["ignore", "ignore", "inherit"] });
}

/** Issue 10, "Two nodes behind a real proxy": two `smartlaunch serve --database` processes on
 * a fresh database of SMARTLAUNCH_E2E_DATABASE_URL's server, behind nginx (round-robin), whose
 * address is the public URL.  Every browser step may land on either node. */
async function startProxiedNodes() {
  const server = process.env.SMARTLAUNCH_E2E_DATABASE_URL;
  if (!server) throw new Error("SMARTLAUNCH_E2E_PROXY=1 needs SMARTLAUNCH_E2E_DATABASE_URL (postgres://…/postgres)");
  const name = "smartlaunch_e2e_" + crypto.randomBytes(6).toString("hex");
  psql(server, `CREATE DATABASE "${name}"`);
  const url = new URL(server);
  url.pathname = "/" + name;
  const database = url.toString();
  const port = await freePort();
  const base = "http://127.0.0.1:" + port;
  const env = { SMARTLAUNCH_KEY_ENCRYPTION_KEY: crypto.randomBytes(32).toString("base64") };
  // One --data directory for both (the export files), as a shared network volume would be.
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "smartlaunch-e2e-nodes-"));
  // nginx (127.0.0.1) names the client in X-Forwarded-For: the per-address limits and the
  // sign-in throttle count each browser, not the proxy (README "Several nodes").
  // The demo app registers through the public URL, which answers only once nginx runs: it
  // starts after nginx, as a process of its own (`smartlaunch demo-app`).
  const args = ["--database", database, "--public-url", base, "--data", data, "--trusted-proxy", "127.0.0.1",
    "--demo-app", "off"];
  const nodes = [await spawnServer(args, env), await spawnServer(args, env)];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "smartlaunch-e2e-nginx-"));
  const upstreams = nodes.map(n => `    server ${n.addr.replace("http://", "")};`).join("\n");
  fs.writeFileSync(path.join(dir, "nginx.conf"), `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream smartlaunch {
${upstreams}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64m;
    location / {
      proxy_pass http://smartlaunch;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
    }
  }
}
`);
  const nginx = spawn(process.env.NGINX || "nginx",
    ["-c", path.join(dir, "nginx.conf"), "-p", dir, "-e", path.join(dir, "error.log")],
    { stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; ; i++) {
    try { await fetch(base + "/healthz"); break; } catch (e) {
      if (i > 200) throw new Error("nginx did not start: " + e);
      await new Promise(r => setTimeout(r, 50));
    }
  }
  const demo = await spawnDemoApp(base);
  return {
    base,
    fhir: base + "/fhir",
    demo: demo.url,
    async stop() {
      await stopChild(demo.child);
      fs.rmSync(demo.dir, { recursive: true, force: true });
      await stopChild(nginx);
      for (const n of nodes) await stopChild(n.child);
      psql(server, `DROP DATABASE "${name}" WITH (FORCE)`);
      fs.rmSync(dir, { recursive: true, force: true });
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
