// Checks of static/preloader.js in a minimal fake page (node scripts/js-tests/preloader.test.mjs):
// the script runs in a VM context with stand-ins for the few DOM calls it makes, and a fake fetch.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const source = readFileSync(new URL('../../static/preloader.js', import.meta.url), 'utf8');

function element(attributes = {}) {
  return {
    textContent: '', hidden: false, attributes,
    classList: { add() {}, remove() {} },
    getAttribute(name) { return this.attributes[name] ?? null; },
    addEventListener() {},
    focus() {},
  };
}

/** Runs the preloader against `answer(n, url)`; resolves with the requests and where it went. */
function runPreloader(answer, { operation = 'op-1', deadlineMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const calls = [];
    const timers = new Set();
    const elements = {
      preloader: element({ 'data-operation': operation }),
      status: element(), stalled: element(), 'check-again': element(), 'preloader-title': element(),
    };
    const done = (went) => {
      for (const t of timers) clearTimeout(t);
      clearTimeout(guard);
      resolve({ calls, went });
    };
    const guard = setTimeout(() => done(null), deadlineMs);
    const context = {
      document: {
        getElementById: (id) => elements[id] || null,
        documentElement: { classList: { remove() {} } },
      },
      window: {
        location: { replace: done },
        sessionStorage: { getItem: () => null, setItem() {} },
        addEventListener() {},
      },
      fetch: async (url) => {
        calls.push({ url, at: Date.now() });
        try {
          return answer(calls.length, url);
        } catch (e) {
          reject(e);
          throw e;
        }
      },
      setTimeout: (fn, ms) => { const t = setTimeout(() => { timers.delete(t); fn(); }, ms); timers.add(t); return t; },
      clearTimeout: (t) => { timers.delete(t); clearTimeout(t); },
      AbortController, Date, Math, Number, JSON, String, encodeURIComponent,
    };
    vm.runInNewContext(source, context);
  });
}

const json = (body, headers = {}) =>
  new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json', ...headers } });

const results = [];
async function test(name, fn) {
  try {
    await fn();
    results.push(['PASS', name]);
  } catch (e) {
    results.push(['FAIL', name, e]);
  }
}

await test('a pending answer with Retry-After (no room to wait) is asked again after it, still long-polling', async () => {
  const { calls, went } = await runPreloader((n) =>
    n <= 3 ? json({ status: 'pending' }, { 'Retry-After': '2' }) : json({ status: 'ok' }));
  assert.equal(went, '/auth/success?operation=op-1');
  assert.equal(calls.length, 4);
  const gaps = calls.slice(1).map((c, i) => c.at - calls[i].at);
  assert.ok(gaps.every((g) => g >= 1900 && g <= 2600), `gaps ${gaps}`);
  // Three answers in a row that did not wait, but with Retry-After: not a broken long poll.
  assert.ok(calls.every((c) => c.url.includes('wait=25')), calls.map((c) => c.url).join(' '));
});

await test('a Retry-After is honoured within 1–5 s', async () => {
  const { calls, went } = await runPreloader((n) =>
    n === 1 ? json({ status: 'pending' }, { 'Retry-After': '3600' }) : json({ status: 'ok' }));
  assert.equal(went, '/auth/success?operation=op-1');
  const gap = calls[1].at - calls[0].at;
  assert.ok(gap >= 4900 && gap <= 5600, `gap ${gap}`);
});

for (const [status, name, err] of results) {
  console.log(`${status} ${name}${err ? `\n     ${err.stack || err}` : ''}`);
}
const failed = results.filter((r) => r[0] === 'FAIL').length;
console.log(`\n${results.filter((r) => r[0] === 'PASS').length} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
