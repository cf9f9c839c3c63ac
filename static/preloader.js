/*
 * preloader.js — waits for the background worker to finish a sign-in.
 *
 * Flow
 *   1. Long-poll  GET /auth/status?wait=25[&operation=<id>]
 *      The server holds the request until the operation settles or `wait`
 *      seconds pass, so a "pending" answer means "ask again right away".
 *      A "pending" answer with Retry-After means the server had no room to hold
 *      the request: ask again after that many seconds (1–5 s), still long-polling.
 *   2. If long-polling misbehaves (network error, non-2xx, timeout, junk body,
 *      or "pending" answers that come back far sooner than `wait`, i.e. the
 *      server or a proxy ignores it), fall back to plain polling of
 *      GET /auth/status[?operation=<id>] every 1 s, backing off to 5 s while
 *      requests keep failing.
 *   3. Outcome:
 *        ok    -> /auth/success[?operation=<id>]
 *        error -> /auth/error?operation=<id>   (error page looks it up), or
 *                 /auth/error?reason=<code>    when there is no operation id;
 *                 with a restart_url (exchange_interrupted), that login once
 *        404   -> /auth/error?reason=no_operation (nothing bound to this browser)
 *   4. After 60 s without an outcome, stop and let the user decide
 *      ("Check again" restarts, "Try again" goes to /). Never auto-redirect
 *      on give-up: the sign-in may still complete server-side.
 *
 * Constraints: ES2017, no modules, no globals, CSP-safe (no inline code,
 * handlers attached here), and it must never throw uncaught errors.
 */
(function () {
  'use strict';

  // ---- Tunables -----------------------------------------------------------

  const WAIT_SECONDS = 25;            // long-poll hold time we ask the server for
  const REQUEST_TIMEOUT_MS = 35000;   // WAIT_SECONDS + slack; kills hung requests
  const GIVE_UP_MS = 60000;           // total budget of one polling session
  const STILL_WORKING_MS = 5000;      // when to reassure the user
  const INTERVAL_MS = 1000;           // fallback polling period
  const MAX_BACKOFF_MS = 5000;        // fallback ceiling while requests fail
                                      // (and the most we honour of a Retry-After)
  // A long-poll answering "pending" faster than this did not really wait.
  // One quick answer can be legitimate (e.g. server restarted); several in a
  // row mean `wait` is being ignored, so long-polling only adds load.
  const QUICK_RETURN_MS = 5000;
  const MAX_QUICK_RETURNS = 3;
  // A worker died while the provider had the code ("exchange_interrupted"):
  // the status carries a restart_url, followed once per this many ms.
  const RESTART_KEY = 'signin.restartedAt';
  const RESTART_AGAIN_AFTER_MS = 600000;

  const MESSAGES = {
    contacting: 'Contacting your provider…',
    stillWorking: 'Still working…',
    trouble: 'Having trouble reaching the server. Retrying…',
    redirecting: 'Redirecting…',
    gaveUp: 'This is taking longer than expected. The sign-in may still finish — try again in a moment.',
    resumed: 'Sign-in was interrupted. Check again to continue, or start over.',
    unsupported: 'Your browser cannot check the sign-in status automatically.'
  };

  // ---- DOM ------------------------------------------------------------------

  const root = document.getElementById('preloader');
  const statusEl = document.getElementById('status');
  const stalledEl = document.getElementById('stalled');
  const checkAgainBtn = document.getElementById('check-again');
  const headingEl = document.getElementById('preloader-title');

  // Wrong page or broken template: do nothing rather than throw.
  if (!root || !statusEl) {
    return;
  }

  // JavaScript is running: reveal the spinner and status line (see style.css).
  document.documentElement.classList.remove('no-js');

  // The server HTML-escapes the id; the browser unescapes it for us here,
  // and we re-encode it for use in a URL.
  const operation = (root.getAttribute('data-operation') || '').trim();

  // ---- URLs -----------------------------------------------------------------

  /** path + "?" + params, with operation=<id> appended when we have one. */
  function buildUrl(path, params) {
    const parts = (params || []).slice();
    if (operation) {
      parts.push('operation=' + encodeURIComponent(operation));
    }
    return parts.length ? path + '?' + parts.join('&') : path;
  }

  /** Where to send the user when the operation failed. */
  function errorUrl(code) {
    // With an id the error page fetches the stored message itself; without
    // one it can only go by the code we pass along.
    return operation
      ? buildUrl('/auth/error')
      : '/auth/error?reason=' + encodeURIComponent(code);
  }

  // ---- UI helpers -------------------------------------------------------------

  function setStatus(text) {
    // Only touch the live region on real changes so screen readers are not
    // made to repeat the same sentence on every poll.
    if (statusEl.textContent !== text) {
      statusEl.textContent = text;
    }
  }

  function showStalled(message) {
    root.classList.add('is-stalled');
    setStatus(message);
    if (stalledEl) {
      stalledEl.hidden = false;
    }
  }

  function hideStalled() {
    root.classList.remove('is-stalled');
    if (stalledEl) {
      stalledEl.hidden = true;
    }
  }

  // ---- Polling session --------------------------------------------------------
  //
  // All state of one polling run lives in a session object. Stopping a run
  // flips `active` to false; every async continuation checks that flag, so a
  // late response from an old run can never redirect or reschedule anything.

  let session = null;

  function start() {
    stop();
    const s = {
      active: true,
      startedAt: Date.now(),
      longPoll: true,       // switches to false for good once fallback kicks in
      quickReturns: 0,      // consecutive "pending" long-polls that did not wait
      failures: 0,          // consecutive failed requests (drives backoff)
      controller: null,     // AbortController of the request in flight
      timers: []
    };
    session = s;

    hideStalled();
    setStatus(MESSAGES.contacting);

    if (typeof fetch !== 'function') {
      // Very old browser: nothing to poll with. Let the user decide.
      stop();
      showStalled(MESSAGES.unsupported);
      return;
    }

    later(s, STILL_WORKING_MS, function () { setStatus(progressMessage(s)); });
    later(s, GIVE_UP_MS, function () { giveUp(s); });
    poll(s);
  }

  function stop() {
    const s = session;
    if (!s) {
      return;
    }
    session = null;
    s.active = false;
    s.timers.forEach(function (id) { clearTimeout(id); });
    s.timers = [];
    if (s.controller) {
      s.controller.abort();   // its pending fetch resolves as a failure and is ignored
      s.controller = null;
    }
  }

  /** setTimeout bound to a session: cleared by stop(), no-op once inactive. */
  function later(s, ms, fn) {
    s.timers.push(setTimeout(function () {
      if (s.active) {
        fn();
      }
    }, ms));
  }

  function progressMessage(s) {
    if (s.failures >= 2) {
      return MESSAGES.trouble;
    }
    return Date.now() - s.startedAt >= STILL_WORKING_MS
      ? MESSAGES.stillWorking
      : MESSAGES.contacting;
  }

  function giveUp(s) {
    if (session !== s) {
      return;
    }
    stop();
    showStalled(MESSAGES.gaveUp);
  }

  function finish(url) {
    stop();
    setStatus(MESSAGES.redirecting);
    // replace(): the preloader should not be a Back-button destination.
    window.location.replace(url);
  }

  // ---- One poll ---------------------------------------------------------------

  async function poll(s) {
    try {
      const wasLongPoll = s.longPoll;
      const url = buildUrl('/auth/status', wasLongPoll ? ['wait=' + WAIT_SECONDS] : []);
      const sentAt = Date.now();
      const result = await fetchStatus(s, url);
      if (!s.active) {
        return;   // stopped (gave up, restarted, redirected) while waiting
      }
      handleResult(s, result, wasLongPoll, Date.now() - sentAt);
    } catch (e) {
      // Defensive: nothing above is expected to throw, but an uncaught
      // rejection would silently end polling. Treat it as a failed request.
      if (s.active) {
        onFailure(s);
      }
    }
  }

  /**
   * Performs one status request. Never rejects; resolves to one of
   *   {kind: 'pending'} | {kind: 'ok'} | {kind: 'error', code}
   *   {kind: 'no_operation'} | {kind: 'failure'}
   */
  async function fetchStatus(s, url) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : 0;
    s.controller = controller;
    try {
      const init = {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' }
      };
      if (controller) {
        init.signal = controller.signal;
      }
      const res = await fetch(url, init);
      if (res.status === 404) {
        return { kind: 'no_operation' };
      }
      if (!res.ok) {
        // 5xx, proxy errors, rate limiting, …
        return { kind: 'failure', retryAfterMs: retryAfterMs(res) };
      }
      const result = parseStatus(await res.text());
      result.retryAfterMs = retryAfterMs(res);
      return result;
    } catch (e) {
      return { kind: 'failure' };     // network error, abort/timeout, body read error
    } finally {
      clearTimeout(timer);
      if (s.controller === controller) {
        s.controller = null;
      }
    }
  }

  /**
   * The response's Retry-After (delta-seconds) in ms, bounded to 1–5 s so a
   * stray header can neither make us spin nor stall us; 0 without one.
   */
  function retryAfterMs(res) {
    const value = res.headers && res.headers.get('Retry-After');
    if (!value || !/^\s*\d+\s*$/.test(value)) {
      return 0;
    }
    return Math.min(MAX_BACKOFF_MS, Math.max(INTERVAL_MS, Number(value) * 1000));
  }

  /** Validates the JSON body; anything unexpected counts as a failure. */
  function parseStatus(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      return { kind: 'failure' };     // e.g. an HTML error page from a proxy
    }
    if (!data || typeof data !== 'object') {
      return { kind: 'failure' };
    }
    switch (data.status) {
      case 'pending':
      case 'ok':
        return { kind: data.status };
      case 'error': {
        const err = data.error;
        const code = err && typeof err.code === 'string' && err.code ? err.code : 'unknown';
        // Only our own login route: never a redirect elsewhere.
        const restart = typeof data.restart_url === 'string' &&
          /^\/auth\/[a-z0-9_-]+\/login(\?|$)/.test(data.restart_url) ? data.restart_url : null;
        return { kind: 'error', code: code, restartUrl: restart };
      }
      default:
        return { kind: 'failure' };
    }
  }

  function handleResult(s, result, wasLongPoll, elapsedMs) {
    switch (result.kind) {
      case 'ok':
        finish(buildUrl('/auth/success'));
        break;
      case 'error':
        finish(result.restartUrl && mayRestart() ? result.restartUrl : errorUrl(result.code));
        break;
      case 'no_operation':
        finish('/auth/error?reason=no_operation');
        break;
      case 'pending':
        onPending(s, wasLongPoll, elapsedMs, result.retryAfterMs);
        break;
      default:
        onFailure(s, result.retryAfterMs);
    }
  }

  /**
   * Whether an interrupted sign-in may start again by itself: once, so a
   * sign-in that keeps failing ends on the error page. Without storage, never.
   */
  function mayRestart() {
    try {
      const last = Number(window.sessionStorage.getItem(RESTART_KEY)) || 0;
      if (Date.now() - last < RESTART_AGAIN_AFTER_MS) {
        return false;
      }
      window.sessionStorage.setItem(RESTART_KEY, String(Date.now()));
      return true;
    } catch (e) {
      return false;
    }
  }

  function onPending(s, wasLongPoll, elapsedMs, retryAfter) {
    if (s.failures) {
      s.failures = 0;
      setStatus(progressMessage(s));   // clear a "trouble" message
    }

    if (retryAfter) {
      // The server had no room to hold the request (too many waiting) and
      // said when to ask again. Not a sign that long-polling is broken.
      schedule(s, retryAfter);
      return;
    }

    if (!wasLongPoll) {
      schedule(s, INTERVAL_MS);
      return;
    }

    if (elapsedMs >= QUICK_RETURN_MS) {
      // The server really held the request, so we can ask again at once.
      s.quickReturns = 0;
      schedule(s, 0);
      return;
    }

    // Answered "pending" without waiting. Pause briefly instead of looping
    // tightly, and give up on long-polling if this keeps happening.
    s.quickReturns += 1;
    if (s.quickReturns >= MAX_QUICK_RETURNS) {
      s.longPoll = false;
    }
    schedule(s, INTERVAL_MS);
  }

  function onFailure(s, retryAfter) {
    // Any failed long-poll (often a proxy cutting idle connections or
    // buffering) is reason enough to use short requests for the rest of
    // this session; they survive such intermediaries.
    s.longPoll = false;
    s.failures += 1;
    setStatus(progressMessage(s));
    // 1 s, 2 s, 4 s, then 5 s for every further failure.
    // A Retry-After (429, 503) stretches the delay, within the same ceiling.
    const backoff = Math.min(MAX_BACKOFF_MS, INTERVAL_MS * Math.pow(2, s.failures - 1));
    schedule(s, Math.max(backoff, retryAfter || 0));
  }

  function schedule(s, ms) {
    // Always via a timer, even for 0 ms, so polls never nest on the stack.
    later(s, ms, function () { poll(s); });
  }

  // ---- Wiring -----------------------------------------------------------------

  if (checkAgainBtn) {
    checkAgainBtn.addEventListener('click', function () {
      start();
      // The button just got hidden; put focus somewhere sensible so keyboard
      // and screen-reader users are not dropped at the top of the document.
      if (headingEl) {
        headingEl.focus();
      }
    });
  }

  // Restored from the back/forward cache (e.g. the user pressed Back on the
  // success or error page): timers are gone and we may be showing
  // "Redirecting…". Do not bounce the user forward again automatically;
  // offer the give-up choices instead.
  window.addEventListener('pageshow', function (event) {
    if (event.persisted && !session) {
      showStalled(MESSAGES.resumed);
    }
  });

  start();
})();
