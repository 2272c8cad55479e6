// HTTP client for the SocialSphere API.
//
// The access token lives only in this module's memory. On page load a new
// one is obtained from the HttpOnly `ss_refresh` cookie (SameSite=Strict,
// Path=/api/v1/auth) via POST /api/v1/auth/refresh. A 401 on an
// authenticated call triggers one refresh-and-retry; if that fails the user
// is sent to /login?next=<this page>.

const API = '/api/v1';

let accessToken = null;
let currentUser = null;
let refreshInFlight = null;

export class ApiError extends Error {
  constructor(status, body) {
    const data = body && typeof body === 'object' ? body : {};
    super(data.message || defaultMessage(status));
    this.name = 'ApiError';
    this.status = status;
    this.code = data.error || `http_${status}`;
    this.fields = data.fields && typeof data.fields === 'object' ? data.fields : {};
    this.body = data;
  }
}

function defaultMessage(status) {
  if (status === 0) return 'The server could not be reached. Check your connection and try again.';
  if (status === 401) return 'Your session has expired. Please sign in again.';
  if (status === 402) return 'Your plan limit has been reached.';
  if (status === 403) return 'You are not allowed to do that.';
  if (status === 404) return 'Not found.';
  if (status === 413) return 'The request is too large.';
  if (status === 429) return 'Too many attempts. Please wait and try again.';
  if (status >= 500) return 'The server had a problem. Please try again.';
  return `Request failed (${status}).`;
}

export function getUser() {
  return currentUser;
}

export function isAuthenticated() {
  return accessToken !== null;
}

function setSession(data) {
  accessToken = data && data.access_token ? data.access_token : null;
  if (data && data.user) currentUser = data.user;
  if (!accessToken) currentUser = null;
}

async function parseBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  if (!type.includes('json')) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function buildUrl(path, query) {
  const url = new URL(API + path, window.location.origin);
  if (query) {
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
    }
  }
  return url.pathname + url.search;
}

// Run `task` while holding a lock shared by every tab of this origin (Web Locks
// API, where available): two tabs refreshing at once would otherwise present the
// same refresh token twice, which the server treats as theft and answers by
// revoking the whole session. The second tab waits and then sends the rotated
// cookie the first one received.
function withRefreshLock(task) {
  if (navigator.locks && typeof navigator.locks.request === 'function') {
    return navigator.locks.request('socialsphere-refresh', task);
  }
  return task();
}

// Exchange the refresh cookie for a new access token. Concurrent callers share
// one request so a rotated refresh token is never presented twice.
export function refresh() {
  if (!refreshInFlight) {
    refreshInFlight = withRefreshLock(async () => {
      let response;
      try {
        response = await fetch(`${API}/auth/refresh`, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-Requested-With': 'fetch', Accept: 'application/json' },
        });
      } catch {
        return false;
      }
      const body = await parseBody(response);
      if (!response.ok || !body || !body.access_token) {
        setSession(null);
        return false;
      }
      setSession(body);
      return true;
    }).finally(() => {
      refreshInFlight = null;
    });
  }
  return refreshInFlight;
}

export function loginRedirect() {
  const here = window.location.pathname + window.location.search;
  window.location.assign(`/login?next=${encodeURIComponent(here)}`);
}

/**
 * Call the API. Options: body (JSON-serialised), query (object), auth
 * (default true: send the bearer token, refresh once on 401, then redirect
 * to /login), redirectOn401 (default true).
 * Resolves to the parsed JSON body (null for 204); rejects with ApiError.
 */
export async function request(method, path, options = {}) {
  const { body, query, auth = true, redirectOn401 = true } = options;
  const send = async () => {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
    try {
      return await fetch(buildUrl(path, query), {
        method,
        headers,
        credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, null);
    }
  };

  let response = await send();
  if (auth && response.status === 401) {
    if (await refresh()) response = await send();
    if (response.status === 401) {
      setSession(null);
      if (redirectOn401) loginRedirect();
    }
  }
  const data = await parseBody(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    const retryAfter = response.headers.get('Retry-After');
    if (retryAfter) error.retryAfter = retryAfter;
    throw error;
  }
  return data;
}

export const api = {
  get: (path, query, options = {}) => request('GET', path, { ...options, query }),
  post: (path, body, options = {}) => request('POST', path, { ...options, body }),
  put: (path, body, options = {}) => request('PUT', path, { ...options, body }),
  patch: (path, body, options = {}) => request('PATCH', path, { ...options, body }),
  del: (path, options = {}) => request('DELETE', path, options),
};

// ---- auth flows -------------------------------------------------------------

export async function login(email, password) {
  const data = await request('POST', '/auth/login', { body: { email, password }, auth: false });
  // The refresh token also arrives in the body; it is deliberately not kept:
  // the HttpOnly cookie set by the same response is what later refreshes use.
  setSession({ access_token: data.access_token, user: data.user });
  return data.user;
}

export async function logout({ everywhere = false } = {}) {
  try {
    if (everywhere && accessToken) await request('POST', '/auth/logout-all', { redirectOn401: false });
  } catch {
    // fall through to the cookie logout
  }
  try {
    await fetch(`${API}/auth/logout`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-Requested-With': 'fetch', Accept: 'application/json' },
    });
  } catch {
    // the server may be unreachable; the in-memory token is dropped anyway
  }
  setSession(null);
}

/**
 * For pages that need a signed-in user: refresh from the cookie, then load
 * /auth/me. Redirects to /login when there is no session. Resolves to the
 * /auth/me body ({user, subscription}).
 */
export async function requireSession() {
  if (!accessToken && !(await refresh())) {
    loginRedirect();
    return new Promise(() => {}); // navigation in progress
  }
  const me = await request('GET', '/auth/me');
  if (me && me.user) currentUser = me.user;
  return me;
}

// A same-site path to go to after login (never an absolute or protocol-relative URL).
export function safeNext(value, fallback = '/app') {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//') || value.includes('\\')) {
    return fallback;
  }
  return value;
}
