#!/usr/bin/env node
// The checks of scripts/multi-instance/run.sh against a running deployment: nginx in
// front of two api instances, two workers, PostgreSQL and Redis. run.sh starts all of
// it and passes the addresses and pids in the environment; see README.md here.
//
// Prints one PASS/FAIL line per check and exits non-zero when any failed.
//
// Environment (set by run.sh):
//   MI_NGINX_URL                the public URL (nginx)
//   MI_API1_URL, MI_API2_URL    each api instance directly
//   MI_API2_PID, MI_WORKER1_PID the processes the crash burst SIGKILLs
//   MI_DATABASE_URL             the run's PostgreSQL database (read with psql)
//   MI_REDIS_URL                the run's Redis database (informational)
//   MI_REGISTRATION_BUDGET      limits.registrations_per_ip_per_minute of both apis
//   MI_BURST                    sign-ins of the crash burst
//   MI_OUT_DIR                  where screenshots go
//   CHROMIUM_BIN                default /usr/bin/chromium

import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
// playwright-core as scripts/e2e installs it (.ci/run runs `npm ci` there).
const { chromium } = createRequire(path.join(ROOT, 'scripts/e2e/package.json'))('playwright-core');

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`${name} is not set (run this through run.sh)`);
  return value;
};
const NGINX = env('MI_NGINX_URL');
const API1 = env('MI_API1_URL');
const API2 = env('MI_API2_URL');
const API2_PID = Number(env('MI_API2_PID'));
const WORKER1_PID = Number(env('MI_WORKER1_PID'));
const DATABASE_URL = env('MI_DATABASE_URL');
const REDIS_URL = env('MI_REDIS_URL', '');
const BUDGET = Number(env('MI_REGISTRATION_BUDGET', '4'));
const BURST = Number(env('MI_BURST', '40'));
const OUT_DIR = env('MI_OUT_DIR', path.join(ROOT, 'target/multi-instance'));
const CHROMIUM_BIN = env('CHROMIUM_BIN', '/usr/bin/chromium');
const RUN = randomBytes(3).toString('hex'); // tags this run's emails

// "127.0.0.1:PORT" of each instance, as nginx's $upstream_addr names it.
const INSTANCE = { [new URL(API1).host]: 'api1', [new URL(API2).host]: 'api2' };
/** The instance an X-Upstream header names: the last address (nginx lists each it tried). */
function instanceOf(header) {
  if (!header) return 'none';
  const last = header.split(',').pop().trim();
  return INSTANCE[last] || `unknown(${last})`;
}

const started = Date.now();
const log = (...args) => console.log(`[checks ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`, ...args);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const results = [];
async function check(name, ms, fn) {
  const t0 = Date.now();
  try {
    await withTimeout(fn(), ms, name);
    results.push({ name, ok: true });
    log(`PASS ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    results.push({ name, ok: false });
    log(`FAIL ${name} (${Date.now() - t0} ms): ${(err && err.message) || err}`);
  }
}

/** One SQL value from the run's database. */
function sql(query) {
  return execFileSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', DATABASE_URL, '-c', query], {
    encoding: 'utf8',
    timeout: 15_000,
    env: { ...process.env, PGCONNECT_TIMEOUT: '5' },
  }).trim();
}

/** The run's Redis keys, ids and hashes shown as `*`, with counts (for failure reports). */
function redisKeys() {
  if (!REDIS_URL) return 'no redis_url';
  try {
    const out = execFileSync('redis-cli', ['-u', REDIS_URL, '--scan'], { encoding: 'utf8', timeout: 5_000 });
    const counts = new Map();
    for (const key of out.split('\n').filter(Boolean)) {
      const shape = key.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32,}|[A-Za-z0-9_-]{40,}/g, '*');
      counts.set(shape, (counts.get(shape) || 0) + 1);
    }
    return [...counts].map(([k, n]) => `${n} x ${k}`).join(', ') || 'none';
  } catch (err) {
    return `redis-cli failed: ${err.message}`;
  }
}

/** The same, without blocking the event loop. */
function sqlAsync(query) {
  return new Promise((resolve, reject) => {
    execFile(
      'psql',
      ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', DATABASE_URL, '-c', query],
      { encoding: 'utf8', timeout: 15_000, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } },
      (err, stdout) => (err ? reject(err) : resolve(stdout.trim())),
    );
  });
}

/** JSON request without cookies; returns { status, json, headers, instance }. */
async function call(base, method, route, { body, token, headers = {} } = {}) {
  const res = await fetch(new URL(route, base), {
    method,
    redirect: 'manual',
    signal: AbortSignal.timeout(20_000),
    headers: {
      accept: 'application/json',
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text, headers: res.headers, instance: instanceOf(res.headers.get('x-upstream')) };
}

const password = () => `${randomBytes(5).toString('hex')}-violet-lantern-harbor`;

// ---- a. a browser through nginx ------------------------------------------------------

async function browserCheck(browser) {
  const context = await browser.newContext({ baseURL: NGINX, viewport: { width: 900, height: 640 } });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  const hits = []; // every response from nginx, in order
  const problems = [];
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (url.origin !== NGINX) return;
    hits.push({ path: url.pathname, status: res.status(), instance: instanceOf(res.headers()['x-upstream']) });
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // Chromium logs the 404 of its own /favicon.ico request (scripts/e2e notes the same).
    if (msg.type() === 'error' && !/favicon/.test((msg.location() && msg.location().url) || '')) {
      problems.push(`console: ${msg.text()}`);
    }
  });

  await page.goto('/');
  await page.getByRole('link', { name: 'Sign in with Demo' }).click();
  await page.waitForURL((u) => u.pathname === '/demo-provider/authorize');
  await page.getByLabel('Name').fill('Nora Nginx');
  await page.getByLabel('Email').fill(`nora-${RUN}@example.com`);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((u) => u.pathname === '/', { timeout: 40_000 });
  const greeting = page.locator('.greeting');
  await greeting.waitFor();
  assert((await greeting.textContent()).trim() === 'Hi, Nora', `greeting: ${await greeting.textContent()}`);
  await page.screenshot({ path: path.join(OUT_DIR, 'browser-signed-in.png') });
  const me = await page.evaluate(async () => {
    const res = await fetch('/api/me', { cache: 'no-store' });
    return { status: res.status, json: await res.json().catch(() => null) };
  });
  assert(me.status === 200 && me.json.email === `nora-${RUN}@example.com`, `/api/me: ${me.status} ${JSON.stringify(me.json)}`);

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.getByRole('link', { name: 'Sign in with Demo' }).waitFor();
  // From outside the page: the page's own fetch of a 401 is a console error in Chromium.
  const after = (await context.request.get('/api/me', { maxRedirects: 0 })).status();
  assert(after === 401, `/api/me after logout: ${after}`);
  await context.close();

  const flow = hits.map((h) => `${h.path} ${h.status} ${h.instance}`);
  log(`   ${hits.length} responses: ${flow.join(' | ')}`);
  const strange = hits.filter((h) => h.instance !== 'api1' && h.instance !== 'api2');
  assert(strange.length === 0, `responses without an X-Upstream naming api1 or api2: ${JSON.stringify(strange)}`);
  const by = (name) => hits.filter((h) => h.instance === name).length;
  let switches = 0;
  for (let i = 1; i < hits.length; i++) if (hits[i].instance !== hits[i - 1].instance) switches++;
  log(`   api1 answered ${by('api1')}, api2 ${by('api2')}; the instance changed ${switches} times between consecutive responses`);
  assert(by('api1') > 0 && by('api2') > 0, 'one browser\'s requests did not reach both instances');
  assert(switches > 0, 'consecutive requests never changed instance');
  const at = (p) => hits.filter((h) => h.path === p).map((h) => h.instance);
  log(`   callback on ${at('/auth/demo/callback').join(',')}, status polls on ${at('/auth/status').join(',')}, success on ${at('/auth/success').join(',')}`);
  assert(problems.length === 0, `browser errors: ${problems.join('; ')}`);
}

// ---- b. a session revoked on one instance is refused on the other --------------------

async function revocationCheck() {
  const email = `ada-${RUN}@example.com`;
  const pass = password();
  const reg = await call(API1, 'POST', '/api/auth/register', {
    body: { email, password: pass, first_name: 'Ada', device: 'multi-instance check' },
  });
  assert(reg.status === 201, `register on api1: ${reg.status} ${reg.text}`);
  const login = await call(API2, 'POST', '/api/auth/login', { body: { email, password: pass } });
  assert(login.status === 200, `login on api2: ${login.status} ${login.text}`);
  const session = login.json.session_id;
  assert(session && session !== reg.json.session_id, `login made no session of its own: ${login.text}`);
  const refreshed = await call(API1, 'POST', '/api/auth/refresh', { body: { refresh_token: login.json.refresh_token } });
  assert(refreshed.status === 200, `refresh on api1 of api2's refresh token: ${refreshed.status} ${refreshed.text}`);
  assert(refreshed.json.session_id === session, `refresh moved to session ${refreshed.json.session_id}`);
  const access = refreshed.json.access_token;
  log(`   registered on api1, logged in on api2 (session ${session}), refreshed on api1`);

  // Both instances accept the access token (and have looked the session up).
  for (const [name, base] of [['api1', API1], ['api2', API2]]) {
    const me = await call(base, 'GET', '/api/me', { token: access });
    assert(me.status === 200 && me.json.email === email, `/api/me on ${name} before the revocation: ${me.status} ${me.text}`);
  }
  const revoked = await call(API1, 'DELETE', `/api/sessions/${session}`, { token: reg.json.access_token });
  assert(revoked.status === 204, `DELETE /api/sessions/${session} on api1: ${revoked.status} ${revoked.text}`);
  const t0 = Date.now();
  const refused = await call(API2, 'GET', '/api/me', { token: access });
  const firstMs = Date.now() - t0;
  if (refused.status !== 401) {
    const keysAfter = redisKeys();
    // How long it goes on (bounded), for the report.
    let until = 'still accepted after 15 s';
    while (Date.now() - t0 < 15_000) {
      await sleep(250);
      const later = await call(API2, 'GET', '/api/me', { token: access });
      if (later.status === 401) {
        until = `refused from ${Date.now() - t0} ms on`;
        break;
      }
    }
    throw new Error(
      `api2 answered ${refused.status} (not 401) to the revoked session's access token ` +
        `${firstMs} ms after api1 revoked it; ${until}. Keys in Redis right after the revocation: ${keysAfter}`,
    );
  }
  assert(
    /invalid_token/.test(refused.headers.get('www-authenticate') || ''),
    `401 without WWW-Authenticate: Bearer error="invalid_token": ${refused.headers.get('www-authenticate')}`,
  );
  const again = await call(API1, 'GET', '/api/me', { token: access });
  assert(again.status === 401, `api1 accepts the token of the session it revoked: ${again.status}`);
  const refresh = await call(API2, 'POST', '/api/auth/refresh', { body: { refresh_token: refreshed.json.refresh_token } });
  assert(refresh.status === 401, `api2 refreshes the revoked session: ${refresh.status} ${refresh.text}`);
  const other = await call(API2, 'GET', '/api/me', { token: reg.json.access_token });
  assert(other.status === 200, `the registration's own session ended too: ${other.status} ${other.text}`);
  log('   revoked on api1; at once api2 answers 401 invalid_token to its access token and refuses its refresh token');
}

// ---- c. a per-IP budget shared by both instances -------------------------------------

async function budgetCheck() {
  const client = '203.0.113.7';
  const outcomes = [];
  for (let i = 0; i < 2 * BUDGET; i++) {
    const res = await call(NGINX, 'POST', '/api/auth/register', {
      body: { email: `budget-${i}-${RUN}@example.com`, password: password() },
      headers: { 'x-forwarded-for': client },
    });
    outcomes.push({ status: res.status, instance: res.instance, retryAfter: res.headers.get('retry-after') });
  }
  log(`   ${2 * BUDGET} registrations from ${client} through nginx: ${outcomes.map((o) => `${o.status}@${o.instance}`).join(' ')}`);
  const unexpected = outcomes.filter((o) => o.status !== 201 && o.status !== 429);
  assert(unexpected.length === 0, `answers other than 201 and 429: ${JSON.stringify(unexpected)}`);
  const created = outcomes.filter((o) => o.status === 201);
  const limited = outcomes.filter((o) => o.status === 429);
  assert(created.length > 0, 'no registration succeeded at all');
  assert(
    limited.every((o) => /^\d+$/.test(o.retryAfter || '')),
    `a 429 without a Retry-After: ${JSON.stringify(limited)}`,
  );
  const limitedBy = new Set(limited.map((o) => o.instance));
  assert(
    created.length <= BUDGET,
    `${created.length} registrations succeeded with a budget of ${BUDGET} per minute: each instance ` +
      `counted its own budget (api1 ${created.filter((o) => o.instance === 'api1').length}, ` +
      `api2 ${created.filter((o) => o.instance === 'api2').length}), so the budget is not shared ` +
      `through Redis (${REDIS_URL || 'no redis_url'})`,
  );
  assert(
    limitedBy.has('api1') && limitedBy.has('api2'),
    `only ${[...limitedBy].join(', ') || 'no instance'} answered 429`,
  );
  log(`   ${created.length} of ${2 * BUDGET} succeeded (budget ${BUDGET}); both instances answered 429`);
}

// ---- d. the crash burst --------------------------------------------------------------

/** A browser for the burst: a cookie jar, its own client address, manual redirects. */
class SimBrowser {
  constructor(ip) {
    this.ip = ip;
    this.jar = new Map(); // `${name}\0${path}` -> { name, value, path }
    this.retries = 0;
    this.instances = new Set();
  }

  cookieHeader(url) {
    const p = url.pathname;
    return [...this.jar.values()]
      .filter((c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let cookiePath = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') cookiePath = v.trim() || '/';
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      const id = `${name}\0${cookiePath}`;
      if (expired) this.jar.delete(id);
      else this.jar.set(id, { name, value, path: cookiePath });
    }
  }

  /**
   * One request through nginx. A request that failed because its instance died (a
   * transport error, or nginx's 502/504 for a POST it could not pass on) is sent
   * again, as a person reloads: at most 6 times in all.
   */
  async request(method, target, { form, timeoutMs = 40_000 } = {}) {
    const url = new URL(target, NGINX);
    for (let attempt = 1; ; attempt++) {
      let res;
      let failure;
      try {
        const headers = { 'x-forwarded-for': this.ip, accept: 'text/html,application/json' };
        const cookie = this.cookieHeader(url);
        if (cookie) headers.cookie = cookie;
        let body;
        if (form) {
          headers['content-type'] = 'application/x-www-form-urlencoded';
          headers.origin = NGINX; // a browser's form POST carries its origin
          body = new URLSearchParams(form).toString();
        }
        res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
        this.store(res);
        this.instances.add(instanceOf(res.headers.get('x-upstream')));
        // Every instance nginx tried for this request, in order ("api2 -> api1" when
        // api2 died under it and nginx passed the request on).
        this.lastUpstreams = (res.headers.get('x-upstream') || '')
          .split(',')
          .map((a) => instanceOf(a.trim()))
          .join(' -> ');
        if (res.status !== 502 && res.status !== 504) return res;
        failure = `HTTP ${res.status}`;
        await res.arrayBuffer();
      } catch (err) {
        failure = (err && err.cause && err.cause.code) || (err && err.message) || String(err);
      }
      if (attempt >= 6) throw new Error(`${method} ${url.pathname}: ${failure}, ${attempt} attempts`);
      this.retries++;
      burst.retried.push(`${method} ${url.pathname} (${failure})`);
      await sleep(300 * attempt);
    }
  }
}

const burst = { started: 0, finished: 0, callbacks: 0, killed: null, retried: [], restarts: 0, lostSuccesses: 0 };

function locationOf(res, what) {
  const location = res.headers.get('location');
  assert(res.status >= 300 && res.status < 400 && location, `${what}: expected a redirect, got ${res.status}`);
  return location;
}

/** From a login URL to a finished operation; returns the /auth/status body. */
async function signInAttempt(b, loginUrl, name, email) {
  let res = await b.request('GET', loginUrl);
  const authorize = new URL(locationOf(res, 'login'), NGINX);
  assert(authorize.pathname === '/demo-provider/authorize', `login went to ${authorize}`);
  res = await b.request('GET', authorize);
  assert(res.status === 200, `the demo provider's form answered ${res.status}`);
  await res.arrayBuffer();
  const form = Object.fromEntries(authorize.searchParams);
  Object.assign(form, { name, email, action: 'allow' });
  res = await b.request('POST', '/demo-provider/authorize', { form });
  const callback = new URL(locationOf(res, 'the demo form'), NGINX);
  assert(callback.pathname === '/auth/demo/callback' && callback.searchParams.get('code'), `the form went to ${callback.pathname}`);
  res = await b.request('GET', callback);
  b.callbackUpstreams = b.lastUpstreams;
  burst.callbacks++;
  const preloader = new URL(locationOf(res, 'the callback'), NGINX);
  assert(preloader.pathname === '/auth/preloader', `the callback went to ${preloader.pathname}${preloader.search}`);
  const operation = preloader.searchParams.get('operation');
  res = await b.request('GET', preloader);
  assert(res.status === 200, `the preloader answered ${res.status}`);
  await res.arrayBuffer();
  // As preloader.js: long polls, Retry-After honoured, other failures retried after 1 s.
  const deadline = Date.now() + 100_000;
  while (Date.now() < deadline) {
    res = await b.request('GET', `/auth/status?wait=25&operation=${operation}`);
    const text = await res.text();
    if (res.status === 404) throw new Error(`/auth/status: 404 for operation ${operation}`);
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // an error page
    }
    if (res.status === 200 && body && body.status !== 'pending') return { operation, body };
    const retryAfter = Number(res.headers.get('retry-after')) || 0;
    if (res.status !== 200 || retryAfter) await sleep(Math.min(5000, Math.max(1000, retryAfter * 1000)));
  }
  throw new Error(`operation ${operation} still pending after 100 s`);
}

async function oneBurstSignIn(i) {
  const b = new SimBrowser(`198.51.100.${i + 1}`);
  try {
    return await burstSignIn(b, i);
  } catch (err) {
    const via = b.lastUpstreams && !err.message.includes('answered by') ? ` (last answer by ${b.lastUpstreams})` : '';
    throw new Error(`${err.message}${via}`);
  }
}

async function burstSignIn(b, i) {
  const email = `burst-${i}-${RUN}@example.com`;
  let loginUrl = '/auth/demo/login';
  let restarted = false;
  for (;;) {
    const { operation, body } = await signInAttempt(b, loginUrl, `Burst ${i}`, email);
    if (body.status === 'ok') {
      const retriesBefore = b.retries;
      const res = await b.request('GET', `/auth/success?operation=${operation}`);
      const landing = new URL(locationOf(res, 'success'), NGINX);
      // An operation is redeemed once. When the instance that redeemed it died before
      // answering (nginx passed the request on, or the browser had to reload), the
      // answer, and its session cookie, were lost: the repeat lands on the error page,
      // whose "Try again" the person follows, once.
      const answerLost = b.lastUpstreams.includes('->') || b.retries > retriesBefore;
      if (landing.pathname === '/auth/error' && answerLost && !restarted) {
        restarted = true;
        burst.lostSuccesses++;
        loginUrl = '/auth/demo/login';
        continue;
      }
      if (landing.pathname !== '/') {
        // What the database says of it, for the report.
        const row = await sqlAsync(
          `SELECT status || ', redeemed ' || coalesce(to_char(redeemed_at, 'HH24:MI:SS.MS'), 'no') || ', ' || ` +
            `(SELECT count(*) FROM session s WHERE s.user_id = o.user_id AND s.revoked_at IS NULL) || ' live sessions of its user' ` +
            `FROM async_operation o WHERE id = '${operation}'`,
        ).catch((err) => `(unreadable: ${err.message})`);
        throw new Error(
          `/auth/success went to ${landing.pathname}${landing.search} (answered by ${b.lastUpstreams}); ` +
            `the operation: ${row || 'gone'}`,
        );
      }
      const me = await b.request('GET', '/api/me');
      const json = await me.json().catch(() => null);
      assert(me.status === 200 && json && json.email === email, `/api/me: ${me.status} ${JSON.stringify(json)}`);
      return { restarted, retries: b.retries, instances: b.instances };
    }
    const code = body.error && body.error.code;
    // The preloader's rule: an interrupted exchange restarts its login once.
    if (code === 'exchange_interrupted' && body.restart_url && !restarted) {
      restarted = true;
      burst.restarts++;
      loginUrl = body.restart_url;
      continue;
    }
    // Its job in the queue (keyed by the operation; finished ones are deleted).
    const job = await sqlAsync(
      `SELECT string_agg(status || ', ' || attempts || ' attempts, locked by ' || coalesce(lock_by, 'nobody'), '; ') ` +
        `FROM apalis.jobs WHERE idempotency_key = '${operation}'`,
    ).catch((err) => `(unreadable: ${err.message})`);
    throw new Error(
      `operation ${operation} ended in ${JSON.stringify(body)}; its callback was answered by ` +
        `${b.callbackUpstreams}; its job: ${job || 'none in the queue'}`,
    );
  }
}

/**
 * SIGKILLs worker1 and api2 while sign-ins are in flight: as soon as at least 4
 * operations are pending (so jobs are in the workers' hands), or at the latest when
 * half the callbacks are done.
 */
async function killWhenBusy() {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (burst.callbacks >= 4) {
      const pending = Number(await sqlAsync("SELECT count(*) FROM async_operation WHERE status = 'pending'"));
      if (pending >= 4 || burst.callbacks >= BURST / 2) {
        const inFlight = burst.started - burst.finished;
        for (const [name, pid] of [['worker1', WORKER1_PID], ['api2', API2_PID]]) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch (err) {
            throw new Error(`cannot SIGKILL ${name} (pid ${pid}): ${err.message}`);
          }
        }
        burst.killed = { inFlight, pending };
        log(`   SIGKILLed worker1 (pid ${WORKER1_PID}) and api2 (pid ${API2_PID}) after ${burst.callbacks} callbacks: ` +
          `${inFlight} sign-ins in flight, ${pending} operations pending`);
        return;
      }
    }
    await sleep(20);
  }
  throw new Error('the sign-ins never got under way: nothing was killed');
}

/** What the SIGKILLs interrupted, from the logs run.sh keeps in MI_OUT_DIR. */
function killedWork() {
  const read = (file) => {
    try {
      return fs.readFileSync(path.join(OUT_DIR, file), 'utf8');
    } catch {
      return '';
    }
  };
  // A job worker1 held when it died runs again on worker2 (job.attempt 2 or more).
  const rerun = new Set();
  for (const m of read('worker2.log').matchAll(/operation\.id=([0-9a-f-]{36}) job\.attempt=([2-9]|\d\d)/g)) rerun.add(m[1]);
  const api2 = new URL(API2).host;
  const moved = read('nginx/logs/error.log')
    .split('\n')
    .filter((l) => l.includes('[error]') && l.includes(`upstream: "http://${api2}`)).length;
  return `${rerun.size} of worker1's jobs ran again on worker2; nginx logged ${moved} failed attempts on api2`;
}

async function crashBurstCheck() {
  const failures = [];
  const outcomes = [];
  const killer = killWhenBusy().catch((err) => failures.push(`kill: ${err.message}`));
  const runs = [killer];
  for (let i = 0; i < BURST; i++) {
    burst.started++;
    runs.push(
      oneBurstSignIn(i)
        .then((o) => outcomes.push(o))
        .catch((err) => failures.push(`#${i}: ${err.message}`))
        .finally(() => burst.finished++),
    );
    await sleep(5); // all at once, give or take the time to open their connections
  }
  await Promise.all(runs);
  assert(burst.killed, `the kill never happened (${burst.callbacks} callbacks)`);
  assert(burst.killed.inFlight > 0, 'every sign-in had finished before the kill: nothing was in flight');
  assert(burst.killed.pending > 0, 'no operation was pending at the kill: the workers had nothing in hand');
  const retried = new Map();
  for (const r of burst.retried) retried.set(r, (retried.get(r) || 0) + 1);
  log(`   ${outcomes.length} of ${BURST} signed in; ${burst.restarts} restarted after exchange_interrupted, ` +
    `${burst.lostSuccesses} after a success whose answer died with its instance; ` +
    `${burst.retried.length} requests sent again after their instance died` +
    (retried.size ? `: ${[...retried].map(([k, n]) => `${n} x ${k}`).join(', ')}` : ''));
  log(`   ${killedWork()}`);
  assert(failures.length === 0, `${failures.length} sign-ins failed:\n      ${failures.join('\n      ')}`);

  const like = `burst-%-${RUN}@example.com`;
  const users = Number(sql(`SELECT count(*) FROM user_profile WHERE email LIKE '${like}'`));
  const emails = Number(sql(`SELECT count(DISTINCT lower(email)) FROM user_profile WHERE email LIKE '${like}'`));
  const notOne = sql(
    `SELECT u.email || ':' || count(s.id) FROM user_profile u LEFT JOIN social_account s ON s.user_id = u.id ` +
      `WHERE u.email LIKE '${like}' GROUP BY u.id, u.email HAVING count(s.id) <> 1`,
  );
  const accounts = Number(
    sql(
      `SELECT count(*) FROM social_account s JOIN user_profile u ON u.id = s.user_id ` +
        `WHERE u.email LIKE '${like}' AND s.provider = 'demo'`,
    ),
  );
  log(`   PostgreSQL: ${users} user_profile rows for ${emails} emails, ${accounts} demo social_account rows`);
  assert(emails === BURST, `${emails} distinct burst emails in user_profile, expected ${BURST}`);
  assert(users === BURST, `${users} user_profile rows for ${BURST} emails: duplicates`);
  assert(notOne === '', `users without exactly one social_account: ${notOne.split('\n').join(', ')}`);
  assert(accounts === BURST, `${accounts} demo social_account rows, expected ${BURST}`);
  const stuck = sql(`SELECT count(*) FROM async_operation WHERE status = 'pending'`);
  assert(stuck === '0', `${stuck} operations still pending`);
}

// ---- run ------------------------------------------------------------------------------

async function main() {
  log(`nginx ${NGINX}; api1 ${API1}; api2 ${API2}; run ${RUN}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--no-proxy-server',
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    ],
  });
  try {
    await check('a browser sign-in through nginx lands on both instances', 60_000, () => browserCheck(browser));
  } finally {
    await browser.close().catch(() => {});
  }
  await check('b a session revoked on api1 is refused on api2 at once', 30_000, revocationCheck);
  await check(`c the per-IP registration budget (${BUDGET}/min) is shared by both instances`, 60_000, budgetCheck);
  await check(`d ${BURST} sign-ins survive SIGKILL of a worker and an api`, 120_000, crashBurstCheck);
}

try {
  await main();
} catch (err) {
  results.push({ name: 'setup', ok: false });
  log(`FAIL setup: ${(err && err.stack) || err}`);
}
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`multi-instance checks: ${passed} passed, ${failed} failed`);
for (const r of results) console.log(`  ${r.ok ? 'PASS' : 'FAIL'} ${r.name}`);
process.exit(failed > 0 ? 1 : 0);
