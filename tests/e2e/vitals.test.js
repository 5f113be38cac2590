// Issue 11 acceptance: "Vitals", the demo app built on the Rust client library
// (smartlaunch-client), launched in real headless Chromium — inside the EHR's chart frame, from
// the patient portal and standalone — and offered by the developer launcher as a ready example.
// VITALS_SCREENSHOTS=<dir> keeps a screenshot of each.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { startServer, launchBrowser, signIn, appFrame } = require("./harness");

let server, browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function shoot(page, name) {
  if (process.env.VITALS_SCREENSHOTS) {
    await page.screenshot({ path: path.join(process.env.VITALS_SCREENSHOTS, name + ".png"), fullPage: true });
  }
}

/** Clicks Allow when the consent page shows before the app (the first launch of a user). */
async function allowIfAsked(frame) { // a frame or a page
  const allow = frame.getByRole("button", { name: "Allow" });
  const chart = frame.getByRole("heading", { name: "Vital signs" });
  await Promise.race([allow.waitFor({ timeout: 30000 }), chart.waitFor({ timeout: 30000 })]);
  if (await allow.isVisible()) await allow.click();
  await chart.waitFor({ timeout: 30000 });
}

test("(a) a clinician launches Vitals in the EHR's chart frame: that patient's charts, no banner", async () => {
  assert.ok(server.demo, "serve runs the demo app beside the sandbox");
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(server.base + "/ehr");
  await signIn(page, "clinician");
  await page.getByLabel("Search by name").fill("shaw");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("link", { name: "Amy Shaw" }).click();
  await page.getByRole("button", { name: "Launch Vitals" }).click();
  const frame = await appFrame(page);
  await allowIfAsked(frame);
  assert.ok(frame.url().startsWith(server.demo + "/"), "the app runs on its own origin: " + frame.url());
  assert.equal(await frame.getByRole("region", { name: "Patient" }).count(), 0,
    "no banner in the app: the EHR shows its own (need_patient_banner is false)");
  assert.equal(await page.getByRole("region", { name: "Patient banner" }).getByRole("heading").textContent(), "Amy Shaw");
  const charts = frame.getByRole("img", { name: /Blood pressure/ });
  assert.equal(await charts.count(), 1, "a blood pressure chart");
  assert.ok(await frame.locator("svg.chart polyline").count() >= 3, "lines drawn");
  assert.equal(await frame.getByRole("heading", { name: "Laboratory results" }).count(), 1);
  await frame.getByText("Signed in as Practitioner/pract-001").waitFor();
  // The EHR's style reached the app (smart_style_url): its background colour is the EHR's.
  const background = await frame.evaluate(() => getComputedStyle(document.body).getPropertyValue("--background").trim());
  assert.match(background, /^#[0-9a-f]{3,8}$/i);
  await shoot(page, "vitals-in-ehr");
  await context.close();
});

test("(b) a patient opens Vitals from the portal: their own charts", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(server.base + "/portal");
  await signIn(page, "patient");
  await page.getByRole("button", { name: "Launch Vitals" }).click();
  const frame = await appFrame(page);
  await allowIfAsked(frame);
  await frame.getByText("Signed in as Patient/pat-001").waitFor();
  assert.equal(await frame.getByRole("img", { name: /Body weight/ }).count(), 1);
  await context.close();
});

test("(c) Vitals launched standalone asks for a patient and shows its own banner", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(server.demo + "/");
  await page.getByRole("link", { name: "Launch it standalone" }).click();
  await signIn(page, "clinician");
  await page.getByLabel("Search by name").fill("okafor");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("button", { name: /Samuel Okafor/ }).click();
  await allowIfAsked(page); // the clinician approved Vitals in (a): no consent page again

  const banner = page.getByRole("region", { name: "Patient" });
  assert.match(await banner.textContent(), /Samuel Okafor/, "need_patient_banner: the app draws the banner");
  await shoot(page, "vitals-standalone");
  await context.close();
});

test("(d) the developer launcher offers Vitals as a ready example", async () => {
  if (process.env.SMARTLAUNCH_E2E_PROXY === "1") return; // run by `demo-app`, not by `serve`, there
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.base + "/launcher");
  await page.getByRole("heading", { name: "Ready example: Vitals" }).waitFor();
  const standalone = page.getByRole("link", { name: "Launch it standalone" });
  assert.ok((await standalone.getAttribute("href")).startsWith(server.demo + "/launch?iss="));
  await shoot(page, "launcher-ready-example");
  await context.close();
});
