/*
 * example.js — drives example.html with /static/signin-client.js.
 *
 *   - Provider buttons call client.startSocialSignIn(), a full-page redirect.
 *     The server signs the browser in with an HttpOnly cookie and sends it back
 *     here (next=/static/example.html); me() then works through that cookie.
 *   - The form calls client.login() / client.register(); the client keeps the
 *     tokens (in memory: a reload forgets them) and adds the bearer itself.
 *   - Everything the server sends is shown with textContent, never as HTML.
 */
import { SigninClient, SigninError } from '/static/signin-client.js';

const HERE = '/static/example.html';

const client = new SigninClient({
  // To keep token sign-ins across reloads: `storage: localStorageStore()` (import
  // it too) — but read the XSS note next to localStorageStore first.
  onSessionEnded(reason) {
    showSignedOut();
    showError(new SigninError(reason, 'Your session has ended. Please sign in again.'));
  },
});

const $ = (id) => document.getElementById(id);
const el = {
  title: $('title'),
  status: $('status'),
  error: $('error'),
  errorMessage: $('error-message'),
  signedOut: $('signed-out'),
  signedIn: $('signed-in'),
  providers: $('providers'),
  providersEmpty: $('providers-empty'),
  form: $('password-form'),
  how: $('signed-in-how'),
  me: $('me'),
  linkSection: $('link-section'),
  linkProviders: $('link-providers'),
  sessions: $('sessions'),
  reload: $('reload'),
  logout: $('logout'),
  logoutAll: $('logout-all'),
};

let providers = [];

// ---- Messages ---------------------------------------------------------------

function setStatus(text) {
  if (el.status.textContent !== text) el.status.textContent = text;
}

function describe(error) {
  if (error instanceof SigninError) {
    if (error.status === 429 && error.retryAfter !== undefined) {
      return `Too many attempts. Try again in ${error.retryAfter} seconds.`;
    }
    return `${error.message} (${error.code})`;
  }
  return String((error && error.message) || error);
}

function showError(error) {
  el.errorMessage.textContent = describe(error);
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
  el.errorMessage.textContent = '';
}

/** Runs an action with the page's buttons disabled; shows its error, if any. */
async function busy(action) {
  const buttons = document.querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  clearError();
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// ---- Rendering -----------------------------------------------------------------

/** An <li> holding a button that runs `onClick`. */
function buttonItem(label, onClick) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'btn';
  button.textContent = label;
  button.addEventListener('click', onClick);
  li.append(button);
  return li;
}

function renderProviders() {
  el.providers.replaceChildren(...providers.map((p) =>
    buttonItem(`Continue with ${p.display_name}`, () => {
      setStatus(`Redirecting to ${p.display_name}…`);
      client.startSocialSignIn(p.name, { next: HERE });
    })));
  el.providersEmpty.hidden = providers.length > 0;
}

function showSignedOut() {
  el.signedIn.hidden = true;
  el.signedOut.hidden = false;
  el.me.textContent = '';
  el.sessions.replaceChildren();
  setStatus('You are signed out.');
}

function showSignedIn(me) {
  const byTokens = client.isSignedIn();
  el.how.textContent = byTokens
    ? 'Signed in with tokens held by this page (a reload forgets them).'
    : 'Signed in with the browser session cookie (provider sign-in).';
  el.me.textContent = JSON.stringify(me, null, 2);

  // Linking rides on the cookie session: a browser navigation carries no bearer.
  const linkable = byTokens ? [] : providers.filter((p) => !(me.providers || []).includes(p.name));
  el.linkProviders.replaceChildren(...linkable.map((p) =>
    buttonItem(`Link ${p.display_name}`, () => {
      setStatus(`Redirecting to ${p.display_name}…`);
      client.startSocialSignIn(p.name, { link: true, next: HERE });
    })));
  el.linkSection.hidden = linkable.length === 0;

  el.signedOut.hidden = true;
  el.signedIn.hidden = false;
  setStatus(`Signed in as ${me.display_name || me.email || me.id}.`);
}

function sessionItem(s) {
  const li = document.createElement('li');
  const name = document.createElement('strong');
  name.textContent = s.device || (s.kind === 'browser' ? 'Browser' : 'App');
  const details = document.createElement('span');
  details.className = 'muted';
  details.textContent = [
    s.current ? 'this session' : null,
    s.kind,
    s.user_agent,
    s.ip,
    `last seen ${new Date(s.last_seen_at).toLocaleString()}`,
  ].filter(Boolean).join(' · ');
  const revoke = document.createElement('button');
  revoke.type = 'button';
  revoke.className = 'btn';
  revoke.dataset.id = s.id;
  revoke.textContent = s.current ? 'Revoke (signs you out)' : 'Revoke';
  li.append(name, details, revoke);
  return li;
}

// ---- Loading --------------------------------------------------------------------

async function loadProviders() {
  try {
    providers = await client.providers();
  } catch (error) {
    providers = [];
    showError(error);
  }
  renderProviders();
}

/** Shows who is signed in (by bearer when the client holds tokens, else by cookie). */
async function loadAccount() {
  let me;
  try {
    me = await client.me();
  } catch (error) {
    if (error.status !== 401) throw error;
    showSignedOut();
    return;
  }
  showSignedIn(me);
  el.sessions.replaceChildren(...(await client.sessions()).map(sessionItem));
}

// ---- Handlers ---------------------------------------------------------------------

el.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const action = (event.submitter && event.submitter.value) || 'login';
  const data = new FormData(el.form);
  const text = (name) => String(data.get(name) || '').trim() || undefined;
  const details = {
    email: text('email'),
    password: String(data.get('password') || ''),
    device: 'social-signin example page',
  };
  busy(async () => {
    setStatus(action === 'register' ? 'Creating your account…' : 'Signing in…');
    try {
      if (action === 'register') {
        await client.register({ ...details, first_name: text('first_name'), last_name: text('last_name') });
      } else {
        await client.login(details);
      }
    } catch (error) {
      setStatus('You are signed out.');
      throw error;
    }
    el.form.elements.password.value = '';
    await loadAccount();
    el.title.focus();
  });
});

// One listener for every Revoke button (the list is re-rendered often).
el.sessions.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-id]');
  if (!button) return;
  busy(async () => {
    await client.revokeSession(button.dataset.id);
    await loadAccount();
  });
});

el.reload.addEventListener('click', () => busy(loadAccount));

for (const [button, all] of [[el.logout, false], [el.logoutAll, true]]) {
  button.addEventListener('click', () => busy(async () => {
    const confirmed = await client.logout({ all });
    // Token logout leaves a cookie session alone (and vice versa): ask again.
    await loadAccount();
    if (!confirmed) showError('The server could not be told; this page forgot its tokens anyway.');
    el.title.focus();
  }));
}

// ---- Start ------------------------------------------------------------------------

busy(async () => {
  await loadProviders();
  try {
    await loadAccount();
  } catch (error) {
    setStatus('');
    throw error;
  }
});
