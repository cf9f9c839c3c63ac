// A small app written against signin-client.d.ts; `tsc --noEmit --strict` must
// accept it (and the @ts-expect-error lines prove the types refuse misuse).
import SigninClient, {
  type ErrorCode,
  type Me,
  type ServerErrorCode,
  SigninError,
  localStorageStore,
  memoryStore,
} from '../../../static/signin-client.js';

const client = new SigninClient({
  baseUrl: 'https://signin.example.com',
  storage: memoryStore(),
  onSessionEnded: (reason: ErrorCode) => console.log('signed out:', reason),
});
new SigninClient({ storage: localStorageStore('app.tokens') });

/** What the app shows for each code it cares about; the rest get the server's sentence. */
function explain(code: ServerErrorCode): string | undefined {
  switch (code) {
    case 'weak_password':
      return 'Pick a longer passphrase.';
    case 'token_not_for_this_app':
      return 'That Facebook sign-in was for another app.';
    case 'too_many_requests':
      return 'Slow down.';
    default:
      return undefined;
  }
}

async function main(): Promise<void> {
  const providers = await client.providers();
  const first = providers[0];
  if (first) client.startSocialSignIn(first.name, { next: '/welcome' });

  try {
    const signedIn = await client.register({ email: 'ada@example.com', password: 'violet-lantern-harbor-42' });
    const expires: number = signedIn.expiresAt;
    console.log(expires);
  } catch (error) {
    if (error instanceof SigninError) {
      const code: ErrorCode = error.code;
      if (code !== 'network_error' && code !== 'timeout' && code !== 'not_signed_in' && !code.startsWith('http_')) {
        console.log(explain(code as ServerErrorCode) ?? error.message, error.retryAfter ?? 0);
      }
    }
  }

  await client.exchangeNative('facebook', { access_token: 'EAAG…' });
  await client.exchangeNative('google', { id_token: 'eyJ…', nonce: 'n' }, { timeoutMs: 30_000 });
  await client.exchangeNative('google', { code: 'c', code_verifier: 'v'.repeat(43), redirect_uri: 'app:/cb', nonce: 'n' });

  const me: Me = await client.me();
  const name: string = me.first_name ?? me.email ?? 'there';
  console.log(name, me.providers.join(', '));
  for (const session of await client.sessions()) {
    if (!session.current) await client.revokeSession(session.id);
  }
  const response: Response = await client.fetch('/api/me/events?limit=10');
  console.log(response.status, client.isSignedIn(), await client.logout({ all: true }));

  // @ts-expect-error: a code the server never sends is not an ErrorCode.
  const bogus: ErrorCode = 'made_up_code';
  // @ts-expect-error: a native sign-in needs one complete form.
  await client.exchangeNative('google', { nonce: 'n' });
  // @ts-expect-error: first_name may be null.
  const upper: string = me.first_name.toUpperCase();
  console.log(bogus, upper);
}

void main();
