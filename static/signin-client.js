/*
 * signin-client.js — browser client for the social-signin API (ES module, no deps).
 *
 *   import { SigninClient } from '/static/signin-client.js';
 *   const client = new SigninClient({ onSessionEnded: (reason) => showSignIn(reason) });
 *   await client.login({ email, password });
 *   const me = await client.me();
 *
 * Two ways to be signed in:
 *   - Browser redirect (startSocialSignIn): the server sets an HttpOnly session
 *     cookie. This client holds no tokens then; same-origin calls such as me()
 *     still work because the browser sends the cookie.
 *   - Tokens (login, register, exchangeNative): a short-lived access token plus a
 *     single-use refresh token, kept in `storage` and rotated by fetch().
 *
 * Refresh tokens are single-use and presenting a spent one revokes the whole
 * session, so all refreshes go through one in-flight promise (and, where the Web
 * Locks API exists, one lock across tabs sharing a store). A refresh whose
 * response is lost in transit still spends the token; the next attempt then ends
 * the session — that is the server's reuse protection working as designed.
 */

/** An API error: `code` and `message` from `{"error":{...}}`, the HTTP `status`
 *  (0 for network errors and timeouts), `retryAfter` in seconds on 429. */
export class SigninError extends Error {
  constructor(code, message, { status = 0, retryAfter } = {}) {
    super(message || code);
    this.name = 'SigninError';
    this.code = code;
    this.status = status;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/** The default token store: a variable, gone on reload. */
export function memoryStore() {
  let value = null;
  return { get: () => value, set: (v) => { value = v; }, remove: () => { value = null; } };
}

/**
 * A token store in `localStorage` (or pass `sessionStorage`), shared by tabs and
 * surviving reloads. Trade-off: any script running on the origin — including one
 * injected through an XSS bug or a compromised dependency — can read it and take
 * the long-lived refresh token elsewhere. The memory default limits that to the
 * page's lifetime, and the cookie session of the browser redirect is HttpOnly.
 * Use this only with a strict CSP and when surviving reloads is worth it.
 * @param {string} [key]
 * @param {Storage} [area]
 */
export function localStorageStore(key = 'signin.tokens', area = globalThis.localStorage) {
  return {
    get() {
      try { return JSON.parse(area.getItem(key)); } catch { return null; }
    },
    set(value) { area.setItem(key, JSON.stringify(value)); },
    remove() { area.removeItem(key); },
  };
}

const JSON_HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json' };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const ABSOLUTE = /^[a-z][a-z\d+.-]*:|^\/\//i; // scheme: or protocol-relative
const isRequest = (x) => typeof Request !== 'undefined' && x instanceof Request;

/** Seconds from a Retry-After header (delta-seconds or an HTTP date). */
function parseRetryAfter(value) {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** A SigninError from a non-2xx response. */
async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const err = body && body.error;
  return new SigninError(
    (err && err.code) || `http_${res.status}`,
    (err && err.message) || res.statusText || `Request failed (${res.status}).`,
    { status: res.status, retryAfter: parseRetryAfter(res.headers.get('Retry-After')) },
  );
}

const networkError = (cause) =>
  Object.assign(new SigninError('network_error', 'Cannot reach the server.'), { cause });

export class SigninClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] API origin (and path prefix); '' for same origin.
   * @param {{get(): any, set(v: any): void, remove(): void}} [options.storage] token store (memory by default).
   * @param {typeof fetch} [options.fetch]
   * @param {number} [options.refreshMarginSeconds] refresh this long before the access token expires.
   * @param {(reason: string) => void} [options.onSessionEnded] called when a refresh is refused (401).
   */
  constructor({
    baseUrl = '',
    storage = memoryStore(),
    fetch = globalThis.fetch,
    refreshMarginSeconds = 60,
    onSessionEnded = () => {},
  } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.storage = storage;
    this._fetch = (...args) => fetch(...args); // unbound window.fetch throws "Illegal invocation"
    this.refreshMarginSeconds = refreshMarginSeconds;
    this.onSessionEnded = onSessionEnded;
    this._refreshing = null;
  }

  // ---- Public API ---------------------------------------------------------

  /** The configured providers: `[{name, display_name, login_url}]`. */
  providers() {
    return this._call('/api/providers');
  }

  /**
   * Starts browser sign-in by navigating to the provider's login URL; the server
   * finishes with a session cookie and redirects to `next`.
   * @param {string} provider
   * @param {{next?: string, link?: boolean}} [options] `next`: a local path to land on;
   *   `link`: add this provider to the signed-in (cookie) user.
   * @returns {string} the URL (navigation happens only in a browser).
   */
  startSocialSignIn(provider, { next, link } = {}) {
    const params = new URLSearchParams();
    if (next) params.set('next', next);
    if (link) params.set('link', '1');
    const query = params.toString();
    const url = `${this.baseUrl}/auth/${encodeURIComponent(provider)}/login${query ? `?${query}` : ''}`;
    if (typeof window !== 'undefined' && window.location) window.location.assign(url);
    return url;
  }

  /**
   * Creates a password account and signs in with tokens.
   * @param {{email: string, password: string, first_name?: string, last_name?: string, device?: string}} details
   * @returns {Promise<{sessionId: string, expiresAt: number, refreshExpiresAt: number}>}
   * @throws {SigninError} e.g. `invalid_email`, `weak_password`, `email_in_use`.
   */
  async register(details) {
    return this._store(await this._call('/api/auth/register', { method: 'POST', json: details }));
  }

  /**
   * Signs in with email and password.
   * @param {{email: string, password: string, device?: string}} credentials
   * @returns {Promise<{sessionId: string, expiresAt: number, refreshExpiresAt: number}>}
   * @throws {SigninError} `invalid_credentials` (401), `too_many_requests` (429, see `retryAfter`).
   */
  async login({ email, password, device }) {
    const tokens = await this._call('/api/auth/login', { method: 'POST', json: { email, password, device } });
    return this._store(tokens);
  }

  /**
   * Native social sign-in: hands the provider's result (`{code, code_verifier,
   * redirect_uri, nonce}`, the nonce being required for OpenID Connect providers,
   * `{id_token, nonce}`, or Facebook's `{access_token}`) to the server, then waits
   * for the queued sign-in to finish.
   * @param {string} provider
   * @param {object} body
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [options]
   */
  async exchangeNative(provider, body, options) {
    const started = await this._call(`/api/auth/${encodeURIComponent(provider)}/token`, { method: 'POST', json: body });
    return this.pollOperation(started.status_url, started.poll_secret, options);
  }

  /**
   * Long-polls a native sign-in operation until it settles; stores the tokens on
   * `ok`. Network errors and 5xx are retried with jittered backoff (1 s doubling
   * to 10 s) until `timeoutMs` runs out.
   * @param {string} statusUrl
   * @param {string} pollSecret
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<{sessionId: string, expiresAt: number, refreshExpiresAt: number}>}
   * @throws {SigninError} the operation's own code on `error`; `timeout`;
   *   `already_redeemed` (410); `not_found` (404, wrong secret).
   */
  async pollOperation(statusUrl, pollSecret, { timeoutMs = 60000, signal } = {}) {
    const deadline = Date.now() + timeoutMs;
    const url = this._url(statusUrl);
    let failures = 0;
    for (;;) {
      if (signal && signal.aborted) throw signal.reason;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new SigninError('timeout', 'The sign-in did not finish in time.');
      const wait = Math.min(25, Math.floor(remaining / 1000));
      const sentAt = Date.now();
      let res = null;
      try {
        res = await this._fetchWithTimeout(`${url}${url.includes('?') ? '&' : '?'}wait=${wait}`, {
          headers: { 'X-Poll-Secret': pollSecret, Accept: 'application/json' },
          cache: 'no-store',
        }, (wait + 10) * 1000, signal);
      } catch (e) {
        if (signal && signal.aborted) throw signal.reason;
      }
      if (!res || res.status >= 500) {
        // Jittered exponential backoff, never past the deadline.
        const base = Math.min(10000, 1000 * 2 ** failures++);
        await sleep(Math.min(base * (0.8 + Math.random() * 0.4), deadline - Date.now()));
        continue;
      }
      if (!res.ok) throw await errorFrom(res);
      failures = 0;
      const body = await res.json();
      if (body.status === 'ok') return this._store(body.tokens);
      if (body.status === 'error') {
        const err = body.error || {};
        throw new SigninError(err.code || 'error', err.message, { status: res.status });
      }
      // Pending. A long-poll that came back at once must not spin: the server
      // says how long to wait (Retry-After, when it had no room to hold the
      // request; honoured up to 10 s), else wait 1 s (it ignored `wait`).
      const retryAfter = parseRetryAfter(res.headers.get('Retry-After'));
      const pause = retryAfter !== undefined
        ? Math.min(10000, Math.max(1000, retryAfter * 1000))
        : (Date.now() - sentAt < 1000 ? 1000 : 0);
      if (pause) await sleep(Math.min(pause, deadline - Date.now()));
    }
  }

  /**
   * `fetch` with the access token: refreshes first when it expires within
   * `refreshMarginSeconds`, and once more (then retries once) on a 401. Without
   * tokens the request goes out as is (a cookie session may still apply). The
   * bearer is only sent to URLs under `baseUrl` (or this origin).
   * @param {RequestInfo | URL} input a path such as '/api/me', a URL or a Request.
   * @param {RequestInit} [init] bodies must be replayable (no streams) for the retry.
   * @returns {Promise<Response>}
   * @throws {SigninError} when a needed refresh fails (the session ended on 401).
   */
  async fetch(input, init = {}) {
    const ours = this._isOurs(input);
    let tokens = ours ? this._tokens() : null;
    if (tokens && tokens.expiresAt - Date.now() < this.refreshMarginSeconds * 1000) {
      tokens = await this._refresh(tokens);
    }
    const res = await this._send(input, init, tokens);
    if (res.status !== 401 || !tokens) return res;
    tokens = await this._refresh(tokens);
    return this._send(input, init, tokens);
  }

  /** The signed-in user (`GET /api/me`), by token or session cookie. */
  me() {
    return this._call('/api/me', { auth: true });
  }

  /** The user's active sessions, `[{id, kind, device, user_agent, ip, created_at, last_seen_at, current}]`. */
  sessions() {
    return this._call('/api/sessions', { auth: true });
  }

  /**
   * Revokes one session; revoking this client's own session also drops its tokens.
   * @param {string} id
   */
  async revokeSession(id) {
    await this._call(`/api/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', auth: true });
    const tokens = this._tokens();
    if (tokens && tokens.sessionId === id) this.storage.remove();
  }

  /**
   * Ends this session (or every session with `all`). Local tokens are dropped
   * even when the request fails; onSessionEnded is not called.
   * @param {{all?: boolean}} [options]
   * @returns {Promise<boolean>} whether the server confirmed.
   */
  async logout({ all = false } = {}) {
    try {
      await this._call(`/api/auth/logout${all ? '?all=1' : ''}`, { method: 'POST', auth: true });
      return true;
    } catch {
      return false;
    } finally {
      this.storage.remove();
    }
  }

  /** Whether this client holds tokens whose refresh token has not expired.
   *  (A cookie session is invisible here; call me() to find out.) */
  isSignedIn() {
    const tokens = this._tokens();
    return !!tokens && tokens.refreshExpiresAt > Date.now();
  }

  // ---- Internals ------------------------------------------------------------

  _tokens() {
    const tokens = this.storage.get();
    return tokens && tokens.accessToken && tokens.refreshToken ? tokens : null;
  }

  /** Stores a TokenPair with absolute expiry times; returns what the caller may see. */
  _store(pair) {
    const now = Date.now();
    const tokens = {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token,
      sessionId: pair.session_id,
      expiresAt: now + pair.expires_in * 1000,
      refreshExpiresAt: now + pair.refresh_expires_in * 1000,
    };
    this.storage.set(tokens);
    return { sessionId: tokens.sessionId, expiresAt: tokens.expiresAt, refreshExpiresAt: tokens.refreshExpiresAt };
  }

  /** New tokens for `stale`, sharing one in-flight refresh among all callers. */
  _refresh(stale) {
    if (!this._refreshing) {
      const locks = globalThis.navigator && globalThis.navigator.locks;
      const run = () => this._doRefresh(stale);
      this._refreshing = (locks ? locks.request(`signin-refresh ${this.baseUrl}`, run) : run())
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async _doRefresh(stale) {
    const current = this._tokens();
    if (!current) throw new SigninError('not_signed_in', 'Signed out.', { status: 401 });
    // Someone (another call, another tab) rotated already: use theirs, never re-spend.
    if (current.refreshToken !== stale.refreshToken) return current;
    let res;
    try {
      res = await this._fetch(this._url('/api/auth/refresh'), {
        method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ refresh_token: current.refreshToken }),
      });
    } catch (e) {
      throw networkError(e);
    }
    if (!res.ok) {
      const error = await errorFrom(res);
      if (res.status === 401) {
        this.storage.remove();
        try { this.onSessionEnded(error.code); } catch (e) { console.error(e); }
      }
      throw error;
    }
    const pair = await res.json();
    // Signed out (or in again) while the refresh was in flight: do not resurrect.
    const now = this._tokens();
    if (!now || now.refreshToken !== current.refreshToken) {
      throw new SigninError('not_signed_in', 'Signed out.', { status: 401 });
    }
    this._store(pair);
    return this._tokens();
  }

  _url(path) {
    return ABSOLUTE.test(path) ? path : this.baseUrl + path;
  }

  /** Whether `input` targets this API (so it may carry the bearer). */
  _isOurs(input) {
    const raw = isRequest(input) ? input.url : String(input);
    if (!ABSOLUTE.test(raw)) return true; // a path: resolved against baseUrl
    try {
      const here = globalThis.location && globalThis.location.href;
      const base = new URL(this.baseUrl || '/', here).href.replace(/\/$/, '');
      const abs = new URL(raw, here).href;
      return abs === base || abs.startsWith(`${base}/`);
    } catch {
      return false; // no way to tell: keep the token to ourselves
    }
  }

  _send(input, init, tokens) {
    const headers = new Headers(isRequest(input) ? input.headers : undefined);
    new Headers(init.headers).forEach((value, name) => headers.set(name, value));
    if (tokens) headers.set('Authorization', `Bearer ${tokens.accessToken}`);
    const target = isRequest(input) ? input.clone() : this._url(String(input));
    return this._fetch(target, { ...init, headers });
  }

  async _fetchWithTimeout(url, init, ms, signal) {
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    const timer = setTimeout(onAbort, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await this._fetch(url, { ...init, signal: controller.signal });
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', onAbort);
    }
  }

  /** JSON request: `json` becomes the body, `auth` goes through fetch(); parsed body or null. */
  async _call(path, { method = 'GET', json, auth = false } = {}) {
    const init = { method, headers: json === undefined ? { Accept: 'application/json' } : JSON_HEADERS };
    if (json !== undefined) init.body = JSON.stringify(json);
    let res;
    try {
      res = auth ? await this.fetch(path, init) : await this._fetch(this._url(path), init);
    } catch (e) {
      throw e instanceof SigninError ? e : networkError(e);
    }
    if (!res.ok) throw await errorFrom(res);
    return res.status === 204 ? null : res.json();
  }
}

export default SigninClient;
