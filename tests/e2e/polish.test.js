// Issue 9, item 7 in real Chromium: the consent page inside the EHR's app frame has no site
// header (Chromium sends `Sec-Fetch-Dest: iframe` for the frame's navigations), the portal's
// consent page speaks to the patient, and every page has the main navigation.
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

test("the consent page inside the EHR's frame has no site header; the EHR page has the navigation", async () => {
  const reg = await register(server, app, { client_name: "Framed Companion" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  await page.goto(server.base + "/ehr/patients/pat-001");
  const nav = page.getByRole("navigation", { name: "Main" });
  assert.equal(await nav.getByRole("link", { name: "EHR" }).getAttribute("aria-current"), "page");
  await page.getByRole("button", { name: "Launch Framed Companion" }).click();
  const frame = page.frame({ name: "app-frame" });
  await frame.getByRole("button", { name: "Allow" }).waitFor();
  assert.equal(await frame.locator("header.site").count(), 0, "no site header inside the frame");
  assert.equal(await frame.getByRole("navigation", { name: "Main" }).count(), 0, "no navigation inside the frame");
  assert.match(await frame.locator(".framed-user").textContent(), /Signed in as Dr\. Susan Clark/);
  assert.match(await frame.textContent("main"), /Use the context of the EHR session you launched it from/);
  // The same consent page opened as a tab has the header.
  const tab = await context.newPage();
  await tab.goto(frame.url());
  assert.equal(await tab.locator("header.site").count(), 1, "a tab shows the site header");
  await tab.close();
  await frame.getByRole("button", { name: "Allow" }).click();
  const out = await appResult(frame);
  assert.equal(out.patientId, "pat-001");
  await context.close();
});

test("the portal's consent page speaks to the patient of their own record", async () => {
  const reg = await register(server, app, { client_name: "My Diary" });
  app.config = { clientId: reg.client_id, scope: SCOPE };
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/portal");
  await signIn(page, "patient");
  await page.getByRole("button", { name: "Launch My Diary" }).click();
  const frame = page.frame({ name: "app-frame" });
  await frame.getByRole("button", { name: "Allow" }).waitFor();
  const text = await frame.textContent("main");
  assert.match(text, /Allow My Diary to access your data\?/);
  assert.match(text, /Use what you had open in your patient portal when you started it/);
  assert.doesNotMatch(text, /EHR session|selected patient/);
  assert.equal(await frame.locator("header.site").count(), 0);
  await context.close();
});

test("the favicon is served and named by every page", async () => {
  const page = await browser.newPage();
  await page.goto(server.base + "/no/such/page");
  assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Page not found");
  assert.equal(await page.locator("link[rel=icon]").getAttribute("href"), "/favicon.svg");
  const icon = await page.request.get(server.base + "/favicon.ico");
  assert.equal(icon.status(), 200, "the .ico address redirects to the SVG");
  assert.equal(icon.headers()["content-type"], "image/svg+xml");
  await page.close();
});
