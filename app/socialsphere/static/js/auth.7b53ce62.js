// Sign in, sign up, forgot/reset password and email verification pages.
import { api, login, refresh, safeNext } from './api.193cbd65.js';
import { $, fieldError, onSubmit, query, showAlert } from './ui.61d9dabf.js';

const MIN_PASSWORD = 8;

function checkPasswords(form, values) {
  if (values.password.length < MIN_PASSWORD) {
    fieldError(form, 'password', `Use at least ${MIN_PASSWORD} characters.`);
    return false;
  }
  if (values.password !== values.password2) {
    fieldError(form, 'password2', 'The two passwords do not match.');
    return false;
  }
  return true;
}

function requireFields(form, values, names) {
  for (const name of names) {
    if (!String(values[name] || '').trim()) {
      fieldError(form, name, 'This field is required.');
      return false;
    }
  }
  return true;
}

// Take the one-time token out of the address bar (history, screenshots, Referer).
function takeToken() {
  const token = query('token');
  if (token) window.history.replaceState(null, '', window.location.pathname);
  return token;
}

async function loginPage() {
  const next = safeNext(query('next'));
  const form = $('#login-form');
  if (query('next')) showAlert($('#login-notice'), 'Please sign in to continue.', 'info');
  onSubmit(form, async (values) => {
    if (!requireFields(form, values, ['email', 'password'])) return;
    await login(values.email.trim(), values.password);
    window.location.assign(next);
  }, { busyText: 'Signing in…' });
  if (!$('#login-email').value) $('#login-email').focus();
  // Already signed in (valid refresh cookie)? Skip the form.
  if (await refresh()) window.location.replace(next);
}

function signupPage() {
  const form = $('#signup-form');
  onSubmit(form, async (values) => {
    if (!requireFields(form, values, ['name', 'email', 'password'])) return;
    if (!checkPasswords(form, values)) return;
    const email = values.email.trim();
    await api.post('/auth/register', { email, password: values.password, name: values.name.trim() }, { auth: false });
    form.hidden = true;
    $('#signup-done-email').textContent = email;
    $('#signup-done').hidden = false;
    $('#signup-done a').focus();
  }, { busyText: 'Creating…' });
}

function forgotPage() {
  const form = $('#forgot-form');
  onSubmit(form, async (values) => {
    if (!requireFields(form, values, ['email'])) return;
    await api.post('/auth/password-reset/request', { email: values.email.trim() }, { auth: false });
    form.hidden = true;
    const done = $('#forgot-done');
    done.hidden = false;
    done.setAttribute('tabindex', '-1');
    done.focus();
  }, { busyText: 'Sending…' });
}

function resetPage() {
  const token = takeToken();
  const form = $('#reset-form');
  if (!token) {
    form.hidden = true;
    $('#reset-missing').hidden = false;
    return;
  }
  onSubmit(form, async (values) => {
    if (!checkPasswords(form, values)) return;
    await api.post('/auth/password-reset/confirm', { token, password: values.password }, { auth: false });
    form.hidden = true;
    $('#reset-done').hidden = false;
    $('#reset-done a').focus();
  }, { busyText: 'Saving…' });
}

async function verifyPage() {
  const token = takeToken();
  const status = $('#verify-status');
  if (!token) {
    showAlert(status, 'This verification link is incomplete. Open the link from the email again.', 'error');
    return;
  }
  try {
    await api.post('/auth/verify-email', { token }, { auth: false });
    showAlert(status, 'Thank you, your email address is verified. You can now sign in.', 'success');
    $('#verify-next').hidden = false;
  } catch (error) {
    const reason = error.fields && error.fields.token ? ` (${error.fields.token})` : '';
    showAlert(status, `${error.message}${reason}`, 'error');
  }
}

const pages = {
  login: loginPage,
  signup: signupPage,
  'forgot-password': forgotPage,
  'reset-password': resetPage,
  'verify-email': verifyPage,
};

const init = pages[document.body.dataset.page];
if (init) {
  Promise.resolve(init()).finally(() => {
    document.body.dataset.ready = 'true';
  });
}
