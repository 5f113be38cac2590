// Screenshots of /apps with its Edit and Delete controls, the edit form, the delete
// confirmation, the consent page's "remembered" line and the launcher's consent controls, for
// a person to look at (not a test; not in CI).
// Usage: node apps-screenshots.js [out-dir]   (the PNGs are not committed)
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
    const reg = await register(server, app, { client_name: "Growth Chart", scope: "launch openid fhirUser offline_access patient/*.rs" });
    await register(server, app, { client_name: "Secret Server App", token_endpoint_auth_method: "client_secret_basic" });
    app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const shot = name => page.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await page.goto(server.base + "/apps");
    await shot("apps-list");
    await page.getByRole("link", { name: "Edit Growth Chart" }).click();
    await shot("apps-edit");
    await page.getByLabel("Redirect URIs (one per line)").fill("http://evil.example/cb");
    await page.getByRole("button", { name: "Save changes" }).click();
    await shot("apps-edit-error");
    await page.goto(server.base + "/apps");
    await page.getByRole("link", { name: "Edit Secret Server App" }).click();
    await page.getByLabel("Name").fill("Secret Server App v2");
    await page.getByRole("button", { name: "Save changes" }).click();
    await shot("apps-edited");
    await page.getByRole("link", { name: "Delete Secret Server App v2" }).click();
    await shot("apps-delete");
    await page.getByRole("button", { name: "Delete Secret Server App v2" }).click();
    await shot("apps-deleted");

    await page.goto(server.base + "/launcher");
    await page.getByLabel("App", { exact: true }).selectOption(reg.client_id);
    await page.getByLabel("User", { exact: true }).selectOption("clinician");
    await page.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-001");
    await page.getByLabel("Skip sign-in").check();
    await page.getByLabel("Always ask for consent").check();
    await page.getByRole("button", { name: "Create the launch" }).click();
    await shot("launcher-consent-controls");
    await page.getByLabel("Skip consent").check();
    await page.getByRole("button", { name: "Create the launch" }).click();
    await shot("launcher-always-ask-and-skip");
    await page.getByLabel("Skip consent").uncheck();
    await page.getByLabel("Always ask for consent").uncheck();
    await page.getByRole("button", { name: "Create the launch" }).click();
    await page.goto(await page.getByLabel("The launch URL to open").inputValue());
    await page.getByRole("button", { name: "Allow" }).waitFor();
    await shot("consent-remembered");
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForSelector("body[data-done]");
    await page.goto(server.base + "/launcher");
    await page.getByLabel("App whose consent to forget").selectOption(reg.client_id);
    await page.getByLabel("User who gave it").selectOption("clinician");
    await page.getByRole("button", { name: "Forget remembered consent" }).click();
    await shot("consent-forgotten");
  } finally {
    await browser.close();
    await app.stop();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
