// Issue 9 acceptance: the inspector that teaches, as a developer meets it after launching the
// official JavaScript SMART client (npm fhirclient) from the launcher in headless Chromium: the
// summary (app, user, patient, launch kind, the token response's context), a simulated answer
// marked as simulated (and no "never used" blame), and the consent outcome (a subset approved;
// denied).  Screenshots go to $SHOTS (default /tmp/inspector-shots).
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { startServer, startApp, register, launchBrowser, appOutcome } = require("./harness");

const SHOTS = process.env.SHOTS || "/tmp/inspector-shots";
let server, app, browser;

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  app = await startApp();
  browser = await launchBrowser();
  const reg = await register(server, app, { client_name: "Inspected App" });
  app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await server?.stop();
});

/** Fills the launcher for a provider EHR launch of pat-001 by the clinician (skip sign-in),
 * creates it and returns the launch URL and the inspector URL. */
async function launchWith(page, { skipConsent = true, error = null, intent = null } = {}) {
  await page.goto(server.base + "/launcher");
  await page.getByLabel("App", { exact: true }).selectOption(app.config.clientId);
  await page.getByLabel("User", { exact: true }).selectOption("clinician");
  await page.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-001");
  await page.getByLabel("Skip sign-in").check();
  if (skipConsent) await page.getByLabel("Skip consent").check();
  if (intent) await page.getByLabel("intent", { exact: true }).fill(intent);
  if (error) await page.getByLabel("Simulate an error").selectOption(error);
  await page.getByRole("button", { name: "Create the launch" }).click();
  const url = await page.getByLabel("The launch URL to open").inputValue();
  const inspect = server.base + await page.getByRole("link", { name: "Inspect this launch" }).getAttribute("href");
  return { url, inspect };
}

/** The summary's facts, as { term: description }. */
async function summary(page) {
  return page.$$eval("section.summary dt", dts =>
    Object.fromEntries(dts.map(dt => [dt.textContent.trim(), dt.nextElementSibling.textContent.trim()])));
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

test("the inspector's summary shows the app, user, patient, launch kind and the token response's context", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const { url, inspect } = await launchWith(page, { intent: "reconcile-medications" });
  await page.goto(url);
  const out = await appOutcome(page);
  assert.equal(out.done, "ok", out.text);
  await page.goto(inspect);
  const facts = await summary(page);
  assert.match(facts["App"], /^Inspected App · /);
  assert.ok(facts["App"].includes(app.config.clientId));
  assert.equal(facts["Client type"], "public");
  assert.equal(facts["Launch kind"], "EHR launch, single use");
  assert.match(facts["User"], /\(clinician\)$/);
  assert.equal(facts["Patient"], "pat-001");
  assert.equal(facts["Options"], "skip sign-in, skip consent");
  assert.equal(facts["Consent"], "not asked: the launch skips consent (launcher option)");
  assert.equal(facts["Granted scope"], "launch openid fhirUser offline_access patient/*.rs");
  assert.equal(facts["patient"], "pat-001");
  assert.equal(facts["intent"], "reconcile-medications");
  assert.equal(facts["refresh_token"], "issued");
  assert.equal(facts["id_token"], "issued");
  // fhirclient.js's own 16-character state is flagged with the stateKey fix.
  const text = await page.textContent("main");
  assert.match(text, /state has ~96 bits/);
  assert.match(text, /Fix: This looks like fhirclient\.js's default state[\s\S]*stateKey/);
  assert.equal(await page.locator(".badge.simulated").count(), 0, "nothing simulated");
  await shot(page, "inspector-rich.png");
  await context.close();
});

test("a simulated expired token is marked simulated and the app is not blamed for unused scopes", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const { url, inspect } = await launchWith(page, { error: "fhir_expired_token" });
  await page.goto(url);
  const out = await appOutcome(page);
  assert.equal(out.done, "error");
  assert.match(out.text, /401/);
  await page.goto(inspect);
  const row = page.locator("tr", { hasText: "401 Unauthorized" }).first();
  assert.equal(await row.locator(".badge.simulated").textContent(), "simulated");
  assert.equal(await page.getByRole("heading", { name: "Scopes granted but never used" }).count(), 0);
  const facts = await summary(page);
  assert.match(facts["Options"], /simulated error: At the FHIR API: expired access token/);
  await shot(page, "inspector-simulated.png");
  await context.close();
});

test("the consent outcome: a subset approved, then a deny", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  let { url, inspect } = await launchWith(page, { skipConsent: false });
  await page.goto(url);
  await page.waitForSelector("input[name=scope]");
  await page.locator("input[name=scope][value=fhirUser]").uncheck();
  await page.getByRole("button", { name: /allow/i }).click();
  const out = await appOutcome(page);
  assert.equal(out.done, "ok", out.text);
  await page.goto(inspect);
  let facts = await summary(page);
  assert.equal(facts["Consent"], "approved 4 of 5 requested scopes: launch openid offline_access patient/*.rs");
  assert.equal(facts["Granted scope"], "launch openid offline_access patient/*.rs");

  ({ url, inspect } = await launchWith(page, { skipConsent: false }));
  await page.goto(url);
  await page.getByRole("button", { name: /deny/i }).click();
  const denied = await appOutcome(page);
  assert.equal(denied.done, "error");
  assert.match(denied.text, /access_denied/);
  await page.goto(inspect);
  facts = await summary(page);
  assert.equal(facts["Consent"], "denied");
  const answers = await page.$$eval("tbody > tr > td:last-child", tds => tds.map(td => td.textContent.trim()));
  assert.match(answers[answers.length - 1], /^denied: redirect to the app with error=access_denied/);
  assert.ok(!answers[answers.length - 1].includes("the consent page"));
  assert.ok(answers.every(a => a !== "the consent page"), "no answer still waits for consent: " + answers);
  assert.ok(answers.includes("the consent page → then denied (see Consent below)"), answers.join("\n"));
  await shot(page, "inspector-denied.png");
  await context.close();
});
