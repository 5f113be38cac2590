// Issue 9 acceptance (item 6): the sandbox reset through its guarded button, and the EHR's
// read-only FHIR data browser, in real headless Chromium with the official JavaScript SMART
// client (npm fhirclient) as the app.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, startApp, register, launchBrowser, appResult, appOutcome, signIn } = require("./harness");

let server, app, browser;
const SCOPE = "launch openid fhirUser offline_access patient/*.rs";

before(async () => {
  server = await startServer();
  app = await startApp();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await server?.stop();
});

test("reset: the button, after a typed confirmation, removes the app and its token and restores the demo data", async () => {
  const reg = await register(server, app, { client_name: "Soon Gone" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  // An app launched inside the EHR chart: it has a token.
  const chart = await context.newPage();
  await chart.goto(server.base + "/ehr/patients/pat-001");
  await signIn(chart, "clinician");
  await chart.goto(server.base + "/ehr/patients/pat-001");
  await chart.getByRole("button", { name: "Launch Soon Gone" }).click();
  const frame = chart.frame({ name: "app-frame" });
  await frame.getByRole("button", { name: "Allow" }).click();
  assert.equal((await appResult(frame)).patientId, "pat-001");

  // The sandbox page: the button does nothing without the confirmation word.
  const page = await context.newPage();
  await page.goto(server.base + "/sandbox");
  const confirm = page.getByLabel("Type reset to confirm");
  await confirm.fill("yes");
  await page.getByRole("button", { name: "Reset the sandbox" }).click();
  assert.equal(await confirm.evaluate(e => e.validity.valid), false, "the browser asks for the word first");
  assert.equal(new URL(page.url()).pathname, "/sandbox");
  await confirm.fill("reset");
  await page.getByRole("button", { name: "Reset the sandbox" }).click();
  await page.getByRole("status").getByText("The sandbox was reset").waitFor();

  // The app's stored token is refused now: fhirclient reloads its page with the old state.
  // (Its origin is no longer a CORS origin either; another app registered at the same origin
  // makes it one again, so that the browser shows the FHIR server's answer.)
  await register(server, app, { client_name: "Same Origin" });
  await frame.goto(app.origin + "/index.html");
  const outcome = await appOutcome(frame);
  assert.equal(outcome.done, "error", outcome.text);
  assert.match(outcome.text, /401|invalid_grant|Unauthorized/i, outcome.text);
  // The app is gone; the demo accounts sign in again; Amy Shaw is back as seeded.
  await page.goto(server.base + "/apps");
  assert.ok(!(await page.content()).includes("Soon Gone"));
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  await page.getByRole("link", { name: "Amy Shaw" }).click();
  await page.getByRole("region", { name: "Patient banner" }).getByText("Amy Shaw").waitFor();
  await context.close();
});

test("data browser: a clinician searches a patient and reads a resource's JSON", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  await page.getByRole("link", { name: "Browse the FHIR data" }).click();
  await page.getByLabel("Search a patient by name").fill("Shaw");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("link", { name: "Amy Shaw" }).click();
  await page.getByRole("link", { name: "Observation", exact: true }).click();
  await page.getByRole("link", { name: "obs-001-1-1", exact: true }).click();
  const json = JSON.parse(await page.getByLabel("The resource’s JSON").textContent());
  assert.equal(json.resourceType, "Observation");
  assert.equal(json.id, "obs-001-1-1");
  assert.equal(json.subject.reference, "Patient/pat-001");
  assert.equal(json.meta.versionId, "1");
  // A patient user is at the wrong desk here.
  const other = await (await browser.newContext()).newPage();
  await other.goto(server.base + "/portal");
  await signIn(other, "patient");
  const res = await other.goto(server.base + "/ehr/data/Observation/obs-001-1-1");
  assert.equal(res.status(), 403);
  assert.ok(!(await other.content()).includes("resourceType"));
  await context.close();
});
