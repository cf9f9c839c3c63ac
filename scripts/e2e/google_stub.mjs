// A stand-in for Google for the One Tap browser check (no network): a local OpenID
// Provider (discovery and JWKS, RS256) the api's worker verifies against, and a
// stub of Google's `gsi/client` script that does what Google's does with the page's
// `#g_id_onload` element: on a click of its button it obtains an ID token for the
// page's client id and nonce, sets the `g_csrf_token` cookie and posts `credential`
// and `g_csrf_token` to `data-login_uri` from the page.

import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import http from 'node:http';

export const CLIENT_ID = 'e2e-web-client.apps.googleusercontent.com';
const KID = 'e2e-google-key';

/** Starts the provider on 127.0.0.1; resolves to { issuer, credential(nonce, aud), close }. */
export async function startGoogleStub() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: KID, alg: 'RS256', use: 'sig' };
  const server = http.createServer((req, res) => {
    const send = (body) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration') {
      send({
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code', 'id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    } else if (req.url === '/jwks') {
      send({ keys: [jwk] });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;

  /** An ID token as Google's One Tap issues it, for `nonce`. */
  function credential(nonce, aud = CLIENT_ID) {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const input = `${b64({ alg: 'RS256', kid: KID, typ: 'JWT' })}.${b64({
      iss: issuer,
      azp: aud,
      aud,
      sub: '110169484474386276334',
      email: 'grace@example.com',
      email_verified: true,
      nonce,
      nbf: now - 5,
      name: 'Grace Hopper',
      given_name: 'Grace',
      family_name: 'Hopper',
      iat: now,
      exp: now + 3600,
      jti: randomUUID(),
    })}`;
    return `${input}.${sign('RSA-SHA256', Buffer.from(input), privateKey).toString('base64url')}`;
  }

  return { issuer, credential, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** The stub of https://accounts.google.com/gsi/client, served by a page route. */
export const GSI_CLIENT_STUB = `(() => {
  const onload = document.getElementById('g_id_onload');
  const slot = document.querySelector('.g_id_signin');
  if (!onload || !slot) return;
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = 'Continue with Google (stub)';
  slot.appendChild(button);
  button.addEventListener('click', async () => {
    const query = new URLSearchParams({ nonce: onload.dataset.nonce, client_id: onload.dataset.client_id });
    const res = await fetch('https://accounts.google.com/gsi/e2e-credential?' + query);
    const { credential } = await res.json();
    const csrf = crypto.randomUUID();
    document.cookie = 'g_csrf_token=' + csrf + '; path=/';
    const form = document.createElement('form');
    form.method = 'post';
    form.action = onload.dataset.login_uri;
    for (const [name, value] of [['credential', credential], ['g_csrf_token', csrf], ['select_by', 'btn']]) {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  });
})();`;
