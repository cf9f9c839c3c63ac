/**
 * Types for signin-client.js, the browser client of the social-signin API.
 * `tsc --noEmit --strict` checks them against scripts/js-tests/types/usage.ts in CI,
 * and a test keeps `ServerErrorCode` equal to the OpenAPI document's error codes.
 */

/** Every `error.code` the server answers with (the OpenAPI document's `ErrorDetail.code`). */
export type ServerErrorCode =
  | 'access_token_expired'
  | 'access_token_invalid'
  | 'account_in_use'
  | 'already_redeemed'
  | 'bad_request'
  | 'busy'
  | 'cross_site_request'
  | 'database_unavailable'
  | 'domain_not_allowed'
  | 'email_in_use'
  | 'email_required'
  | 'error'
  | 'exchange_interrupted'
  | 'forbidden'
  | 'id_token_invalid'
  | 'internal_error'
  | 'invalid_client'
  | 'invalid_credentials'
  | 'invalid_email'
  | 'invalid_grant'
  | 'invalid_limit'
  | 'invalid_operation'
  | 'invalid_profile'
  | 'invalid_query'
  | 'invalid_redirect_uri'
  | 'invalid_refresh_token'
  | 'invalid_request'
  | 'invalid_token'
  | 'invalid_wait'
  | 'last_sign_in_method'
  | 'link_session_ended'
  | 'method_not_allowed'
  | 'nonce_required'
  | 'not_found'
  | 'payload_too_large'
  | 'profile_invalid'
  | 'provider_error'
  | 'provider_unavailable'
  | 'queue_unavailable'
  | 'reauthentication_required'
  | 'refresh_token_reused'
  | 'timeout'
  | 'token_not_for_this_app'
  | 'too_many_requests'
  | 'unauthorized'
  | 'unsupported_grant'
  | 'unsupported_media_type'
  | 'weak_password';

/** Codes the client makes itself: no answer, no time left, no session, or an
 *  answer without a JSON error (a proxy's 502: `http_502`). */
export type ClientErrorCode = 'network_error' | 'timeout' | 'not_signed_in' | `http_${number}`;

export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** An API error: `code` and `message` from `{"error":{...}}`, the HTTP `status` (0 for
 *  network errors and timeouts), `retryAfter` in seconds on 429 and 503. */
export declare class SigninError extends Error {
  constructor(code: ErrorCode, message?: string, options?: { status?: number; retryAfter?: number });
  readonly name: 'SigninError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfter?: number;
}

/** What a token store keeps. */
export interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  refreshExpiresAt: number;
}

export interface TokenStore {
  get(): StoredTokens | null;
  set(value: StoredTokens): void;
  remove(): void;
}

export declare function memoryStore(): TokenStore;
export declare function localStorageStore(key?: string, area?: Storage): TokenStore;

/** A token sign-in's result (the tokens themselves stay in the store). */
export interface SignedIn {
  sessionId: string;
  expiresAt: number;
  refreshExpiresAt: number;
}

/** `GET /api/providers`. */
export interface ProviderInfo {
  name: string;
  display_name: string;
  login_url: string;
}

/** `GET /api/me`. */
export interface Me {
  id: string;
  email: string | null;
  email_verified: boolean;
  first_name: string | null;
  last_name: string | null;
  display_name: string | null;
  avatar_url: string | null;
  /** The linked providers' names. */
  providers: string[];
  has_password: boolean;
}

/** `GET /api/sessions`. */
export interface SessionInfo {
  id: string;
  /** `browser` or `api`. */
  kind: string;
  device: string | null;
  user_agent: string | null;
  ip: string | null;
  created_at: string;
  last_seen_at: string;
  current: boolean;
}

/** What an app hands over for a native or SDK sign-in: one of these forms. */
export type NativeSignIn =
  | { code: string; code_verifier: string; redirect_uri: string; nonce?: string; link?: boolean }
  | { id_token: string; nonce: string; link?: boolean }
  | { access_token: string; link?: boolean };

export interface PollOptions {
  /** Default 60000. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface SigninClientOptions {
  /** API origin (and path prefix); '' (the default) for the same origin. */
  baseUrl?: string;
  /** Token store, memory by default. */
  storage?: TokenStore;
  fetch?: typeof fetch;
  /** Refresh this long before the access token expires (default 60). */
  refreshMarginSeconds?: number;
  /** Called when a refresh is refused (the session ended). */
  onSessionEnded?: (reason: ErrorCode) => void;
}

export declare class SigninClient {
  constructor(options?: SigninClientOptions);
  readonly baseUrl: string;
  storage: TokenStore;
  providers(): Promise<ProviderInfo[]>;
  /** Navigates (in a browser) to the provider's login; returns the URL. */
  startSocialSignIn(provider: string, options?: { next?: string; link?: boolean }): string;
  register(details: {
    email: string;
    password: string;
    first_name?: string;
    last_name?: string;
    device?: string;
  }): Promise<SignedIn>;
  login(credentials: { email: string; password: string; device?: string }): Promise<SignedIn>;
  exchangeNative(provider: string, body: NativeSignIn, options?: PollOptions): Promise<SignedIn>;
  pollOperation(statusUrl: string, pollSecret: string, options?: PollOptions): Promise<SignedIn>;
  /** `fetch` with the access token, refreshing it first when needed and once after a 401. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  me(): Promise<Me>;
  sessions(): Promise<SessionInfo[]>;
  revokeSession(id: string): Promise<void>;
  /** Whether the server confirmed; local tokens are dropped either way. */
  logout(options?: { all?: boolean }): Promise<boolean>;
  isSignedIn(): boolean;
}

export default SigninClient;
