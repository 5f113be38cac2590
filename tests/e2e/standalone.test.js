// Issue 2 acceptance: standalone launches with the official JavaScript SMART client
// (npm fhirclient) in real headless Chromium, the app registered through RFC 7591.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, startApp, register, launchBrowser, appResult, signIn } = require("./harness");

let server, app, browser;
const SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs";

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

test("(a) patient standalone launch, then (c) refresh and read again", async () => {
  const reg = await register(server, app);
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
  await signIn(page, "patient");
  await page.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(page);
  assert.equal(out.patientId, "pat-001");
  assert.equal(out.name, "Amy Shaw");
  assert.equal(await page.textContent("#name"), "Amy Shaw");
  assert.equal(out.scope, SCOPE);
  assert.equal(out.fhirUser, "Patient/pat-001");
  assert.equal(out.idTokenIss, server.base);
  assert.equal(out.refreshed, true, "the app refreshed its token");
  assert.equal(out.afterRefresh, "pat-001", "and read again with the new token");
  assert.equal(out.otherPatient, "403", "a patient token cannot read another patient");
  assert.ok(out.observationTotal > 10, "more than one page of Observations");
  assert.equal(out.observations, out.observationTotal, "paging with pageLimit: 0 returns every Observation");
  assert.equal(out.distinctObservations, out.observationTotal);
  await context.close();
});

test("(b) provider standalone launch with the patient picker", async () => {
  const reg = await register(server, app);
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
  await signIn(page, "clinician");
  await page.getByLabel("Search by name").fill("okafor");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("button", { name: /Samuel Okafor/ }).click();
  await page.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(page);
  assert.equal(out.patientId, "pat-004");
  assert.equal(out.name, "Samuel Okafor");
  assert.equal(out.fhirUser, "Practitioner/pract-001");
  assert.equal(out.refreshed, true);
  assert.equal(out.afterRefresh, "pat-004");
  await context.close();
});

test("a second launch in the same browser reuses the session and the remembered consent", async () => {
  const reg = await register(server, app);
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
  await signIn(page, "patient");
  await page.getByRole("button", { name: "Allow" }).click();
  await appResult(page);
  const second = await context.newPage();
  await second.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
  const out = await appResult(second);
  assert.equal(out.patientId, "pat-001");
  await context.close();
});
