#!/usr/bin/env node
// End-to-end checks of social-signin's browser pages in headless Chromium, driven by
// playwright-core. See README.md in this folder.
//
// Starts the given `api` binary in a fresh temporary directory (SQLite, demo provider,
// a random free port on 127.0.0.1), clicks through the sign-in flows like a person,
// saves a screenshot of each step under target/e2e/, and prints one PASS/FAIL line per
// check and a closing "N passed, N failed" line. Exits non-zero when any check fails.
//
// Environment:
//   SIGNIN_API_BIN   the api binary (default: the first of target/debug/api and
//                    $CARGO_TARGET_DIR/debug/api that exists)
//   CHROMIUM_BIN     default /usr/bin/chromium (Debian's package; never downloaded)
//   E2E_OUT_DIR      screenshots and api.log (default: <repo>/target/e2e)
//   E2E_TIMEOUT_MS   bound on the whole run (default 120000)
//   E2E_HEADED=1     show the browser (needs a display)

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, request as apiRequest } from 'playwright-core';
import { CLIENT_ID as GOOGLE_CLIENT_ID, GSI_CLIENT_STUB, startGoogleStub } from './google_stub.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const OUT_DIR = path.resolve(process.env.E2E_OUT_DIR || path.join(ROOT, 'target/e2e'));
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOTAL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 120_000);
const CHECK_TIMEOUT_MS = 40_000; // one check, including its sign-in
const STEP_TIMEOUT_MS = 15_000; // one navigation, click or wait
const READY_TIMEOUT_MS = 30_000; // api start-up until /readyz answers 200

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Query or fragment parameters that must never reach a URL after the callback.
const SECRET_PARAM = /[?&#](code|access_token|id_token|refresh_token|token|session|session_id)=/i;

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const log = (...args) => console.log(`[${elapsed()}]`, ...args);

// ---- the api process -----------------------------------------------------------

function findApiBin() {
  const candidates = process.env.SIGNIN_API_BIN
    ? [process.env.SIGNIN_API_BIN]
    : [
        path.join(ROOT, 'target/debug/api'),
        process.env.CARGO_TARGET_DIR && path.join(process.env.CARGO_TARGET_DIR, 'debug/api'),
      ].filter(Boolean);
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return path.resolve(candidate);
    } catch {
      // try the next one
    }
  }
  throw new Error(
    `no api binary at ${candidates.join(' or ')}: build it (cargo build -p api) and set SIGNIN_API_BIN`,
  );
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the api; resolves to { child, base, workDir, logFile } once /readyz is 200. */
async function startApi(bin, extraEnv = {}) {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'signin-e2e-'));
  const logFile = path.join(workDir, 'api.log');
  // A port picked a moment ago can be taken again before the api binds it: retry.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    // Only our settings: a developer's SIGNIN_* (a real provider, PostgreSQL) must not
    // leak in, and the demo provider is on only when no other provider is configured.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.toUpperCase().startsWith('SIGNIN_')),
    );
    Object.assign(env, {
      SIGNIN_LISTEN: `127.0.0.1:${port}`,
      // Metrics have a listener of their own; any free port, not the default 9090.
      SIGNIN_METRICS__LISTEN: '127.0.0.1:0',
      SIGNIN_PUBLIC_URL: base,
      SIGNIN_DATABASE_URL: `sqlite://${path.join(workDir, 'signin.db')}?mode=rwc`,
      SIGNIN_SECRET_KEY: randomBytes(32).toString('hex'),
      SIGNIN_PROVIDERS__DEMO__KIND: 'demo',
      RUST_LOG: process.env.RUST_LOG || 'info',
      NO_COLOR: '1',
      ...extraEnv,
    });
    // `undefined` in extraEnv removes a default (the demo provider).
    for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
    const out = fs.openSync(logFile, 'a');
    const child = spawn(bin, [], { cwd: workDir, env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return { child, base, workDir, logFile };
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    if (!exited) {
      await stopApi(child);
      throw new Error(`the api did not answer 200 on ${base}/readyz within ${READY_TIMEOUT_MS} ms`);
    }
    const tail = fs.readFileSync(logFile, 'utf8');
    if (!/address already in use|AddrInUse/i.test(tail) || attempt === 3) {
      throw new Error(`the api exited during start-up (${JSON.stringify(exited)})`);
    }
    log(`port ${port} was taken, retrying`);
  }
  throw new Error('unreachable');
}

/** SIGTERM, up to 10 s for a graceful stop, then SIGKILL. */
async function stopApi(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

// ---- instrumentation -----------------------------------------------------------

/** Everything the browser did or complained about, per context label. */
const observed = {
  consoleErrors: [], // { label, url, text }
  pageErrors: [], // { label, url, text }
  cspViolations: [], // { label, url, directive, blocked }
  requests: [], // { label, seq, url, method, referer, navigation, mainFrame }
  documents: [], // { label, url, status, type, csp }: main-frame HTML responses
};
let requestSeq = 0;

const instrumented = new WeakSet();
function instrumentPage(label, page) {
  if (instrumented.has(page)) return;
  instrumented.add(page);
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const source = (msg.location() && msg.location().url) || '';
      observed.consoleErrors.push({ label, url: page.url(), source, text: msg.text() });
    }
  });
  page.on('pageerror', (err) => {
    observed.pageErrors.push({ label, url: page.url(), text: String(err && err.message) });
  });
  page.on('response', (res) => {
    const req = res.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    const headers = res.headers();
    observed.documents.push({
      label,
      url: res.url(),
      status: res.status(),
      type: headers['content-type'] || '',
      csp: headers['content-security-policy'] || '',
    });
  });
  // Every request, redirects included (each hop is its own Request object).
  page.on('request', (req) => {
    observed.requests.push({
      label,
      seq: requestSeq++,
      url: req.url(),
      method: req.method(),
      referer: req.headers().referer || '',
      navigation: req.isNavigationRequest(),
      mainFrame: req.frame() === page.mainFrame(),
    });
  });
}

/** A fresh browser profile (cookies and all) whose pages are instrumented. */
async function newContext(browser, base, label) {
  const context = await browser.newContext({
    baseURL: base,
    viewport: { width: 900, height: 640 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  // CSP violations as the page sees them (a binding is not subject to the page's CSP).
  await context.exposeBinding('__e2eCspViolation', (source, v) => {
    observed.cspViolations.push({ label, ...v });
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__e2eCspViolation({
        url: e.documentURI,
        directive: e.violatedDirective,
        blocked: e.blockedURI,
        sample: e.sample,
      });
    });
  });
  context.on('page', (page) => instrumentPage(label, page));
  const page = await context.newPage();
  instrumentPage(label, page);
  return { context, page, label };
}

/** Main-frame navigations of a context, in order, as paths with their query. */
function navigations(label) {
  return observed.requests
    .filter((r) => r.label === label && r.navigation && r.mainFrame)
    .map((r) => {
      const u = new URL(r.url);
      return u.pathname + u.search;
    });
}

// ---- helpers -------------------------------------------------------------------

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

let shotCount = 0;
async function screenshot(page, name) {
  shotCount += 1;
  const file = path.join(OUT_DIR, `${String(shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_TIMEOUT_MS });
  log(`   screenshot ${path.relative(ROOT, file)}`);
}

const pathOf = (url) => new URL(url).pathname;

/** Waits until the page's URL has this path (and optionally a predicate holds). */
async function waitForPath(page, wanted, timeout = STEP_TIMEOUT_MS) {
  await page.waitForURL((u) => u.pathname === wanted, { timeout, waitUntil: 'load' });
}

/** A gate for /auth/status: requests wait until open() is called. */
async function gateStatus(page) {
  let open;
  const opened = new Promise((resolve) => {
    open = resolve;
  });
  const seen = [];
  let firstSeen;
  const first = new Promise((resolve) => {
    firstSeen = resolve;
  });
  await page.route(
    (u) => u.pathname === '/auth/status',
    async (route) => {
      seen.push(route.request().url());
      firstSeen();
      await opened;
      await route.continue().catch(() => {}); // the page may have moved on
    },
  );
  return {
    seen,
    first: () => withTimeout(first, STEP_TIMEOUT_MS, 'the preloader polling /auth/status'),
    open: () => open(),
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** GET with the context's cookies; returns { status, json }. */
async function getJson(context, url) {
  const res = await context.request.get(url, { timeout: STEP_TIMEOUT_MS, maxRedirects: 0 });
  let json = null;
  try {
    json = await res.json();
  } catch {
    // not JSON
  }
  return { status: res.status(), json, headers: res.headers() };
}

/**
 * From `/` to the demo provider's form, filled; returns once the authorize page shows.
 * The "Sign in with Demo" link is the index page's `<a href="/auth/demo/login">`.
 */
async function openDemoAuthorize(page) {
  await page.goto('/');
  const link = page.getByRole('link', { name: 'Sign in with Demo' });
  await link.waitFor({ state: 'visible' });
  assert(
    (await link.getAttribute('href')) === '/auth/demo/login',
    'the "Sign in with Demo" link does not point at /auth/demo/login',
  );
  await link.click();
  await waitForPath(page, '/demo-provider/authorize');
  await page.getByRole('heading', { name: 'Demo provider' }).waitFor();
}

async function fillDemoForm(page, name, email) {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
}

const submitAllow = (page) => page.getByRole('button', { name: 'Sign in', exact: true }).click();

/** The whole sign-in by clicking, ending signed in on `/`. */
async function signIn(page, name, email) {
  await openDemoAuthorize(page);
  await fillDemoForm(page, name, email);
  await submitAllow(page);
  await waitForPath(page, '/');
  await page.locator('.greeting').waitFor();
}

/** /api/me fetched by the page itself (its cookies, its origin). */
async function meFromPage(page) {
  return page.evaluate(async () => {
    const res = await fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' });
    return { status: res.status, json: await res.json().catch(() => null) };
  });
}

// ---- the checks ------------------------------------------------------------------

const results = [];
async function check(name, fn) {
  if (state.aborted) return;
  const t0 = Date.now();
  try {
    await withTimeout(fn(), CHECK_TIMEOUT_MS, name);
    results.push({ name, ok: true });
    log(`PASS ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    if (state.aborted) return;
    results.push({ name, ok: false, error: err });
    log(`FAIL ${name} (${Date.now() - t0} ms): ${err && err.message}`);
  }
}

async function main() {
  const bin = findApiBin();
  fs.accessSync(CHROMIUM_BIN, fs.constants.X_OK);
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const f of fs.readdirSync(OUT_DIR)) {
    if (f.endsWith('.png')) fs.rmSync(path.join(OUT_DIR, f));
  }

  log(`api binary: ${bin}`);
  const api = await startApi(bin);
  state.api = api;
  log(`api ready on ${api.base} (work dir ${api.workDir})`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: process.env.E2E_HEADED !== '1',
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      // Nothing leaves loopback: no proxy, and every host name but 127.0.0.1 fails.
      '--no-proxy-server',
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    ],
  });
  state.browser = browser;
  log(`chromium ${browser.version()} (${CHROMIUM_BIN})`);

  // 1. The demo flow, by clicking.
  await check('1 demo sign-in by clicking', async () => {
    const { page, label } = await newContext(browser, api.base, 'demo-flow');
    await page.goto('/');
    await page.getByRole('link', { name: 'Sign in with Demo' }).waitFor();
    await screenshot(page, 'index-signed-out');
    await openDemoAuthorize(page);
    await fillDemoForm(page, 'Ada Lovelace', 'ada@example.com');
    await screenshot(page, 'demo-authorize-form');
    await submitAllow(page);
    await waitForPath(page, '/');
    const greeting = page.locator('.greeting');
    await greeting.waitFor();
    assert((await greeting.textContent()).trim() === 'Hi, Ada', `greeting: ${await greeting.textContent()}`);
    await page.getByRole('button', { name: 'Log out' }).waitFor();
    await screenshot(page, 'index-signed-in');
    const me = await meFromPage(page);
    assert(me.status === 200, `/api/me from the page: ${me.status}`);
    assert(me.json.email === 'ada@example.com', `/api/me email: ${me.json.email}`);
    assert(me.json.first_name === 'Ada', `/api/me first_name: ${me.json.first_name}`);
    assert(
      JSON.stringify(me.json.providers) === '["demo"]',
      `/api/me providers: ${JSON.stringify(me.json.providers)}`,
    );
    const navs = navigations(label).map((n) => n.split('?')[0]);
    log(`   navigations: ${navs.join(' -> ')}`);
    const order = ['/demo-provider/authorize', '/auth/demo/callback', '/auth/preloader', '/auth/success', '/'];
    let at = navs.indexOf('/auth/demo/login');
    assert(at >= 0, `no navigation to /auth/demo/login: ${navs.join(' -> ')}`);
    for (const step of order) {
      const next = navs.indexOf(step, at + 1);
      assert(next > at, `navigations out of order, expected ${order.join(' -> ')}: ${navs.join(' -> ')}`);
      at = next;
    }
  });

  // 2. The preloader shows, polls, and moves on to /auth/success by itself.
  await check('2 preloader reaches /auth/success on its own', async () => {
    const { page, label } = await newContext(browser, api.base, 'preloader');
    await openDemoAuthorize(page);
    await fillDemoForm(page, 'Grace Hopper', 'grace@example.com');
    // Hold the status polls so the waiting page can be seen; release them untouched.
    const gate = await gateStatus(page);
    await submitAllow(page);
    await waitForPath(page, '/auth/preloader');
    await gate.first();
    const root = page.locator('#preloader');
    const operation = await root.getAttribute('data-operation');
    assert(UUID.test(operation || ''), `preloader data-operation is not an id: ${operation}`);
    await page.getByRole('heading', { name: 'Signing you in…' }).waitFor();
    await page.locator('.spinner').waitFor({ state: 'visible' });
    const status = (await page.locator('#status').textContent()).trim();
    // "Still working…" replaces the first line after 5 s (a slow, loaded machine).
    assert(['Contacting your provider…', 'Still working…'].includes(status), `preloader status line: ${status}`);
    assert(
      !(await page.locator('html').getAttribute('class') || '').includes('no-js'),
      'preloader.js did not run (html still has class no-js)',
    );
    await screenshot(page, 'preloader-waiting');
    const poll = new URL(gate.seen[0]);
    assert(poll.searchParams.get('wait') === '25', `first status poll is not a long poll: ${gate.seen[0]}`);
    assert(poll.searchParams.get('operation') === operation, `status poll is not for ${operation}: ${gate.seen[0]}`);
    // From here on the test does nothing but wait.
    gate.open();
    await waitForPath(page, '/');
    await page.locator('.greeting').waitFor();
    assert(
      (await page.locator('.greeting').textContent()).trim() === 'Hi, Grace',
      'not greeted as Grace after the preloader',
    );
    await screenshot(page, 'after-preloader-signed-in');
    const navs = navigations(label);
    const pre = navs.indexOf(`/auth/preloader?operation=${operation}`);
    assert(pre >= 0, `the callback did not lead to this operation's preloader: ${navs.join(' -> ')}`);
    const rest = navs.slice(pre + 1);
    assert(
      rest[0] === `/auth/success?operation=${operation}` && rest[1] === '/',
      `after the preloader expected /auth/success?operation=${operation} -> /, got ${rest.join(' -> ')}`,
    );
    assert(rest.length === 2, `unexpected navigations after the preloader: ${rest.join(' -> ')}`);
  });

  // 3. Logout through the index page's form.
  await check('3 logout ends the session (/api/me 401)', async () => {
    const { context, page } = await newContext(browser, api.base, 'logout');
    await signIn(page, 'Linus Example', 'linus@example.com');
    const before = await getJson(context, '/api/me');
    assert(before.status === 200, `/api/me before logout: ${before.status}`);
    const cookie = (await context.cookies()).find((c) => c.name.includes('signin_session'));
    assert(cookie, 'no session cookie after sign-in');
    assert(cookie.httpOnly && cookie.sameSite === 'Lax' && cookie.path === '/', `session cookie flags: ${JSON.stringify(cookie)}`);
    const logoutDone = page.waitForResponse((r) => pathOf(r.url()) === '/auth/logout');
    await page.getByRole('button', { name: 'Log out' }).click();
    const res = await logoutDone;
    assert(res.request().method() === 'POST' && res.status() === 303, `logout answered ${res.request().method()} ${res.status()}`);
    await waitForPath(page, '/');
    await page.getByRole('link', { name: 'Sign in with Demo' }).waitFor();
    assert((await page.locator('.greeting').count()) === 0, 'still greeted after logout');
    await screenshot(page, 'index-after-logout');
    const after = await getJson(context, '/api/me');
    assert(after.status === 401, `/api/me after logout: ${after.status}`);
    assert(after.json && after.json.error && after.json.error.code, `/api/me 401 body: ${JSON.stringify(after.json)}`);
    assert(
      !(await context.cookies()).some((c) => c.name.includes('signin_session') && c.value),
      'the session cookie is still set after logout',
    );
    // Revoked server-side: replaying the old cookie does not sign anyone in.
    const replay = await apiRequest.newContext({
      baseURL: api.base,
      extraHTTPHeaders: { cookie: `${cookie.name}=${cookie.value}` },
    });
    try {
      const r = await replay.get('/api/me', { timeout: STEP_TIMEOUT_MS });
      assert(r.status() === 401, `/api/me with the old session cookie: ${r.status()}`);
    } finally {
      await replay.dispose();
    }
  });

  // 4. Denying consent at the provider ends on the error page.
  await check('4 denied consent shows the error page (access_denied)', async () => {
    const { context, page, label } = await newContext(browser, api.base, 'deny');
    await openDemoAuthorize(page);
    const cancel = page.getByRole('button', { name: 'Cancel' });
    assert((await cancel.count()) === 1, 'the demo authorize page has no Cancel (deny) button');
    await cancel.click();
    await waitForPath(page, '/auth/error');
    const url = new URL(page.url());
    assert(url.searchParams.get('reason') === 'access_denied', `error page URL: ${url.pathname}${url.search}`);
    await page.getByRole('heading', { name: 'Sign-in problem' }).waitFor();
    const text = await page.locator('.error-box').innerText();
    assert(
      text.includes('You cancelled the sign-in, or the provider denied access.'),
      `error page text: ${JSON.stringify(text)}`,
    );
    const again = page.getByRole('link', { name: 'Try again' });
    assert((await again.getAttribute('href')) === '/', 'no "Try again" link to /');
    await screenshot(page, 'error-access-denied');
    const navs = navigations(label);
    assert(
      navs.some((n) => n.startsWith('/auth/demo/callback?') && new URLSearchParams(n.split('?')[1]).get('error') === 'access_denied'),
      `the callback did not get error=access_denied: ${navs.join(' -> ')}`,
    );
    assert(!navs.some((n) => n.split('?')[0] === '/auth/preloader'), 'a denied sign-in went through the preloader');
    const me = await getJson(context, '/api/me');
    assert(me.status === 401, `/api/me after a denied sign-in: ${me.status}`);
  });

  // 5. One browser cannot see or redeem another browser's operation.
  await check('5 browser contexts cannot see each other\'s operations', async () => {
    const a = await newContext(browser, api.base, 'isolation-a');
    await openDemoAuthorize(a.page);
    await fillDemoForm(a.page, 'Alice Able', 'alice@example.com');
    const gate = await gateStatus(a.page); // keep A on the preloader, unredeemed
    await submitAllow(a.page);
    await waitForPath(a.page, '/auth/preloader');
    await gate.first();
    const id = await a.page.locator('#preloader').getAttribute('data-operation');
    assert(UUID.test(id || ''), `A's preloader has no operation id: ${id}`);
    const mine = await getJson(a.context, `/auth/status?operation=${id}`);
    assert(mine.status === 200 && ['pending', 'ok'].includes(mine.json.status), `A's own status: ${mine.status} ${JSON.stringify(mine.json)}`);

    const b = await newContext(browser, api.base, 'isolation-b');
    await b.page.goto('/');
    const none = await getJson(b.context, '/auth/status');
    assert(none.status === 404, `B's /auth/status (no operation): ${none.status} ${JSON.stringify(none.json)}`);
    assert(none.json && none.json.error && none.json.error.code, `B's 404 is not a JSON error: ${JSON.stringify(none.json)}`);
    const theirs = await getJson(b.context, `/auth/status?operation=${id}`);
    assert(theirs.status === 404, `B's /auth/status?operation=<A's id>: ${theirs.status} ${JSON.stringify(theirs.json)}`);
    assert(!JSON.stringify(theirs.json).includes('"status"'), `B learned A's status: ${JSON.stringify(theirs.json)}`);
    // Nor can B redeem it: /auth/success sends B to the error page, not signed in.
    await b.page.goto(`/auth/success?operation=${id}`);
    await waitForPath(b.page, '/auth/error');
    const bText = await b.page.locator('.error-box').innerText();
    assert(
      bText.includes('No sign-in is in progress in this browser.'),
      `B's error page for A's operation: ${JSON.stringify(bText)}`,
    );
    await screenshot(b.page, 'isolation-b-redeem-refused');
    const bMe = await getJson(b.context, '/api/me');
    assert(bMe.status === 401, `B is signed in with A's operation: /api/me ${bMe.status}`);

    // A is unaffected: released, its preloader finishes and A is signed in as Alice.
    gate.open();
    await waitForPath(a.page, '/');
    await a.page.locator('.greeting').waitFor();
    assert((await a.page.locator('.greeting').textContent()).trim() === 'Hi, Alice', 'A is not greeted as Alice');
    await screenshot(a.page, 'isolation-a-signed-in');
    const aMe = await getJson(a.context, '/api/me');
    assert(aMe.status === 200 && aMe.json.email === 'alice@example.com', `A's /api/me: ${aMe.status}`);
    const bAfter = await getJson(b.context, `/auth/status?operation=${id}`);
    assert(bAfter.status === 404, `B's status of A's finished operation: ${bAfter.status}`);
  });

  // 6. Google One Tap: a second api with a `google` provider (one_tap on) whose
  // issuer is a local stand-in; Google's script is a stub served by a route.
  await check('6 Google One Tap with a stubbed Google script', async () => {
    const google = await startGoogleStub();
    state.google = google;
    const api2 = await startApi(bin, {
      SIGNIN_PROVIDERS__DEMO__KIND: undefined,
      SIGNIN_PROVIDERS__GOOGLE__CLIENT_ID: GOOGLE_CLIENT_ID,
      SIGNIN_PROVIDERS__GOOGLE__CLIENT_SECRET: 'e2e-google-secret',
      SIGNIN_PROVIDERS__GOOGLE__ISSUER: google.issuer,
      SIGNIN_PROVIDERS__GOOGLE__ONE_TAP: 'true',
    });
    state.extraApis.push(api2);
    const { context, page, label } = await newContext(browser, api2.base, 'one-tap');
    let credentials = 0;
    await context.route('https://accounts.google.com/gsi/**', async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === '/gsi/client') {
        await route.fulfill({ contentType: 'text/javascript', body: GSI_CLIENT_STUB });
      } else if (url.pathname === '/gsi/e2e-credential') {
        credentials += 1;
        const nonce = url.searchParams.get('nonce');
        assert(url.searchParams.get('client_id') === GOOGLE_CLIENT_ID, `client id ${url.searchParams.get('client_id')}`);
        await route.fulfill({ contentType: 'application/json', body: JSON.stringify({ credential: google.credential(nonce) }) });
      } else {
        await route.fulfill({ status: 404, body: '' });
      }
    });
    const index = await page.goto('/');
    const csp = index.headers()['content-security-policy'] || '';
    assert(csp.includes('https://accounts.google.com/gsi/client'), `index CSP: ${csp}`);
    const button = page.getByRole('button', { name: 'Continue with Google (stub)' });
    await button.waitFor();
    await screenshot(page, 'one-tap-index');
    await button.click();
    await waitForPath(page, '/');
    await page.locator('.greeting').waitFor();
    const greeting = (await page.locator('.greeting').textContent()).trim();
    assert(greeting === 'Hi, Grace', `greeting: ${greeting}`);
    await screenshot(page, 'one-tap-signed-in');
    const me = await meFromPage(page);
    assert(me.status === 200 && JSON.stringify(me.json.providers) === '["google"]', `/api/me: ${me.status} ${JSON.stringify(me.json)}`);
    assert(credentials === 1, `the stub issued ${credentials} credentials`);
    const navs = navigations(label).map((n) => n.split('?')[0]);
    log(`   navigations: ${navs.join(' -> ')}`);
    const expected = ['/', '/auth/google/one-tap', '/auth/preloader', '/auth/success', '/'];
    assert(JSON.stringify(navs) === JSON.stringify(expected), `navigations: ${navs.join(' -> ')}`);
    await context.close();
  });

  // 7. Over everything above: no console errors, page errors or CSP violations, and
  // nothing secret in any URL after the callback.
  await check('7a pages have a CSP; no console errors, page errors or CSP violations', async () => {
    // "No violations" means little without a policy: every HTML page we were shown
    // must carry one that allows no inline script.
    const pages = observed.documents.filter((d) => d.status === 200 && d.type.startsWith('text/html'));
    assert(pages.length >= 10, `only ${pages.length} HTML pages were recorded`);
    const paths = new Set(pages.map((d) => pathOf(d.url)));
    for (const p of ['/', '/demo-provider/authorize', '/auth/preloader', '/auth/error']) {
      assert(paths.has(p), `no HTML response of ${p} was recorded`);
    }
    for (const d of pages) {
      const scriptSrc = (d.csp.match(/(?:^|;)\s*script-src([^;]*)/) || [])[1];
      assert(
        scriptSrc !== undefined && !scriptSrc.includes('unsafe-inline'),
        `${pathOf(d.url)} has no Content-Security-Policy restricting scripts: ${JSON.stringify(d.csp)}`,
      );
    }
    const problems = [
      ...observed.cspViolations.map((v) => `CSP [${v.label}] ${v.url}: ${v.directive} blocked ${v.blocked}`),
      ...observed.pageErrors.map((e) => `pageerror [${e.label}] ${e.url}: ${e.text}`),
      ...observed.consoleErrors.map((e) => `console [${e.label}] ${e.url}: ${e.text}${e.source ? ` (${e.source})` : ''}`),
    ];
    assert(observed.requests.length > 0, 'no request was recorded');
    assert(problems.length === 0, `\n    ${problems.join('\n    ')}`);
  });

  await check('7b no code or token in any URL after the callback', async () => {
    const labels = [...new Set(observed.requests.map((r) => r.label))];
    const problems = [];
    let callbacks = 0;
    let after = 0;
    for (const label of labels) {
      const reqs = observed.requests.filter((r) => r.label === label);
      const cbIndex = reqs.findIndex((r) => pathOf(r.url) === '/auth/demo/callback');
      if (cbIndex < 0) continue;
      callbacks += 1;
      const code = new URL(reqs[cbIndex].url).searchParams.get('code');
      for (const r of reqs.slice(cbIndex + 1)) {
        after += 1;
        for (const [what, value] of [['URL', r.url], ['Referer', r.referer]]) {
          if (SECRET_PARAM.test(value) || (code && value.includes(code))) {
            problems.push(`[${label}] ${what} of ${r.method} ${pathOf(r.url)}: ${value}`);
          }
        }
      }
    }
    assert(callbacks >= 4, `expected the callback in at least 4 contexts, saw ${callbacks}`);
    assert(after > 0, 'no request after a callback was recorded');
    assert(problems.length === 0, `\n    ${problems.join('\n    ')}`);
    log(`   ${after} requests after ${callbacks} callbacks, none carries a code or token`);
  });

  await browser.close();
  state.browser = null;
}

// ---- run, bounded -------------------------------------------------------------------

const state = { api: null, browser: null, aborted: false, extraApis: [], google: null };

async function cleanup() {
  if (state.browser) await state.browser.close().catch(() => {});
  if (state.api) await stopApi(state.api.child);
  for (const api of state.extraApis) await stopApi(api.child);
  if (state.google) await state.google.close();
}

function keepLog() {
  if (!state.api) return;
  try {
    fs.mkdirSync(OUT_DIR, { recursive: true });
    fs.copyFileSync(state.api.logFile, path.join(OUT_DIR, 'api.log'));
  } catch {
    // best effort
  }
}

function printApiLogTail() {
  if (!state.api) return;
  try {
    const lines = fs.readFileSync(state.api.logFile, 'utf8').trimEnd().split('\n');
    console.log(`---- last api log lines (${path.relative(ROOT, path.join(OUT_DIR, 'api.log'))}) ----`);
    console.log(lines.slice(-30).join('\n'));
  } catch {
    // no log
  }
}

process.on('exit', () => {
  // Last resort: never leave the api running.
  for (const api of [state.api, ...state.extraApis]) {
    if (api && api.child.exitCode === null && api.child.signalCode === null) api.child.kill('SIGKILL');
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.log(`interrupted (${signal})`);
    process.exit(130);
  });
}

let watchdog;
const overtime = new Promise((_, reject) => {
  watchdog = setTimeout(() => {
    state.aborted = true;
    reject(new Error(`the run took longer than ${TOTAL_TIMEOUT_MS} ms (E2E_TIMEOUT_MS)`));
  }, TOTAL_TIMEOUT_MS);
});

let fatal = null;
try {
  await Promise.race([main(), overtime]);
} catch (err) {
  fatal = err;
  log(`FAIL ${state.aborted ? '' : 'setup: '}${err && err.stack && !state.aborted ? err.stack : err.message || err}`);
}
clearTimeout(watchdog);
const finished = results.slice(); // checks cut off by the time bound add nothing
await withTimeout(cleanup(), 20_000, 'cleanup').catch((e) => log(`cleanup: ${e.message}`));
keepLog();

const passed = finished.filter((r) => r.ok).length;
const failed = finished.length - passed + (fatal ? 1 : 0);
if (failed > 0) {
  printApiLogTail();
  if (state.api) console.log(`(work dir kept: ${state.api.workDir})`);
} else if (state.api) {
  fs.rmSync(state.api.workDir, { recursive: true, force: true });
}
log(`done; screenshots in ${path.relative(ROOT, OUT_DIR) || OUT_DIR}`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
