// Issue 4 acceptance (e): every error the developer launcher simulates happens at the step it
// names, as the official JavaScript SMART client (npm fhirclient) sees it in headless Chromium.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, startApp, register, launchBrowser, appOutcome } = require("./harness");

let server, app, browser;

before(async () => {
  server = await startServer();
  app = await startApp();
  browser = await launchBrowser();
  const reg = await register(server, app, { client_name: "Error Handling App" });
  app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await server?.stop();
});

/** Fills the launcher for a provider EHR launch with skip sign-in, skip consent and `error`;
 * returns the launch URL. */
async function launchWith(page, error) {
  await page.goto(server.base + "/launcher");
  await page.getByLabel("App", { exact: true }).selectOption(app.config.clientId);
  await page.getByLabel("User", { exact: true }).selectOption("clinician");
  await page.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-001");
  await page.getByLabel("Skip sign-in").check();
  await page.getByLabel("Skip consent").check();
  if (error) await page.getByLabel("Simulate an error").selectOption(error);
  await page.getByRole("button", { name: "Create the launch" }).click();
  return page.getByLabel("The launch URL to open").inputValue();
}

// What the app (or, when nothing reaches the app, the user) sees for each simulated error.
const cases = [
  ["authorize_invalid_client", "page", /is not registered with this server/],
  ["authorize_invalid_redirect_uri", "page", /redirect_uri .* is not registered/],
  ["authorize_invalid_scope", "app", /invalid_scope/],
  ["token_invalid_client_secret", "app", /401[\s\S]*invalid_client|invalid_client[\s\S]*401/],
  ["token_invalid_code", "app", /invalid_grant/],
  ["token_invalid_scope", "app", /invalid_scope/],
  ["token_expired_refresh_token", "app", /invalid_grant|expired/],
  ["fhir_invalid_token", "app", /401/],
  ["fhir_expired_token", "app", /401/],
];

for (const [error, where, expected] of cases) {
  test(`simulated ${error}`, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const url = await launchWith(page, error);
    await page.goto(url);
    if (where === "page") {
      await page.waitForSelector("h1");
      assert.match(await page.textContent("main"), expected);
      assert.ok(!page.url().startsWith(app.origin), "nothing is sent to the app");
    } else {
      const out = await appOutcome(page);
      assert.equal(out.done, "error", `${error}: the app sees a failure`);
      assert.match(out.text, expected);
    }
    await context.close();
  });
}

test("without a simulated error the same launch succeeds with no page shown", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const url = await launchWith(page, null);
  await page.goto(url);
  const out = await appOutcome(page);
  assert.equal(out.done, "ok", out.text);
  assert.equal(JSON.parse(out.text).patientId, "pat-001");
  await context.close();
});

test("(d) a standalone launch from the launcher with skip sign-in and skip consent completes with no page shown", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/launcher");
  await page.getByLabel("Provider standalone launch").check();
  await page.getByLabel("App", { exact: true }).selectOption(app.config.clientId);
  await page.getByLabel("User", { exact: true }).selectOption("clinician");
  await page.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-002");
  await page.getByLabel("Skip sign-in").check();
  await page.getByLabel("Skip consent").check();
  await page.getByRole("button", { name: "Create the launch" }).click();
  const fhirBase = await page.getByLabel("FHIR base URL").inputValue();
  assert.match(fhirBase, /\/sim\/[A-Za-z0-9_-]+\/fhir$/);
  const url = await page.getByLabel("The launch URL to open").inputValue();
  const shown = [];
  page.on("response", r => {
    if (r.request().isNavigationRequest() && r.url().startsWith(server.base) && r.status() === 200) shown.push(r.url());
  });
  await page.goto(url);
  const out = await appOutcome(page);
  assert.equal(out.done, "ok", out.text);
  const result = JSON.parse(out.text);
  assert.equal(result.patientId, "pat-002");
  assert.equal(result.observations, result.observationTotal, "paging through the simulation's base");
  assert.equal(result.refreshed, true);
  assert.deepEqual(shown, [], "no page of the server was shown");
  await context.close();
});
