// Shared set-up for the signed-in pages (/app, /admin): session, header, sign out.
import { logout, requireSession } from './api.js';
import { $, toast } from './ui.js';

// Tell the other tabs of this browser about a sign-out, so they do not keep
// showing data with an access token that is still valid for a few minutes.
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('socialsphere-session') : null;

async function signOut(everywhere) {
  await logout({ everywhere });
  if (channel) channel.postMessage('logout');
  window.location.assign('/login');
}

export async function startSignedInPage() {
  const me = await requireSession();
  const user = me.user || {};
  $('#nav-user').textContent = user.email || '';
  $('#nav-admin').hidden = user.role !== 'admin';
  $('#logout').addEventListener('click', () => signOut(false));
  const everywhere = $('#logout-all');
  if (everywhere) {
    everywhere.addEventListener('click', () => {
      if (window.confirm('Sign out on every device, including this one?')) signOut(true);
    });
  }
  if (channel) {
    channel.addEventListener('message', (event) => {
      if (event.data === 'logout') window.location.assign('/login');
    });
  }
  return me;
}

export function fatal(error) {
  const loading = $('#page-loading');
  const message = (error && error.message) || 'The page could not be loaded.';
  if (loading) {
    loading.className = 'alert alert-error';
    loading.textContent = message;
    loading.setAttribute('role', 'alert');
  } else {
    toast(message, 'error');
  }
}
