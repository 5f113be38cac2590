// Takes screenshots of the server's pages for a person to look at (not a test; not in CI).
// Usage: node screenshots.js [out-dir]   (the PNGs are not committed)
"use strict";
const path = require("node:path");
const { startServer, startApp, register, launchBrowser } = require("./harness");

(async () => {
  const out = process.argv[2] || "/tmp/smartlaunch-shots";
  require("node:fs").mkdirSync(out, { recursive: true });
  const server = await startServer();
  const app = await startApp();
  const browser = await launchBrowser();
  try {
    const reg = await register(server, app);
    app.config = { clientId: reg.client_id, scope: "launch/patient launch/encounter openid fhirUser offline_access patient/*.rs" };
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    const shot = name => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await page.goto(server.base + "/");
    await shot("home");
    await page.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
    await page.getByLabel("Username").waitFor();
    await shot("signin");
    await page.getByLabel("Username").fill("clinician");
    await page.getByLabel("Password").fill("wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await shot("signin-failed");
    await page.getByLabel("Username").fill("clinician");
    await page.getByLabel("Password").fill("clinician");
    await page.getByRole("button", { name: "Sign in" }).click();
    await shot("patients");
    await page.getByLabel("Search by name").fill("okafor");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByRole("button", { name: /Samuel Okafor/ }).click();
    await shot("encounters");
    await page.getByRole("button", { name: /Encounter on/ }).first().click();
    await shot("consent");
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForSelector("body[data-done]");
    await shot("app");
    await page.goto(server.base + "/account");
    await shot("account");
    await page.goto(server.base + "/auth/authorize?client_id=nope");
    await shot("error");
    // A flow link opened in a browser that did not start it.
    const started = await fetch(server.base + "/auth/authorize?" + new URLSearchParams({
      response_type: "code", client_id: reg.client_id, redirect_uri: app.origin + "/index.html",
      scope: "patient/*.rs", state: "0123456789abcdefghij", aud: server.fhir,
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
    }), { redirect: "manual" });
    await page.goto(server.base + started.headers.get("location"));
    await shot("flow-other-browser");

    // The EHR simulator: sign-in, patient list, chart with a framed app; the patient portal.
    const ehrApp = await register(server, app, { client_name: "Chart Companion" });
    app.config = { clientId: ehrApp.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
    const ehr = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    const ehrShot = name => ehr.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await ehr.goto(server.base + "/ehr");
    await ehrShot("ehr-signin");
    await ehr.getByLabel("Username").fill("clinician");
    await ehr.getByLabel("Password").fill("clinician");
    await ehr.getByRole("button", { name: "Sign in" }).click();
    await ehrShot("ehr-patients");
    await ehr.getByRole("link", { name: "Amy Shaw" }).click();
    await ehr.getByRole("link", { name: /^Use the encounter/ }).first().click();
    await ehrShot("ehr-chart");
    await ehr.getByRole("button", { name: "Launch Chart Companion" }).click();
    const frame = ehr.frame({ name: "app-frame" });
    await frame.getByRole("button", { name: "Allow" }).click();
    await frame.waitForSelector("body[data-done]");
    await ehrShot("ehr-framed-app");
    const portal = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    await portal.goto(server.base + "/portal");
    await portal.getByLabel("Username").fill("patient");
    await portal.getByLabel("Password").fill("patient");
    await portal.getByRole("button", { name: "Sign in" }).click();
    await portal.screenshot({ path: path.join(out, "portal.png"), fullPage: true });

    // The app gallery and the developer launcher (its form, then a created standalone launch).
    const dev = await (await browser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
    await dev.goto(server.base + "/apps");
    await dev.screenshot({ path: path.join(out, "apps.png"), fullPage: true });
    await dev.goto(server.base + "/launcher");
    await dev.screenshot({ path: path.join(out, "launcher.png"), fullPage: true });
    await dev.getByLabel("Provider standalone launch").check();
    await dev.getByLabel("App", { exact: true }).selectOption(ehrApp.client_id);
    await dev.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-001");
    await dev.getByLabel("Skip sign-in").check();
    await dev.getByRole("button", { name: "Create the launch" }).click();
    await dev.screenshot({ path: path.join(out, "launcher-created.png"), fullPage: true });
    // Run the app through the simulation, then look at the launch in the inspector.
    const launchUrl = await dev.getByLabel("The launch URL to open").inputValue();
    const inspectUrl = await dev.getByRole("link", { name: "Inspect this launch" }).getAttribute("href");
    const run = await (await browser.newContext()).newPage();
    await run.goto(launchUrl);
    await run.waitForSelector("body[data-done]");
    await dev.goto(server.base + inspectUrl);
    await dev.screenshot({ path: path.join(out, "inspector.png"), fullPage: true });
    console.log("screenshots in " + out);
  } finally {
    await browser.close();
    await app.stop();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
