// Screenshots of the developer launcher's backend-service type and of the inspector with a
// backend service's token requests, for a person to look at (not a test; not in CI).  The
// launcher is also driven inside an iframe of a page of the server's own origin (its CSP allows
// framing by 'self'), as a person would: by labels and button names.
// Usage: node backend-screenshots.js [out-dir]   (the PNGs are not committed)
"use strict";
const path = require("node:path");
const crypto = require("node:crypto");
const { startServer, launchBrowser } = require("./harness");

/** An ES384 key pair and a signer of client assertions, as a backend service would have. */
function backendKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-384" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "nightly-1", alg: "ES384", use: "sig" };
  const b64 = o => Buffer.from(JSON.stringify(o)).toString("base64url");
  const assertion = (clientId, tokenUrl, over = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: clientId, sub: clientId, aud: tokenUrl, exp: now + 240, jti: crypto.randomUUID(), ...over };
    const input = b64({ alg: "ES384", kid: jwk.kid, typ: "JWT" }) + "." + b64(claims);
    const sig = crypto.sign("sha384", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
    return input + "." + sig.toString("base64url");
  };
  return { jwks: { keys: [jwk] }, assertion };
}

async function token(tokenUrl, assertion, scope) {
  const r = await fetch(tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials", scope,
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion,
    }),
  });
  return [r.status, await r.json()];
}

(async () => {
  const out = process.argv[2] || "/tmp/smartlaunch-shots";
  require("node:fs").mkdirSync(out, { recursive: true });
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const key = backendKey();
    const page = await (await browser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
    const shot = (name, p = page) => p.screenshot({ path: path.join(out, name + ".png"), fullPage: true });
    await page.goto(server.base + "/launcher");
    await page.getByLabel("Backend service (client_credentials: no user, system/ scopes)").check();
    await shot("launcher-backend-form");
    // Ad hoc: paste the JWK Set, give the scopes.
    await page.getByLabel("Its public JWK Set (paste the JSON)").fill(JSON.stringify(key.jwks));
    await page.getByLabel("The system/ scopes it may be granted").fill("system/Patient.rs system/Observation.rs");
    await page.getByLabel("Its name (optional)").fill("Nightly export");
    await page.getByRole("button", { name: "Create the launch" }).click();
    await shot("launcher-backend-created");
    const clientId = await page.getByLabel("client_id", { exact: true }).inputValue();
    const tokenUrl = await page.getByLabel("Token URL (the assertion's aud)").inputValue();
    const command = await page.getByLabel("Get a token from the command line").inputValue();
    console.log(command);
    const inspect = await page.getByRole("link", { name: "Inspect this backend service" }).getAttribute("href");

    // Its requests: a good one, the same assertion again, a long exp, a wrong aud.
    const good = key.assertion(clientId, tokenUrl);
    const results = [
      await token(tokenUrl, good, "system/Patient.rs"),
      await token(tokenUrl, good, "system/Patient.rs"),
      await token(tokenUrl, key.assertion(clientId, tokenUrl, { exp: Math.floor(Date.now() / 1000) + 320 }), "system/Observation.rs"),
      await token(tokenUrl, key.assertion(clientId, tokenUrl, { aud: server.fhir }), "system/Patient.rs"),
    ];
    console.log(results.map(([status, body]) => status + " " + (body.error || body.scope)).join("\n"));
    await fetch(server.fhir + "/Patient?_count=1", { headers: { authorization: "Bearer " + results[0][1].access_token } });
    await page.goto(server.base + inspect);
    await shot("inspector-backend");
    // Two requests up close: the reused jti, and the wrong aud.
    await page.locator("tbody > tr").filter({ hasText: "jti reused" }).screenshot({ path: path.join(out, "inspector-backend-reused.png") });
    await page.locator("tr.checks-row").nth(1).screenshot({ path: path.join(out, "inspector-backend-reused-checks.png") });
    await page.locator("tr.checks-row").nth(3).screenshot({ path: path.join(out, "inspector-backend-aud-checks.png") });

    // The launcher in an iframe of a page of the same origin; a simulated error chosen there.
    const framed = await (await browser.newContext({ viewport: { width: 1200, height: 1000 } })).newPage();
    await framed.goto(server.base + "/robots.txt");
    await framed.setContent(`<!doctype html><title>Framed</title><h1 style="font:16px sans-serif">A page that frames the launcher</h1>
      <iframe name="launcher" src="${server.base}/launcher" style="width:100%;height:900px;border:1px solid #888"></iframe>`);
    const frame = framed.frameLocator("iframe[name=launcher]");
    await frame.getByLabel("Backend service (client_credentials: no user, system/ scopes)").check();
    await frame.getByLabel("Registered backend service").selectOption(clientId);
    await frame.getByLabel("Simulate a backend-service error").selectOption("backend_invalid_scope");
    await frame.getByRole("button", { name: "Create the launch" }).click();
    await frame.getByLabel("Token URL (the assertion's aud)").waitFor();
    await shot("launcher-backend-framed", framed);
    const [status, body] = await token(tokenUrl, key.assertion(clientId, tokenUrl), "system/Patient.rs");
    console.log("with the simulated error: " + status + " " + body.error + ": " + body.error_description);
    console.log("screenshots in " + out);
  } finally {
    await browser.close();
    await server.stop();
  }
})().catch(e => { console.error(e); process.exit(1); });
