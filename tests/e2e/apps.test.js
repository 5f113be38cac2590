// Issue 9: an app's registration is edited on /apps and the official JavaScript SMART client
// (npm fhirclient) then launches with it; remembered consent is announced on the consent page,
// skips it next time, and is forgotten from the launcher so that the page shows again.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, startApp, register, launchBrowser, appResult } = require("./harness");

let server, app, browser;

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

/** Fills the launcher for a provider EHR launch of `clientId` by the clinician (skip sign-in)
 * with the options named in `checks`; returns the launch URL. */
async function launchUrl(page, clientId, checks = []) {
  await page.goto(server.base + "/launcher");
  await page.getByLabel("App", { exact: true }).selectOption(clientId);
  await page.getByLabel("User", { exact: true }).selectOption("clinician");
  await page.getByLabel("Patient (provider launches; for a standalone launch: empty, or several separated by commas, for the patient picker)").fill("pat-001");
  await page.getByLabel("Skip sign-in").check();
  for (const label of checks) await page.getByLabel(label).check();
  await page.getByRole("button", { name: "Create the launch" }).click();
  return page.getByLabel("The launch URL to open").inputValue();
}

test("an app's redirect URI edited on /apps is the one authorize accepts", async () => {
  const reg = await register(server, app, {
    client_name: "Edited App",
    redirect_uris: [app.origin + "/old-callback.html"],
  });
  app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
  const context = await browser.newContext();
  const page = await context.newPage();
  // Registered with another redirect URI: fhirclient's ./index.html is refused at authorize.
  await page.goto(await launchUrl(page, reg.client_id, ["Skip consent"]));
  await page.waitForSelector("h1");
  assert.match(await page.textContent("main"), /redirect_uri .* is not registered/);

  await page.goto(server.base + "/apps");
  await page.getByRole("link", { name: "Edit Edited App" }).click();
  const uris = page.getByLabel("Redirect URIs (one per line)");
  assert.equal(await uris.inputValue(), app.origin + "/old-callback.html", "the form is filled");
  await uris.fill(app.origin + "/index.html");
  await page.getByRole("button", { name: "Save changes" }).click();
  assert.match(await page.textContent("main"), /Edited App is updated/);

  await page.goto(await launchUrl(page, reg.client_id, ["Skip consent"]));
  const out = await appResult(page);
  assert.equal(out.patientId, "pat-001");
  await context.close();
});

test("the consent page says it remembers; the launcher forgets, and always asks on demand", async () => {
  const reg = await register(server, app, { client_name: "Remembering App" });
  app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
  const context = await browser.newContext();
  const page = await context.newPage();

  await page.goto(await launchUrl(page, reg.client_id));
  await page.getByRole("button", { name: "Allow" }).waitFor();
  const remembered = await page.textContent("#remembered");
  assert.match(remembered, /Smartlaunch will remember what you allow for Remembering App: next time Remembering App asks/);
  assert.equal(await page.getByRole("link", { name: "Account page" }).getAttribute("href"), "/account");
  await page.getByRole("button", { name: "Allow" }).click();
  assert.equal((await appResult(page)).patientId, "pat-001");

  // Remembered: the next launch reaches the app with no page in between.
  await page.goto(await launchUrl(page, reg.client_id));
  assert.equal((await appResult(page)).patientId, "pat-001");

  // "Always ask for consent" shows the page all the same.
  await page.goto(await launchUrl(page, reg.client_id, ["Always ask for consent"]));
  await page.getByRole("button", { name: "Allow" }).waitFor();
  assert.match(await page.textContent("#remembered"), /always ask for consent/);

  // Forget it from the launcher: the next launch asks again.
  await page.goto(server.base + "/launcher");
  await page.getByLabel("App whose consent to forget").selectOption(reg.client_id);
  await page.getByLabel("User who gave it").selectOption("clinician");
  await page.getByRole("button", { name: "Forget remembered consent" }).click();
  assert.match(await page.textContent("main"), /Consent forgotten[\s\S]*patient\/\*\.rs/);
  await page.goto(await launchUrl(page, reg.client_id));
  await page.getByRole("button", { name: "Allow" }).waitFor();
  await context.close();
});
