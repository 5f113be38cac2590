// Issue 9 acceptance: the README's "A standalone launch, by hand" runs exactly as written.
// The ```sh blocks of that section are taken from README.md and run in order in ONE bash
// process (so their shell variables carry over), with BASE set to a test server; the browser
// step in between is done in Chromium as the README tells the reader (open the printed
// authorize URL, sign in with the account the README names, press Allow), and the `CODE=…`
// line the callback page shows is pasted into that shell as a user would.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { startServer, launchBrowser } = require("./harness");

const README = path.resolve(__dirname, "../../README.md");
const SECTION = "## A standalone launch, by hand";

let server, browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The section's text and its ```sh blocks (dedented); throws when either is missing. */
function walkthrough() {
  const text = fs.readFileSync(README, "utf8");
  const start = text.indexOf("\n" + SECTION + "\n");
  if (start < 0) throw new Error(`README.md has no section "${SECTION}": the walkthrough test has nothing to run`);
  const rest = text.slice(start + 1);
  const next = rest.indexOf("\n## ");
  const section = next < 0 ? rest : rest.slice(0, next);
  const blocks = [...section.matchAll(/^([ \t]*)```sh\n([\s\S]*?)^\1```[ \t]*$/gm)].map(([, indent, body]) =>
    body.split("\n").map(line => (line.startsWith(indent) ? line.slice(indent.length) : line)).join("\n"));
  if (blocks.length < 4) throw new Error(`README.md "${SECTION}" has ${blocks.length} sh blocks; expected the whole walkthrough`);
  return { section, blocks };
}

/** One bash process fed like a terminal: each block is written to its stdin in turn. */
class Shell {
  constructor(env) {
    this.out = "";
    this.err = "";
    this.n = 0;
    // `set -e -o pipefail`: a failing command stops the walkthrough here instead of later.
    this.child = spawn("bash", ["--noprofile", "--norc"], { env, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout.on("data", d => { this.out += d; });
    this.child.stderr.on("data", d => { this.err += d; });
    this.exited = new Promise(resolve => this.child.on("exit", code => resolve(code)));
    this.child.stdin.write("set -e -o pipefail\n");
  }

  /** Runs `text` (a block, or a pasted line) and returns what it printed. */
  async run(text) {
    const marker = `__readme_step_${++this.n}__`;
    const from = this.out.length;
    this.child.stdin.write(text.replace(/\n?$/, "\n") + `echo ${marker}\n`);
    const deadline = Date.now() + 30000;
    while (!this.out.includes(marker)) {
      const exited = await Promise.race([this.exited, new Promise(r => setTimeout(() => r(undefined), 50))]);
      if (exited !== undefined) throw new Error(`bash exited (${exited}) running:\n${text}\nstdout:\n${this.out}\nstderr:\n${this.err}`);
      if (Date.now() > deadline) throw new Error(`timed out running:\n${text}\nstderr:\n${this.err}`);
    }
    return this.out.slice(from, this.out.indexOf(marker));
  }

  close() {
    this.child.stdin.end();
    return this.exited;
  }
}

test("the README's standalone launch by hand runs as written", async () => {
  const { section, blocks } = walkthrough();
  // What the README tells the reader to do in the browser, which this test then does.
  const account = section.match(/sign in as `([^`]+)` \/ `([^`]+)`/);
  assert.ok(account, "the README names the account to sign in with");
  assert.match(section, /press \*\*Allow\*\*/, "the README says to press Allow");
  assert.match(section, /line `CODE=…`: copy that line and paste it into the same shell/);

  const shell = new Shell({ ...process.env, BASE: server.base });
  const outputs = [];
  let pasted = false;
  for (const block of blocks) {
    if (block.includes("$CODE") && !pasted) {
      // The browser step: open the printed authorize URL and do what the README says.
      const printed = outputs.join("").match(/^(\S+\/auth\/authorize\?\S+)$/m);
      assert.ok(printed, "a block before the token exchange printed the authorize URL:\n" + outputs.join(""));
      assert.ok(printed[1].startsWith(server.base + "/auth/authorize?"), "built from $BASE: " + printed[1]);
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(printed[1]);
      await page.getByLabel("Username").fill(account[1]);
      await page.getByLabel("Password").fill(account[2]);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(url => url.pathname === "/dev/callback");
      assert.equal(new URL(page.url()).origin, server.base, "the callback page is the sandbox's own");
      assert.equal(await page.textContent("#state"), new URL(printed[1]).searchParams.get("state"), "the state comes back");
      const line = (await page.locator("#code-line").textContent()).trim();
      assert.match(line, /^CODE=[A-Za-z0-9_-]+$/);
      assert.match(await page.textContent("main"), /The code lives 60 seconds/);
      await context.close();
      await shell.run(line); // pasted into the same shell
      pasted = true;
    }
    outputs.push(await shell.run(block));
  }
  assert.ok(pasted, "the walkthrough has a block that uses $CODE after the browser step");
  assert.equal(await shell.close(), 0, "the shell ends cleanly:\n" + shell.err);

  // Discovery, registration, the token response and the FHIR call.
  const json = text => JSON.parse(text.trim().split("\n").find(l => l.startsWith("{")));
  assert.equal(json(outputs[0]).authorization_endpoint, server.base + "/auth/authorize");
  assert.match(outputs[1], /^client_id: [0-9a-f]{32}$/m);
  const tokens = json(outputs.find(o => o.includes("access_token")) || "");
  assert.equal(tokens.token_type, "Bearer");
  assert.ok(tokens.access_token && tokens.refresh_token && tokens.id_token, JSON.stringify(tokens));
  assert.equal(tokens.patient, "pat-001");
  const patient = json(outputs[outputs.length - 1]);
  assert.equal(patient.resourceType, "Patient", JSON.stringify(patient));
  assert.equal(patient.id, "pat-001");
});
