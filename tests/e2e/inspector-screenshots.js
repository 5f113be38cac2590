// Screenshots of the issue-9 inspector pages beyond the inspector itself (inspector.test.js
// takes those): the trace switch, the chart's own launches and /account's inspector link.
// Not a test.  Usage: node inspector-screenshots.js [out-dir]
"use strict";
const path = require("node:path");
const { startServer, startApp, register, launchBrowser, appOutcome, signIn } = require("./harness");

(async () => {
  const out = process.argv[2] || "/tmp/inspector-shots";
  require("node:fs").mkdirSync(out, { recursive: true });
  const server = await startServer();
  const app = await startApp();
  const browser = await launchBrowser();
  try {
    const reg = await register(server, app, { client_name: "Hand-Launched App" });
    app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
    const page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    const shot = name => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });

    // The trace switch: off, on, then a hand-made standalone launch traced.
    await page.goto(server.base + "/launcher/trace");
    await shot("trace-switch-off");
    await page.getByRole("button", { name: "Trace the next launches of Hand-Launched App" }).click();
    await page.goto(app.origin + "/launch.html?iss=" + encodeURIComponent(server.fhir));
    await signIn(page, "clinician");
    await page.getByRole("button", { name: /Amy|Shaw|pat-001/ }).first().click().catch(() => {});
    if (await page.getByRole("button", { name: "Allow" }).count()) await page.getByRole("button", { name: "Allow" }).click();
    await appOutcome(page).catch(() => {});
    await page.goto(server.base + "/launcher/trace");
    await shot("trace-switch-on");
    await page.getByRole("link", { name: /Inspect the launch of Hand-Launched App/ }).first().click();
    await shot("inspector-hand-made");

    // The chart lists the clinician's own launches; /account links to the inspector.
    const ehr = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    await ehr.goto(server.base + "/ehr");
    await signIn(ehr, "clinician");
    await ehr.goto(server.base + "/ehr/patients/pat-001");
    await ehr.getByRole("button", { name: "Launch Hand-Launched App" }).click();
    const frame = ehr.frameLocator("iframe[name=app-frame]");
    await frame.getByRole("button", { name: "Allow" }).click().catch(() => {});
    await ehr.waitForTimeout(1500);
    await ehr.goto(server.base + "/ehr/patients/pat-001");
    await ehr.locator("details.own-launches summary").click();
    await ehr.screenshot({ path: path.join(out, "chart-own-launches.png"), fullPage: true });
    await ehr.goto(server.base + "/account");
    await ehr.screenshot({ path: path.join(out, "account-inspector-link.png"), fullPage: true });
  } finally {
    await browser.close();
    await app.stop();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
