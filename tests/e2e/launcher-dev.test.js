// Issue 9 acceptance: the developer launcher as an app developer uses it, with the official
// JavaScript SMART client (npm fhirclient) in headless Chromium — (a) an app with its own fixed
// client_id launched with no registration step, (b) a reusable launch reloaded, (c) the app
// opened inside the EHR chart frame with skip consent and a simulated error.
// With SHOTS_DIR set, it also saves screenshots of the launcher and the frame there.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { startServer, startApp, launchBrowser, appResult, appOutcome, appFrame } = require("./harness");

let server, app, browser;
const SCOPE = "launch openid fhirUser offline_access patient/*.rs";
const CLIENT_ID = "my_web_app";

before(async () => {
  server = await startServer();
  app = await startApp();
  browser = await launchBrowser();
  // The app is configured with its own client_id, as apps in development are; nothing registers it.
  app.config = { clientId: CLIENT_ID, scope: SCOPE };
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await server?.stop();
});

async function shot(page, name) {
  if (!process.env.SHOTS_DIR) return;
  require("node:fs").mkdirSync(process.env.SHOTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(process.env.SHOTS_DIR, name + ".png"), fullPage: true });
}

/** Fills the launcher for the app given by its launch URL, redirect URI and own client_id. */
async function fillOwnApp(page, patient) {
  await page.goto(server.base + "/launcher");
  await page.getByLabel("The app's launch URL").fill(app.origin + "/launch.html");
  await page.getByLabel("The app's redirect URI").fill(app.origin + "/index.html");
  await page.getByLabel(/^The client_id your app sends/).fill(CLIENT_ID);
  await page.getByLabel("User", { exact: true }).selectOption("clinician");
  await page.getByLabel(/^Patient \(provider launches/).fill(patient);
  await page.getByLabel("Skip sign-in").check();
  await page.getByLabel("Skip consent").check();
}

test("(a) an app with its own fixed client_id launches from the launcher with no registration step", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await fillOwnApp(page, "Amy Shaw");
  await shot(page, "launcher-form");
  await page.getByRole("button", { name: "Create the launch" }).click();
  assert.equal(await page.locator("#issued_client_id").textContent(), CLIENT_ID);
  assert.match(await page.locator("#client_type").textContent(), /^public/);
  await shot(page, "launcher-result-card");
  const url = await page.getByLabel("The launch URL to open").inputValue();
  await page.goto(url);
  const out = await appResult(page);
  assert.equal(out.patientId, "pat-001", "the name search found Amy Shaw");
  assert.equal(out.context.need_patient_banner, true, "in a tab of its own the app shows the patient");
  // The launcher remembers this browser's settings (the app now by its client_id).
  await page.goto(server.base + "/launcher");
  assert.equal(await page.getByLabel("App", { exact: true }).inputValue(), CLIENT_ID);
  assert.equal(await page.getByLabel(/^Patient \(provider launches/).inputValue(), "pat-001");
  assert.equal(await page.getByLabel("Skip consent").isChecked(), true);
  await context.close();
});

test("(b) a reusable launch survives the developer's reloads", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await fillOwnApp(page, "pat-001");
  await page.getByLabel("How often the launch may be used (EHR and portal launches)").selectOption("10");
  await page.getByRole("button", { name: "Create the launch" }).click();
  assert.match(await page.locator("#launch_kind").textContent(), /reusable/);
  const url = await page.getByLabel("The launch URL to open").inputValue();
  for (let i = 0; i < 2; i++) {
    await page.goto(url);
    const out = await appResult(page);
    assert.equal(out.patientId, "pat-001", `load ${i + 1} completes`);
  }
  await context.close();
});

test("(c) the launcher opens the app inside the EHR frame with skip consent and a simulated error", async () => {
  const context = await browser.newContext({ viewport: { width: 1300, height: 1000 } });
  const page = await context.newPage();
  await fillOwnApp(page, "pat-001");
  await page.getByLabel("Simulate an error").selectOption("fhir_expired_token");
  await page.getByLabel(/Inside the EHR chart frame/).check();
  await page.getByRole("button", { name: "Create the launch" }).click();
  assert.equal(await page.getByRole("region", { name: "Patient banner" }).getByRole("heading").textContent(), "Amy Shaw");
  const frame = await appFrame(page);
  assert.ok(frame, "the chart has an app frame");
  const out = await appOutcome(frame);
  assert.equal(out.done, "error", "the app inside the frame sees the simulated failure");
  assert.match(out.text, /401/);
  assert.ok(frame.url().startsWith(app.origin), "the frame runs the app");
  await shot(page, "ehr-frame-launched-app");

  // Without the error, inside the frame the EHR shows the banner: need_patient_banner is false.
  await fillOwnApp(page, "pat-001");
  await page.getByLabel(/Inside the EHR chart frame/).check();
  await page.getByLabel("Simulate an error").selectOption("");
  await page.getByRole("button", { name: "Create the launch" }).click();
  await page.getByRole("region", { name: "Patient banner" }).waitFor();
  const ok = await appResult(await appFrame(page));
  assert.equal(ok.framed, true);
  assert.equal(ok.context.need_patient_banner, false);
  await shot(page, "ehr-frame-launched-app-ok");
  await context.close();
});

test("the Patient field offers the matches of a name", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await fillOwnApp(page, "ar");
  await page.getByRole("button", { name: "Create the launch" }).click();
  const choices = page.getByRole("group", { name: "Which patient?" });
  await choices.getByLabel(/Daniel Garcia/).check();
  await shot(page, "launcher-name-choices");
  await page.getByRole("button", { name: "Create the launch" }).click();
  await page.goto(await page.getByLabel("The launch URL to open").inputValue());
  assert.equal((await appResult(page)).patientId, "pat-002");
  await context.close();
});

test("a saved launch link opens the app again, each time with a fresh launch", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await fillOwnApp(page, "pat-001");
  await page.getByLabel(/In a new tab/).check();
  await page.getByLabel("Simulate an error").selectOption("");
  await page.getByLabel(/Also save these settings as a permanent launch link/).check();
  await page.getByLabel("The link's name").fill("my_web_app, Amy Shaw, skips");
  await page.getByRole("button", { name: "Create the launch" }).click();
  const link = await page.getByLabel(/^Your launch link/).inputValue();
  await shot(page, "launcher-link-card");
  for (let i = 0; i < 2; i++) {
    await page.goto(link);
    assert.equal((await appResult(page)).patientId, "pat-001", `opening ${i + 1}`);
  }
  await page.goto(server.base + "/launcher");
  await shot(page, "launcher-link-list");
  await page.getByRole("button", { name: "Delete the launch link my_web_app, Amy Shaw, skips" }).click();
  const gone = await page.goto(link);
  assert.equal(gone.status(), 404);
  await context.close();
});

test("a portal launch opens inside the portal frame", async () => {
  const context = await browser.newContext({ viewport: { width: 1300, height: 1000 } });
  const page = await context.newPage();
  await fillOwnApp(page, "");
  await page.getByLabel("Patient portal launch").check();
  await page.getByLabel("User", { exact: true }).selectOption("patient");
  await page.getByLabel(/Inside the EHR chart frame/).check();
  await page.getByRole("button", { name: "Create the launch" }).click();
  await page.getByRole("region", { name: "Patient banner" }).waitFor();
  const out = await appResult(await appFrame(page));
  assert.equal(out.fhirUser, "Patient/pat-001");
  assert.equal(out.context.need_patient_banner, false);
  await shot(page, "portal-frame-launched-app");
  await context.close();
});
