// Checks of static/signin-client.js with a fake fetch and server (node scripts/js-tests/signin-client.test.mjs).
import assert from 'node:assert/strict';
import SigninClientDefault, { SigninClient, SigninError, localStorageStore, memoryStore } from '../../static/signin-client.js';

const results = [];
async function test(name, fn) {
  try {
    await fn();
    results.push(['PASS', name]);
  } catch (e) {
    results.push(['FAIL', name, e]);
  }
}

const json = (status, body, headers = {}) =>
  new Response(body === undefined ? null : JSON.stringify(body), {
    status, headers: { 'Content-Type': 'application/json', ...headers },
  });

let counter = 0;
const pair = (expiresIn = 900) => {
  counter += 1;
  return {
    access_token: `at${counter}`, token_type: 'Bearer', expires_in: expiresIn,
    refresh_token: `rt${counter}`, refresh_expires_in: 86400, session_id: 'sess-1',
  };
};

/** A fake server: single-use refresh tokens (reuse -> 401 refresh_token_reused), valid access tokens set. */
function fakeServer({ refreshDelay = 20 } = {}) {
  const s = { calls: [], refreshCalls: 0, validAccess: new Set(), liveRefresh: new Set(), spent: new Set(), routes: {} };
  s.issue = (expiresIn) => {
    const p = pair(expiresIn);
    s.validAccess.add(p.access_token);
    s.liveRefresh.add(p.refresh_token);
    return p;
  };
  s.fetch = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    const method = init.method || 'GET';
    const path = String(url).replace(/^https?:\/\/[^/]+/, '');
    s.calls.push({ method, path, auth: headers.get('Authorization'), headers, body: init.body });
    const key = `${method} ${path.split('?')[0]}`;
    if (s.routes[key]) return s.routes[key]({ url: path, init, headers });
    if (key === 'POST /api/auth/login') return json(200, s.issue());
    if (key === 'POST /api/auth/refresh') {
      s.refreshCalls += 1;
      const { refresh_token: rt } = JSON.parse(init.body);
      await new Promise((r) => setTimeout(r, refreshDelay));
      if (s.spent.has(rt)) return json(401, { error: { code: 'refresh_token_reused', message: 'reused' } });
      if (!s.liveRefresh.has(rt)) return json(401, { error: { code: 'invalid_refresh_token', message: 'bad' } });
      s.liveRefresh.delete(rt);
      s.spent.add(rt);
      return json(200, s.issue());
    }
    if (key === 'GET /api/me' || key === 'GET /api/data') {
      const token = (headers.get('Authorization') || '').replace(/^Bearer /, '');
      if (!s.validAccess.has(token)) {
        return json(401, { error: { code: 'invalid_token', message: 'bad token' } }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
      }
      return json(200, { id: 'u1', email: 'ada@example.com' });
    }
    return json(404, { error: { code: 'not_found', message: `no route ${key}` } });
  };
  return s;
}

await test('default export is SigninClient; SigninError is an Error', () => {
  assert.equal(SigninClientDefault, SigninClient);
  const e = new SigninError('x', 'y', { status: 400 });
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'SigninError');
});

await test('login stores tokens with absolute expiry and returns no secrets', async () => {
  const server = fakeServer();
  const storage = memoryStore();
  const client = new SigninClient({ fetch: server.fetch, storage });
  assert.equal(client.isSignedIn(), false);
  const before = Date.now();
  const info = await client.login({ email: 'ada@example.com', password: 'pw', device: 'test' });
  const stored = storage.get();
  assert.ok(stored.accessToken.startsWith('at'));
  assert.ok(stored.refreshToken.startsWith('rt'));
  assert.ok(stored.expiresAt >= before + 900_000 && stored.expiresAt <= Date.now() + 900_000);
  assert.equal(info.sessionId, 'sess-1');
  assert.equal(info.accessToken, undefined);
  assert.equal(client.isSignedIn(), true);
  const call = server.calls[0];
  assert.equal(call.headers.get('Content-Type'), 'application/json');
  assert.deepEqual(JSON.parse(call.body), { email: 'ada@example.com', password: 'pw', device: 'test' });
});

await test('fetch() adds the bearer; me() works', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  const res = await client.fetch('/api/data');
  assert.equal(res.status, 200);
  const last = server.calls.at(-1);
  assert.equal(last.auth, `Bearer ${client.storage.get().accessToken}`);
  assert.equal((await client.me()).id, 'u1');
  assert.equal(server.refreshCalls, 0);
});

await test('bearer is not sent to foreign absolute URLs; is sent under baseUrl', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch, baseUrl: 'https://api.example.com/' });
  await client.login({ email: 'a@b.c', password: 'pw' });
  assert.equal(server.calls[0].path, '/api/auth/login');
  await client.fetch('https://evil.example.net/api/data');
  assert.equal(server.calls.at(-1).auth, null);
  await client.fetch('https://api.example.com.evil.net/api/data');
  assert.equal(server.calls.at(-1).auth, null);
  await client.fetch('https://api.example.com/api/data');
  assert.ok(server.calls.at(-1).auth.startsWith('Bearer '));
});

await test('expired access token: 5 concurrent fetch() calls share exactly one refresh', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  server.routes['POST /api/auth/login'] = () => json(200, server.issue(30)); // within the 60 s margin
  await client.login({ email: 'a@b.c', password: 'pw' });
  const oldRefresh = client.storage.get().refreshToken;
  const responses = await Promise.all(Array.from({ length: 5 }, () => client.fetch('/api/data')));
  assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 200, 200]);
  assert.equal(server.refreshCalls, 1);
  assert.ok(server.spent.has(oldRefresh));
  const newAccess = client.storage.get().accessToken;
  const dataCalls = server.calls.filter((c) => c.path === '/api/data');
  assert.equal(dataCalls.length, 5);
  assert.ok(dataCalls.every((c) => c.auth === `Bearer ${newAccess}`));
});

await test('401 triggers one refresh + one retry (also with 5 concurrent callers)', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.validAccess.clear(); // server-side: access token no longer accepted
  const res = await client.fetch('/api/data');
  assert.equal(res.status, 200);
  assert.equal(server.refreshCalls, 1);
  assert.equal(server.calls.filter((c) => c.path === '/api/data').length, 2);

  server.validAccess.clear();
  server.calls.length = 0;
  const all = await Promise.all(Array.from({ length: 5 }, () => client.fetch('/api/data')));
  assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200, 200]);
  assert.equal(server.refreshCalls, 2); // one more, shared
  assert.equal(server.calls.filter((c) => c.path === '/api/data').length, 10);
});

await test('a second 401 after the retry is returned, not looped', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['GET /api/data'] = () => json(401, { error: { code: 'invalid_token', message: 'no' } });
  const res = await client.fetch('/api/data');
  assert.equal(res.status, 401);
  assert.equal(server.refreshCalls, 1);
  assert.equal(server.calls.filter((c) => c.path === '/api/data').length, 2);
});

await test('retry replays a JSON body and keeps caller headers', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.validAccess.clear();
  let n = 0;
  server.routes['POST /api/things'] = ({ headers, init }) => {
    n += 1;
    const token = (headers.get('Authorization') || '').slice(7);
    assert.equal(headers.get('X-Custom'), '1');
    assert.equal(init.body, '{"a":1}');
    return server.validAccess.has(token) ? json(201, { ok: true }) : json(401, { error: { code: 'invalid_token' } });
  };
  const res = await client.fetch('/api/things', { method: 'POST', body: '{"a":1}', headers: { 'X-Custom': '1' } });
  assert.equal(res.status, 201);
  assert.equal(n, 2);
});

await test('refresh failure (401) clears tokens, calls onSessionEnded once, throws SigninError', async () => {
  const server = fakeServer();
  const ended = [];
  const client = new SigninClient({ fetch: server.fetch, onSessionEnded: (r) => ended.push(r) });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.validAccess.clear();
  server.liveRefresh.clear(); // refresh token expired server-side
  const outcomes = await Promise.allSettled(Array.from({ length: 3 }, () => client.fetch('/api/data')));
  assert.ok(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof SigninError));
  assert.equal(outcomes[0].reason.code, 'invalid_refresh_token');
  assert.equal(outcomes[0].reason.status, 401);
  assert.deepEqual(ended, ['invalid_refresh_token']);
  assert.equal(server.refreshCalls, 1);
  assert.equal(client.storage.get(), null);
  assert.equal(client.isSignedIn(), false);
});

await test('refresh network error keeps tokens and does not end the session', async () => {
  const server = fakeServer();
  const ended = [];
  const client = new SigninClient({ fetch: server.fetch, onSessionEnded: (r) => ended.push(r) });
  server.routes['POST /api/auth/login'] = () => json(200, server.issue(10));
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['POST /api/auth/refresh'] = () => { throw new TypeError('fetch failed'); };
  await assert.rejects(client.fetch('/api/data'), (e) => e instanceof SigninError && e.code === 'network_error');
  assert.deepEqual(ended, []);
  assert.ok(client.isSignedIn());
});

await test('reuse never happens: logout during refresh does not resurrect tokens', async () => {
  const server = fakeServer({ refreshDelay: 50 });
  const client = new SigninClient({ fetch: server.fetch });
  server.routes['POST /api/auth/login'] = () => json(200, server.issue(10));
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['POST /api/auth/logout'] = () => new Response(null, { status: 204 });
  const pending = client.fetch('/api/data');
  await new Promise((r) => setTimeout(r, 10));
  client.storage.remove(); // e.g. logout in another place
  await assert.rejects(pending, (e) => e.code === 'not_signed_in');
  assert.equal(client.storage.get(), null);
});

await test('pollOperation: pending -> ok stores tokens; wait=25 and X-Poll-Secret sent', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  let polls = 0;
  server.routes['POST /api/auth/github/token'] = () =>
    json(202, { operation_id: 'op1', poll_secret: 'sekret', status_url: '/api/operations/op1' }, { Location: '/api/operations/op1' });
  server.routes['GET /api/operations/op1'] = async ({ url, headers }) => {
    polls += 1;
    assert.equal(headers.get('X-Poll-Secret'), 'sekret');
    assert.match(url, /\?wait=25$/);
    await new Promise((r) => setTimeout(r, 1050)); // a real long-poll holds the request
    return polls < 3 ? json(200, { status: 'pending' }) : json(200, { status: 'ok', tokens: server.issue() });
  };
  const info = await client.exchangeNative('github', { code: 'c', code_verifier: 'v'.repeat(43), redirect_uri: 'app:/cb' });
  assert.equal(polls, 3);
  assert.equal(info.sessionId, 'sess-1');
  assert.ok(client.isSignedIn());
});

await test('pollOperation: error status throws SigninError with the operation code', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  server.routes['GET /api/operations/op2'] = () =>
    json(200, { status: 'error', error: { code: 'email_not_verified', message: 'Verify your email first.' } });
  await assert.rejects(client.pollOperation('/api/operations/op2', 's'), (e) =>
    e instanceof SigninError && e.code === 'email_not_verified' && e.message === 'Verify your email first.');
  assert.equal(client.isSignedIn(), false);
});

await test('pollOperation: 5xx and network errors back off (~1s, ~2s) then succeed', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  const times = [];
  server.routes['GET /api/operations/op3'] = () => {
    times.push(Date.now());
    if (times.length === 1) return json(503, { error: { code: 'queue_unavailable', message: 'down' } });
    if (times.length === 2) throw new TypeError('fetch failed');
    return json(200, { status: 'ok', tokens: server.issue() });
  };
  await client.pollOperation('/api/operations/op3', 's');
  const gaps = [times[1] - times[0], times[2] - times[1]];
  assert.ok(gaps[0] >= 750 && gaps[0] <= 1300, `gap1 ${gaps[0]}`);
  assert.ok(gaps[1] >= 1550 && gaps[1] <= 2500, `gap2 ${gaps[1]}`);
  results.push(['INFO', `backoff gaps ms: ${gaps.join(', ')}`]);
});

await test('pollOperation: 410 already_redeemed and 404 are thrown, timeout stops', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  server.routes['GET /api/operations/gone'] = () => json(410, { error: { code: 'already_redeemed', message: 'x' } });
  await assert.rejects(client.pollOperation('/api/operations/gone', 's'), (e) => e.code === 'already_redeemed' && e.status === 410);
  await assert.rejects(client.pollOperation('/api/operations/nope', 's'), (e) => e.code === 'not_found' && e.status === 404);
  let polls = 0;
  server.routes['GET /api/operations/slow'] = () => { polls += 1; return json(200, { status: 'pending' }); }; // ignores wait
  const t0 = Date.now();
  await assert.rejects(client.pollOperation('/api/operations/slow', 's', { timeoutMs: 2500 }), (e) => e.code === 'timeout');
  const took = Date.now() - t0;
  assert.ok(took >= 2400 && took < 3500, `took ${took}`);
  assert.ok(polls <= 4, `polls ${polls} (no hot loop)`);
});

await test('pollOperation: a pending answer with Retry-After (no room to wait) is asked again after it', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  const times = [];
  server.routes['GET /api/operations/busy'] = () => {
    times.push(Date.now());
    // Answers at once, as a server whose long-poll slots are all taken does.
    return times.length < 3
      ? json(200, { status: 'pending' }, { 'Retry-After': '2' })
      : json(200, { status: 'ok', tokens: server.issue() });
  };
  await client.pollOperation('/api/operations/busy', 's');
  const gaps = [times[1] - times[0], times[2] - times[1]];
  assert.ok(gaps.every((g) => g >= 1900 && g <= 2600), `gaps ${gaps}`);
});

await test('429 from login yields SigninError with retryAfter', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  server.routes['POST /api/auth/login'] = () =>
    json(429, { error: { code: 'too_many_requests', message: 'Too many attempts. Try again in 42 seconds.' } }, { 'Retry-After': '42' });
  await assert.rejects(client.login({ email: 'a@b.c', password: 'pw' }), (e) =>
    e instanceof SigninError && e.status === 429 && e.code === 'too_many_requests' && e.retryAfter === 42);
  server.routes['POST /api/auth/login'] = () => json(401, { error: { code: 'invalid_credentials', message: 'Email or password is incorrect.' } });
  await assert.rejects(client.login({ email: 'a@b.c', password: 'pw' }), (e) =>
    e.code === 'invalid_credentials' && e.status === 401 && e.retryAfter === undefined);
  assert.equal(client.isSignedIn(), false);
});

await test('logout clears tokens even when the request fails; ?all=1', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['POST /api/auth/logout'] = () => { throw new TypeError('offline'); };
  assert.equal(await client.logout(), false);
  assert.equal(client.isSignedIn(), false);
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['POST /api/auth/logout'] = () => new Response(null, { status: 204 });
  assert.equal(await client.logout({ all: true }), true);
  assert.equal(server.calls.at(-1).path, '/api/auth/logout?all=1');
  assert.ok(server.calls.at(-1).auth.startsWith('Bearer '));
});

await test('sessions(), revokeSession() of own session drops tokens', async () => {
  const server = fakeServer();
  const client = new SigninClient({ fetch: server.fetch });
  await client.login({ email: 'a@b.c', password: 'pw' });
  server.routes['GET /api/sessions'] = () => json(200, [{ id: 'sess-1', current: true }, { id: 'other', current: false }]);
  server.routes['DELETE /api/sessions/other'] = () => new Response(null, { status: 204 });
  server.routes['DELETE /api/sessions/sess-1'] = () => new Response(null, { status: 204 });
  assert.equal((await client.sessions()).length, 2);
  await client.revokeSession('other');
  assert.ok(client.isSignedIn());
  await client.revokeSession('sess-1');
  assert.equal(client.isSignedIn(), false);
});

await test('startSocialSignIn builds the URL (no window in Node) and navigates in a browser', () => {
  const client = new SigninClient({ baseUrl: 'https://id.example.com' });
  assert.equal(client.startSocialSignIn('github', { next: '/static/example.html?x=1' }),
    'https://id.example.com/auth/github/login?next=%2Fstatic%2Fexample.html%3Fx%3D1');
  assert.equal(new SigninClient().startSocialSignIn('google', { link: true }), '/auth/google/login?link=1');
  const assigned = [];
  globalThis.window = { location: { assign: (u) => assigned.push(u) } };
  try {
    new SigninClient().startSocialSignIn('apple');
  } finally {
    delete globalThis.window;
  }
  assert.deepEqual(assigned, ['/auth/apple/login']);
});

await test('localStorageStore round-trips and tolerates junk', () => {
  const area = new Map();
  const fake = { getItem: (k) => (area.has(k) ? area.get(k) : null), setItem: (k, v) => area.set(k, v), removeItem: (k) => area.delete(k) };
  const store = localStorageStore('k', fake);
  assert.equal(store.get(), null);
  store.set({ a: 1 });
  assert.deepEqual(store.get(), { a: 1 });
  area.set('k', '{junk');
  assert.equal(store.get(), null);
  store.remove();
  assert.equal(area.has('k'), false);
});

await test('providers() and network error mapping', async () => {
  const server = fakeServer();
  server.routes['GET /api/providers'] = () => json(200, [{ name: 'github', display_name: 'GitHub', login_url: '/auth/github/login' }]);
  const client = new SigninClient({ fetch: server.fetch });
  assert.equal((await client.providers())[0].name, 'github');
  const offline = new SigninClient({ fetch: async () => { throw new TypeError('fetch failed'); } });
  await assert.rejects(offline.providers(), (e) => e instanceof SigninError && e.code === 'network_error' && e.status === 0);
});

await test('two tabs sharing a store: Web Locks serialize the refresh (no reuse)', async () => {
  const server = fakeServer();
  const shared = memoryStore();
  server.routes['POST /api/auth/login'] = () => json(200, server.issue(10));
  const ended = [];
  const tabA = new SigninClient({ fetch: server.fetch, storage: shared, onSessionEnded: (r) => ended.push(r) });
  const tabB = new SigninClient({ fetch: server.fetch, storage: shared, onSessionEnded: (r) => ended.push(r) });
  await tabA.login({ email: 'a@b.c', password: 'pw' });
  const held = new Map();
  let lockRequests = 0;
  const locks = {
    request(name, fn) {
      lockRequests += 1;
      const prev = held.get(name) || Promise.resolve();
      const next = prev.then(() => fn());
      held.set(name, next.catch(() => {}));
      return next;
    },
  };
  const desc = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  try {
    const res = await Promise.all([tabA.fetch('/api/data'), tabB.fetch('/api/data'), tabA.fetch('/api/data'), tabB.fetch('/api/data')]);
    assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 200]);
  } finally {
    if (desc) Object.defineProperty(globalThis, 'navigator', desc); else delete globalThis.navigator;
  }
  assert.equal(lockRequests, 2); // one per tab
  assert.equal(server.refreshCalls, 1);
  assert.deepEqual(ended, []);
});

for (const [status, name, err] of results) {
  console.log(`${status} ${name}${err ? `\n     ${err.stack || err}` : ''}`);
}
const failed = results.filter((r) => r[0] === 'FAIL').length;
console.log(`\n${results.filter((r) => r[0] === 'PASS').length} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
