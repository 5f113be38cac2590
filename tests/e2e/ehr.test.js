// Issue 4 acceptance: EHR launches with the official JavaScript SMART client (npm fhirclient)
// in real headless Chromium — framed inside the EHR simulator's chart, from the patient portal,
// and from a launch created through the launch API.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, startApp, register, launchBrowser, appResult, signIn } = require("./harness");

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

/** The app frame of the chart, once the app has navigated it. */
async function appFrame(page) {
  const frame = page.frame({ name: "app-frame" });
  assert.ok(frame, "the chart has an app frame");
  return frame;
}

test("(a) a clinician launches an app inside the EHR chart with the chosen encounter", async () => {
  const reg = await register(server, app, { client_name: "Chart Companion" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  await page.getByLabel("Search by name").fill("shaw");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("link", { name: "Amy Shaw" }).click();
  await page.getByRole("link", { name: /^Use the encounter/ }).first().click();
  const encounter = new URL(page.url()).searchParams.get("encounter");
  assert.ok(encounter, "an encounter is in context");
  await page.getByRole("button", { name: "Launch Chart Companion" }).click();
  const frame = await appFrame(page);
  await frame.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(frame);
  assert.equal(out.framed, true, "the app runs inside the EHR's frame");
  assert.equal(out.patientId, "pat-001");
  assert.equal(out.encounter, encounter);
  assert.equal(out.fhirUser, "Practitioner/pract-001");
  assert.equal(out.context.need_patient_banner, false, "the EHR's banner stays above the frame");
  assert.match(out.context.smart_style_url, /\/ehr\/smart-style\/v1\.json$/);
  assert.ok(out.scope.split(" ").includes("launch"));
  assert.equal(out.refreshed, true);
  assert.equal(await page.getByRole("region", { name: "Patient banner" }).getByRole("heading").textContent(), "Amy Shaw");
  await context.close();
});

test("(b) a patient launches an app from the portal", async () => {
  const reg = await register(server, app, { client_name: "My Health Diary" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/portal");
  await signIn(page, "patient");
  await page.getByRole("button", { name: "Launch My Health Diary" }).click();
  const frame = await appFrame(page);
  await frame.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(frame);
  assert.equal(out.patientId, "pat-001");
  assert.equal(out.fhirUser, "Patient/pat-001");
  assert.equal(out.otherPatient, "403");
  await context.close();
});

test("(c) a launch from the launch API delivers its fhirContext and intent", async () => {
  const reg = await register(server, app, { client_name: "Questionnaire Filler" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const res = await fetch(server.base + "/api/launches", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_id: reg.client_id, patient: "pat-004", user: "clinician",
      fhirContext: [{ reference: "Questionnaire/phq-9" }], intent: "complete-questionnaire",
    }),
  });
  assert.equal(res.status, 201);
  const created = await res.json();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(created.launch_url);
  // This browser holds no session: the user the launch names signs in (nobody else may).
  await signIn(page, "clinician");
  await page.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(page);
  assert.equal(out.patientId, "pat-004");
  assert.deepEqual(out.context.fhirContext, [{ reference: "Questionnaire/phq-9" }]);
  assert.equal(out.context.intent, "complete-questionnaire");
  assert.equal(out.context.need_patient_banner, true);
  await context.close();
});
