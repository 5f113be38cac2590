// Screenshots of the sandbox pages (issue 9, item 6 and the portal's plain labels of item 7),
// for a person to look at (not a test; not in CI): /sandbox (open, a refused confirmation, after
// a reset), the EHR's data browser (search, a patient's resources, a resource's JSON), the
// new-patient form (empty, with mistakes, the new chart), the EHR chart and the portal.
// Usage: node sandbox-screenshots.js [out-dir]   (the PNGs are not committed)
"use strict";
const path = require("node:path");
const { startServer, launchBrowser, signIn } = require("./harness");

(async () => {
  const out = process.argv[2] || "/work/shots/sandbox";
  require("node:fs").mkdirSync(out, { recursive: true });
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    const shot = name => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await page.goto(server.base + "/sandbox");
    await shot("sandbox");
    await page.getByLabel("Type reset to confirm").fill("reset");
    await page.getByRole("button", { name: "Reset the sandbox" }).click();
    await page.getByRole("status").waitFor();
    await shot("sandbox-reset-done");

    await page.goto(server.base + "/ehr");
    await signIn(page, "clinician");
    await shot("ehr-patients");
    await page.getByRole("link", { name: "Browse the FHIR data" }).click();
    await page.getByLabel("Search a patient by name").fill("Shaw");
    await page.getByRole("button", { name: "Search" }).click();
    await shot("data-search");
    await page.getByRole("link", { name: "Amy Shaw" }).click();
    await page.getByRole("link", { name: "Observation", exact: true }).click();
    await shot("data-patient-observations");
    await page.getByRole("link", { name: "obs-001-1-1", exact: true }).click();
    await shot("data-resource-json");

    await page.goto(server.base + "/ehr/patients/pat-001");
    await shot("ehr-chart");

    await page.goto(server.base + "/ehr/patients/new");
    await shot("new-patient");
    await page.getByLabel("Given name").fill("Ada");
    await page.getByLabel("Family name").fill("Lovelace");
    await page.getByLabel("Birth date").fill("1980-12-10");
    await page.getByLabel(/^Height/).fill("500");
    await page.getByLabel(/^Weight/).fill("61.5");
    await page.getByLabel(/systolic/).fill("70");
    await page.getByLabel(/diastolic/).fill("76");
    await page.getByRole("button", { name: "Add the patient" }).click();
    await shot("new-patient-errors");
    await page.getByLabel(/^Height/).fill("165");
    await page.getByLabel(/systolic/).fill("118");
    await page.getByRole("button", { name: "Add the patient" }).click();
    await page.getByRole("region", { name: "Patient banner" }).waitFor();
    await shot("new-patient-chart");

    const portal = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
    await portal.goto(server.base + "/portal");
    await signIn(portal, "patient");
    await portal.screenshot({ path: path.join(out, "portal.png"), fullPage: true });
  } finally {
    await browser.close();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
