// An OpenID Provider built with `oidc-provider` (an independent implementation) for
// social-signin's interop check. Loopback only. It has one confidential client and one
// fixed account, and an interaction handler that signs that account in and grants the
// requested scopes without a form. Every request is logged to stdout, one line each
// (path only, never the query), along with the provider's own error events.
//
// Environment (all optional):
//   OP_PORT            port on 127.0.0.1 (default 3000)
//   OP_CLIENT_SECRET   the client's secret (default "interop-secret")
//   OP_REDIRECT_URI    the client's redirect URI
//                      (default http://127.0.0.1:18080/auth/corp/callback)
//   OP_INTERACTIONS    "auto" (default): sign in and consent without a form;
//                      "dev": oidc-provider's own login and consent forms (devInteractions)

import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const PORT = Number(process.env.OP_PORT ?? 3000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const CLIENT_SECRET = process.env.OP_CLIENT_SECRET ?? 'interop-secret';
const REDIRECT_URI = process.env.OP_REDIRECT_URI ?? 'http://127.0.0.1:18080/auth/corp/callback';
const MODE = process.env.OP_INTERACTIONS ?? 'auto';
if (!['auto', 'dev'].includes(MODE)) {
  throw new Error(`OP_INTERACTIONS must be "auto" or "dev", not ${MODE}`);
}

export const ACCOUNT = {
  sub: 'interop-user-1',
  email: 'interop@example.com',
  email_verified: true,
  given_name: 'Inter',
  family_name: 'Op',
  name: 'Inter Op',
};

// A fresh RSA signing key per run, so nothing depends on oidc-provider's dev keys.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `interop-${Date.now()}`,
  alg: 'RS256',
  use: 'sig',
};

const configuration = {
  clients: [
    {
      client_id: 'signin',
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
  },
  scopes: ['openid', 'email', 'profile'],
  // Default: profile and email claims go to userinfo only, when an access token is issued.
  conformIdTokenClaims: true,
  async findAccount(ctx, sub) {
    // Any login typed into the dev form maps to the one fixed account.
    return {
      accountId: ACCOUNT.sub,
      async claims() {
        return { ...ACCOUNT };
      },
    };
  },
  jwks: { keys: [signingKey] },
  cookies: { keys: ['interop-cookie-key-not-secret-0123456789'] },
  features: {
    devInteractions: { enabled: MODE === 'dev' },
  },
  interactions: {
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(ISSUER, configuration);

// One log line per request: method, path, status; for the token endpoint also how the
// client authenticated (the header scheme, never its value).
provider.use(async (ctx, next) => {
  const started = Date.now();
  await next();
  let extra = '';
  if (ctx.path === '/token') {
    const auth = ctx.get('authorization');
    extra = ` client_auth=${auth ? auth.split(' ')[0] : 'none-in-header'}`;
  }
  console.log(`op: ${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)${extra}`);
});

for (const event of [
  'server_error',
  'authorization.error',
  'grant.error',
  'userinfo.error',
  'jwks.error',
  'discovery.error',
  'introspection.error',
  'revocation.error',
  'end_session.error',
]) {
  provider.on(event, (...args) => {
    const error = args.find((a) => a instanceof Error) ?? args[args.length - 1];
    console.log(`op: event ${event}: ${error?.name ?? ''} ${error?.message ?? ''} ${error?.error_description ?? ''}`);
  });
}
provider.on('grant.success', (ctx) => {
  console.log(`op: event grant.success client=${ctx.oidc.client?.clientId} auth=${ctx.oidc.client?.clientAuthMethod}`);
});

// The automatic interaction: login first, then consent to exactly what was asked.
async function autoInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    console.log(`op: interaction ${details.uid}: login as ${ACCOUNT.sub}`);
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: ACCOUNT.sub } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    console.log(`op: interaction ${details.uid}: consent to "${params.scope}"`);
    await provider.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
    return;
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

const handler = provider.callback();
const server = createServer(async (req, res) => {
  try {
    if (MODE === 'auto' && req.method === 'GET' && /^\/interaction\/[^/?]+(\?|$)/.test(req.url)) {
      await autoInteraction(req, res);
      console.log(`op: GET /interaction/… -> ${res.statusCode} (auto)`);
      return;
    }
    handler(req, res);
  } catch (error) {
    console.log(`op: interaction failed: ${error.name} ${error.message}`);
    if (!res.headersSent) {
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain');
      res.end(`interaction failed: ${error.message}\n`);
    }
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`op: listening at ${ISSUER} (interactions: ${MODE}, kid ${signingKey.kid})`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
