// Screenshots of issue 9's polish for a person to look at (not a test; not in CI): the
// navigation (wide and narrow), the 404 page, the consent page inside the EHR's and the
// portal's app frame, and /dev/callback with a code.
// Usage: node polish-screenshots.js [out-dir]   (the PNGs are not committed)
"use strict";
const path = require("node:path");
const { startServer, startApp, register, launchBrowser, signIn } = require("./harness");

(async () => {
  const out = process.argv[2] || "/tmp/smartlaunch-shots";
  require("node:fs").mkdirSync(out, { recursive: true });
  const server = await startServer();
  const app = await startApp();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const shot = (p, name) => p.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await page.goto(server.base + "/");
    await shot(page, "home-nav");
    await page.goto(server.base + "/launcher");
    await shot(page, "launcher-nav");
    await page.goto(server.base + "/no/such/page");
    await shot(page, "404");
    const narrow = await browser.newPage({ viewport: { width: 380, height: 700 } });
    await narrow.goto(server.base + "/");
    await narrow.screenshot({ path: path.join(out, "home-nav-narrow.png") });
    await narrow.goto(server.base + "/no/such/page");
    await narrow.screenshot({ path: path.join(out, "404-narrow.png") });

    // The consent page inside the EHR's app frame, and inside the portal's.
    const reg = await register(server, app, { client_name: "Chart Companion" });
    app.config = { clientId: reg.client_id, scope: "launch openid fhirUser offline_access patient/*.rs" };
    const ehr = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    await ehr.goto(server.base + "/ehr");
    await signIn(ehr, "clinician");
    await ehr.goto(server.base + "/ehr/patients/pat-001");
    await ehr.getByRole("button", { name: "Launch Chart Companion" }).click();
    await ehr.frame({ name: "app-frame" }).getByRole("button", { name: "Allow" }).waitFor();
    await shot(ehr, "ehr-frame-consent");
    const portal = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
    await portal.goto(server.base + "/portal");
    await signIn(portal, "patient");
    await portal.getByRole("button", { name: "Launch Chart Companion" }).click();
    await portal.frame({ name: "app-frame" }).getByRole("button", { name: "Allow" }).waitFor();
    await shot(portal, "portal-frame-consent");

    // /dev/callback with a code: a registration naming it, an authorize request, Allow.
    const res = await fetch(server.base + "/auth/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_name: "My App", redirect_uris: [server.base + "/dev/callback"], token_endpoint_auth_method: "none" }),
    });
    const dev = await res.json();
    const dp = await (await browser.newContext({ viewport: { width: 1100, height: 800 } })).newPage();
    await dp.goto(server.base + "/auth/authorize?" + new URLSearchParams({
      response_type: "code", client_id: dev.client_id, redirect_uri: server.base + "/dev/callback",
      scope: "launch/patient openid fhirUser patient/*.rs", state: "3f9c2a1b7d4e6f8091a2b3c4d5e6f708", aud: server.fhir,
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
    }));
    await signIn(dp, "patient");
    await shot(dp, "standalone-patient-consent");
    await dp.getByRole("button", { name: "Allow" }).click();
    await dp.waitForURL(u => u.pathname === "/dev/callback");
    await shot(dp, "dev-callback");
    await dp.goto(server.base + "/dev/callback?error=access_denied&error_description=The+user+denied+access&state=x");
    await shot(dp, "dev-callback-error");
  } finally {
    await browser.close();
    await app.stop();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
