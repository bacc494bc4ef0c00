// Headless Chromium walks the authorization_code + PKCE flow of a PUBLIC client end to end.
// Driven by tests/browser.rs (which starts the issuer and the protected app on 127.0.0.1):
//
//   node tests/browser/flow.mjs <issuer> <client_id> <redirect_uri> <protected_url> <screenshot_dir>
//
// Steps (each printed): PKCE verifier/challenge made here, like a real public client ->
// open /oauth2/authorize -> login page (screenshot) -> fill the form -> consent page
// (screenshot) -> approve -> lands on the redirect URI with code, state and iss -> exchange the
// code at the token endpoint (client_id + code_verifier only) -> call the protected route with
// the token (200) and without (401). Exits non-zero on any surprise.

import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [issuer, clientId, redirectUri, protectedUrl, shotDir] = process.argv.slice(2);
if (!shotDir) {
  console.error('usage: flow.mjs <issuer> <client_id> <redirect_uri> <protected_url> <screenshot_dir>');
  process.exit(2);
}
const username = process.env.FLOW_USERNAME ?? 'alice';
const password = process.env.FLOW_PASSWORD;
if (!password) {
  console.error('FLOW_PASSWORD is not set');
  process.exit(2);
}

const b64url = (buf) => buf.toString('base64url');
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const state = b64url(randomBytes(16));

function check(cond, what) {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
}

function step(n, what) {
  console.log(`STEP ${n}: ${what}`);
}

mkdirSync(shotDir, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'tb-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15000);

  const authorize = new URL('/oauth2/authorize', issuer);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: 'orders.read',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  step(1, `open ${authorize.origin}${authorize.pathname}`);
  const res = await page.goto(authorize.toString());
  check(res.status() === 200, `login page status ${res.status()}`);
  const headers = res.headers();
  check(headers['x-frame-options'] === 'DENY', 'X-Frame-Options: DENY');
  check((headers['content-security-policy'] ?? '').includes("frame-ancestors 'none'"), 'CSP frame-ancestors');
  check(headers['cache-control'] === 'no-store', 'Cache-Control: no-store');
  check((await page.title()) === 'Sign in', `title ${await page.title()}`);
  const loginShot = join(shotDir, 'login.png');
  await page.screenshot({ path: loginShot, fullPage: true });
  console.log(`SCREENSHOT login ${loginShot}`);

  step(2, `fill the login form as ${username}`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);

  if (await page.locator('#approve').count()) {
    step(3, 'consent page: approve');
    check((await page.title()) === 'Allow access?', 'consent title');
    check((await page.textContent('#client')) === clientId, 'consent names the client');
    const consentShot = join(shotDir, 'consent.png');
    await page.screenshot({ path: consentShot, fullPage: true });
    console.log(`SCREENSHOT consent ${consentShot}`);
    await page.click('#approve');
  } else {
    throw new Error(`expected the consent page, got ${page.url()}`);
  }

  await page.waitForURL((u) => u.toString().startsWith(redirectUri));
  const landed = new URL(page.url());
  step(4, `landed on ${landed.origin}${landed.pathname}`);
  const code = landed.searchParams.get('code');
  check(code && code.length >= 43, 'a code on the redirect URI');
  check(landed.searchParams.get('state') === state, 'state echoed');
  check(landed.searchParams.get('iss') === issuer, 'iss (RFC 9207)');
  check((await page.textContent('body')).includes('callback received'), 'the app served the redirect URI');

  step(5, 'exchange the code (client_id + code_verifier)');
  const tokenRes = await fetch(new URL('/oauth2/token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: clientId,
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    }),
  });
  const tokens = await tokenRes.json();
  check(tokenRes.status === 200, `token status ${tokenRes.status}: ${JSON.stringify(tokens)}`);
  check(tokens.token_type === 'Bearer' && tokens.access_token && tokens.refresh_token, 'access + refresh token');
  console.log(`TOKEN expires_in=${tokens.expires_in} scope=${tokens.scope}`);

  step(6, 'call the protected route');
  const anon = await fetch(protectedUrl);
  check(anon.status === 401, `without a token: ${anon.status}`);
  const ok = await fetch(protectedUrl, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  const body = await ok.text();
  check(ok.status === 200, `with the token: ${ok.status} ${body}`);
  console.log(`PROTECTED ${ok.status} ${body}`);

  step(7, 'the code again: refused');
  const replay = await fetch(new URL('/oauth2/token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: clientId,
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    }),
  });
  check(replay.status === 400, `replay ${replay.status}`);
  console.log('FLOW OK');
} catch (e) {
  console.error(`FLOW FAILED: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  if (context) {
    await context.close();
  }
  rmSync(profile, { recursive: true, force: true });
}
