// Issue 7 acceptance: a hostile site against a victim's real browser.  The victim is signed in
// to the EHR at 127.0.0.1; the attacker's pages are served from another site (localhost), and
// the attacker also talks to smartlaunch from its own machine.  The attacker must never hold a
// code, and the victim's browser must never be signed in as the attacker.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { startServer, startApp, register, launchBrowser, signIn } = require("./harness");

let server, app, browser, attacker;
/** Every Location header the attacker's own requests received. */
const seenByAttacker = [];

/** The attacker's site: `/go?to=URL` sends the browser there; `/post?action=URL&k=v…`
 * auto-submits a form with those fields (login CSRF). */
async function startAttackerSite() {
  const site = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const esc = s => s.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
    let body;
    if (url.pathname === "/go") {
      body = `<script>location = ${JSON.stringify(url.searchParams.get("to"))};</script>`;
    } else if (url.pathname === "/post") {
      const fields = [...url.searchParams].filter(([k]) => k !== "action")
        .map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join("");
      body = `<form method="post" action="${esc(url.searchParams.get("action"))}">${fields}</form>` +
        "<script>document.forms[0].submit();</script>";
    } else {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>Win a prize</title>${body}`);
  });
  await new Promise(r => site.listen(0, "127.0.0.1", r));
  // Another site than the victim's 127.0.0.1: the same machine, named localhost.
  return { origin: "http://localhost:" + site.address().port, stop: () => new Promise(r => site.close(r)) };
}

/** The attacker, from its own machine, starts an authorization for a public app it does not own. */
async function attackerStarts(clientId, scope) {
  const params = new URLSearchParams({
    response_type: "code", client_id: clientId, redirect_uri: app.origin + "/index.html", scope,
    state: "attacker-state-0123456789", aud: server.fhir,
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
  });
  const r = await fetch(server.base + "/auth/authorize?" + params, { redirect: "manual" });
  const flow = r.headers.get("location");
  seenByAttacker.push(flow);
  const cookie = r.headers.get("set-cookie").split(";")[0];
  const page = await (await fetch(server.base + flow, { headers: { cookie }, redirect: "manual" })).text();
  const csrf = page.match(/name="csrf" value="([^"]+)"/)[1];
  return { flow, cookie, csrf };
}

async function attackerPosts(started, step, fields) {
  const r = await fetch(server.base + started.flow + "/" + step, {
    method: "POST", redirect: "manual",
    headers: { cookie: started.cookie, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  seenByAttacker.push(r.headers.get("location") || "");
  return r.status;
}

/** A victim: a fresh browser signed in to the EHR as the clinician. */
async function victim() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  assert.match(await page.textContent("body"), /Signed in as Dr\. Susan Clark/);
  return { context, page };
}

before(async () => {
  server = await startServer();
  app = await startApp();
  browser = await launchBrowser();
  attacker = await startAttackerSite();
});

after(async () => {
  assert.ok(seenByAttacker.every(l => !/[?&]code=/.test(l)), "the attacker never held a code: " + seenByAttacker);
  await attacker?.stop();
  await browser?.close();
  await app?.stop();
  await server?.stop();
});

test("a flow link opened in the victim's browser neither sees nor lends its session", async () => {
  const reg = await register(server, app, { client_name: "Someone Else's App" });
  const started = await attackerStarts(reg.client_id, "openid fhirUser user/*.cruds offline_access");
  const { context, page } = await victim();
  await page.goto(attacker.origin + "/go?to=" + encodeURIComponent(server.base + started.flow));
  await page.waitForURL(url => url.toString().startsWith(server.base));
  await page.waitForSelector("h1");
  assert.equal(await page.textContent("h1"), "This sign-in belongs to another browser");
  // The attacker's own view: still the sign-in page; its consent gets no code.
  const again = await (await fetch(server.base + started.flow, { headers: { cookie: started.cookie } })).text();
  assert.match(again, /<h1>Sign in<\/h1>/);
  assert.equal(await attackerPosts(started, "consent", { csrf: started.csrf, decision: "allow", scope: "user/*.cruds" }), 400);
  await context.close();
});

test("login CSRF: another site's auto-submitted sign-in forms sign the victim in as nobody else", async () => {
  const reg = await register(server, app, { client_name: "Login CSRF Target" });
  const started = await attackerStarts(reg.client_id, "patient/*.rs");
  const { context, page } = await victim();
  // The flow's sign-in form, with the attacker's credentials and the CSRF value of its own flow.
  const flowForm = new URLSearchParams({ action: server.base + started.flow + "/signin", csrf: started.csrf, username: "patient", password: "patient" });
  await page.goto(attacker.origin + "/post?" + flowForm);
  await page.waitForURL(url => url.toString().startsWith(server.base));
  await page.waitForSelector("h1");
  assert.notEqual(await page.textContent("h1"), "Sign in");
  // The EHR's and the portal's sign-in forms.
  for (const desk of ["/ehr", "/portal"]) {
    const form = new URLSearchParams({ action: server.base + desk + "/signin", csrf: "guessed", username: "patient", password: "patient" });
    await page.goto(attacker.origin + "/post?" + form);
    await page.waitForURL(url => url.toString().startsWith(server.base));
    await page.waitForSelector("h1");
    // Refused as sent by a page of another origin (Chromium says `Sec-Fetch-Site: cross-site`).
    assert.equal(await page.textContent("h1"), "Sent from another page", desk);
  }
  // The victim is still the clinician, and the attacker's flow never got a user.
  await page.goto(server.base + "/ehr");
  assert.match(await page.textContent("body"), /Signed in as Dr\. Susan Clark/);
  const flowPage = await (await fetch(server.base + started.flow, { headers: { cookie: started.cookie } })).text();
  assert.match(flowPage, /<h1>Sign in<\/h1>/);
  await context.close();
});

test("a framed EHR launch still completes where the clinician is signed in", async () => {
  // The defences above must not break the real thing: the app runs framed in the chart, and
  // its authorization inside the frame keeps its flow cookie.
  const reg = await register(server, app, { client_name: "Framed After Hardening" });
  app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
  const { context, page } = await victim();
  await page.goto(server.base + "/ehr/patients/pat-001");
  await page.getByRole("button", { name: "Launch Framed After Hardening" }).click();
  const frame = page.frame({ name: "app-frame" });
  await frame.getByRole("button", { name: "Allow" }).click();
  await frame.waitForSelector("body[data-done]", { timeout: 30000 });
  assert.equal(await frame.getAttribute("body", "data-done"), "ok", await frame.textContent("#out"));
  await context.close();
});
