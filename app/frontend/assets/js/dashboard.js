// /app: posts (list, filter, search, create, edit, delete), AI generation,
// scheduling, publications, connected accounts and plan usage.
import { api } from './api.js';
import { fatal, startSignedInPage } from './session.js';
import {
  $, PLATFORMS, POST_STATUSES, TONES, badge, capitalize, clear, clearErrors, debounce, el,
  fieldError, formatDate, isoToLocalInput, localInputToIso, onSubmit, option, platformLabel,
  renderPager, setBusy, showAlert, toast,
} from './ui.js';

const PER_PAGE = 10;
const state = {
  filters: { q: '', status: '', platform: '', page: 1 },
  editing: null, // post being edited
  accounts: [],
  scheduling: null, // post being scheduled
  pubsPost: null, // post whose publications are shown
};

// ---- usage ------------------------------------------------------------------

const USAGE_ROWS = [
  ['posts', 'Posts this month'],
  ['ai_generations', 'AI generations this month'],
  ['accounts', 'Connected accounts'],
];

function renderUsage(subscription) {
  const container = clear($('#usage'));
  if (!subscription) {
    container.append(el('p', { class: 'muted' }, 'No subscription.'));
    return;
  }
  const plan = subscription.plan || {};
  $('#plan-name').textContent = `${plan.name || plan.code || 'Plan'} plan`;
  const usage = subscription.usage || {};
  const limits = subscription.limits || {};
  for (const [key, label] of USAGE_ROWS) {
    const used = Number(usage[key]) || 0;
    const limit = limits[key];
    const id = `usage-${key}`;
    const unlimited = limit === null || limit === undefined;
    const text = unlimited ? `${used} of unlimited` : `${used} of ${limit}`;
    const bar = unlimited
      ? null
      : el('progress', { id, max: Math.max(Number(limit), 1), value: Math.min(used, Number(limit)), class: limit !== 0 && used >= limit ? 'over' : null, 'aria-label': `${label}: ${text}` });
    container.append(
      el('div', { class: 'usage-row' },
        el('div', { class: 'usage-label' }, el('span', {}, label), el('span', {}, limit === 0 ? 'not in plan' : text)),
        bar));
  }
  $('#usage-period').textContent = subscription.period_start ? `Period started ${formatDate(subscription.period_start)}.` : '';
}

async function refreshUsage() {
  try {
    const me = await api.get('/auth/me');
    renderUsage(me.subscription);
  } catch {
    // usage is informative only
  }
}

// ---- posts list -------------------------------------------------------------

function postItem(post) {
  const title = post.title || `Untitled post #${post.id}`;
  const meta = [
    el('span', {}, `Updated ${formatDate(post.updated_at || post.created_at)}`),
  ];
  if (post.scheduled_at) meta.push(el('span', {}, `Scheduled ${formatDate(post.scheduled_at)}`));
  if (post.published_at) meta.push(el('span', {}, `Published ${formatDate(post.published_at)}`));
  if (post.platforms && post.platforms.length) meta.push(el('span', {}, post.platforms.map(platformLabel).join(', ')));

  const editable = post.status === 'draft' || post.status === 'scheduled';
  const actions = [
    editable ? el('button', { type: 'button', class: 'btn btn-small', on: { click: () => startEdit(post) } }, 'Edit') : null,
    editable ? el('button', { type: 'button', class: 'btn btn-small', on: { click: () => openSchedule(post) } }, 'Schedule') : null,
    el('button', { type: 'button', class: 'btn btn-small', on: { click: () => showPublications(post) } }, 'Publications'),
    el('button', { type: 'button', class: 'btn btn-small btn-danger', on: { click: () => deletePost(post) } }, 'Delete'),
  ];
  return el('li', { class: 'post', dataset: { id: post.id } },
    el('div', { class: 'post-head' }, el('h3', { class: post.title ? null : 'muted' }, title), badge(post.status || 'draft')),
    el('p', { class: 'post-body' }, post.body || ''),
    el('div', { class: 'post-meta' }, meta),
    el('div', { class: 'post-actions', role: 'group', 'aria-label': `Actions for ${title}` }, actions));
}

let postsRequest = 0;

async function loadPosts() {
  const list = $('#posts');
  const errorBox = $('#posts-error');
  const ticket = ++postsRequest; // only the latest request may render (fast typing in search)
  list.setAttribute('aria-busy', 'true');
  try {
    const f = state.filters;
    const data = await api.get('/posts', { q: f.q, status: f.status, platform: f.platform, page: f.page, per_page: PER_PAGE });
    if (ticket !== postsRequest) return undefined;
    errorBox.hidden = true;
    clear(list);
    const items = (data && data.items) || [];
    if (!items.length) {
      const filtered = f.q || f.status || f.platform;
      list.append(el('li', { class: 'empty' }, filtered ? 'No posts match these filters.' : 'No posts yet: write your first one above.'));
    }
    for (const post of items) list.append(postItem(post));
    if (data && data.pages && f.page > data.pages && data.pages > 0) {
      f.page = data.pages;
      return loadPosts();
    }
    renderPager($('#posts-pager'), data, (page) => {
      state.filters.page = page;
      loadPosts();
      $('#posts-title').scrollIntoView();
    });
  } catch (error) {
    if (ticket !== postsRequest) return undefined;
    errorBox.textContent = error.message;
    errorBox.hidden = false;
  } finally {
    if (ticket === postsRequest) list.setAttribute('aria-busy', 'false');
  }
  return undefined;
}

function setupFilters() {
  const form = $('#filters');
  const status = $('#filter-status');
  status.append(option('', 'All statuses'), ...POST_STATUSES.map((s) => option(s, capitalize(s))));
  const platform = $('#filter-platform');
  platform.append(option('', 'All platforms'), ...PLATFORMS.map((p) => option(p, platformLabel(p))));
  const apply = () => {
    state.filters = { q: $('#filter-q').value.trim(), status: status.value, platform: platform.value, page: 1 };
    loadPosts();
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  status.addEventListener('change', apply);
  platform.addEventListener('change', apply);
  $('#filter-q').addEventListener('input', debounce(apply, 350));
}

// ---- composer -----------------------------------------------------------------

function setupComposer() {
  const form = $('#post-form');
  const checks = $('#post-platforms');
  for (const p of PLATFORMS) {
    const id = `post-platform-${p}`;
    checks.append(el('label', { for: id }, el('input', { type: 'checkbox', id, name: 'platforms', value: p, 'data-multi': true }), platformLabel(p)));
  }
  const body = $('#post-body');
  const count = () => {
    $('#post-body-count').textContent = `${body.value.length} characters`;
  };
  body.addEventListener('input', count);

  onSubmit(form, async (values) => {
    if (!values.body.trim()) {
      fieldError(form, 'body', 'Write something first.');
      return;
    }
    const payload = { title: values.title.trim() || null, body: values.body, platforms: values.platforms || [] };
    if (state.editing) {
      await api.patch(`/posts/${state.editing.id}`, payload);
      toast('Post updated.', 'success');
    } else {
      await api.post('/posts', { ...payload, status: 'draft' });
      toast('Draft saved.', 'success');
      refreshUsage();
    }
    resetComposer();
    loadPosts();
  }, { busyText: 'Saving…' });

  $('#post-cancel').addEventListener('click', resetComposer);
  count();
}

function resetComposer() {
  const form = $('#post-form');
  form.reset();
  clearErrors(form);
  state.editing = null;
  $('#composer-title').textContent = 'New post';
  $('#composer-editing').hidden = true;
  $('#post-save').textContent = 'Save draft';
  $('#post-cancel').hidden = true;
  $('#post-body-count').textContent = '0 characters';
}

function startEdit(post) {
  const form = $('#post-form');
  clearErrors(form);
  state.editing = post;
  $('#post-title').value = post.title || '';
  $('#post-body').value = post.body || '';
  $('#post-body-count').textContent = `${(post.body || '').length} characters`;
  for (const box of form.querySelectorAll('input[name="platforms"]')) box.checked = (post.platforms || []).includes(box.value);
  $('#composer-title').textContent = 'Edit post';
  const tag = $('#composer-editing');
  tag.textContent = `#${post.id} · ${post.status}`;
  tag.hidden = false;
  $('#post-save').textContent = 'Save changes';
  $('#post-cancel').hidden = false;
  $('#composer-title').scrollIntoView();
  $('#post-body').focus();
}

async function deletePost(post) {
  if (!window.confirm(`Delete "${post.title || `post #${post.id}`}"? This cannot be undone.`)) return;
  try {
    await api.del(`/posts/${post.id}`);
    toast('Post deleted.', 'success');
    if (state.editing && state.editing.id === post.id) resetComposer();
    if (state.pubsPost && state.pubsPost.id === post.id) $('#pubs-card').hidden = true;
    loadPosts();
  } catch (error) {
    toast(error.message, 'error');
  }
}

// ---- AI generation ------------------------------------------------------------

function setupAi() {
  const form = $('#ai-form');
  $('#ai-tone').append(...TONES.map((t) => option(t, capitalize(t))));
  $('#ai-platform').append(...PLATFORMS.map((p) => option(p, platformLabel(p))));
  onSubmit(form, async (values) => {
    if (!values.topic.trim()) {
      fieldError(form, 'topic', 'Give the assistant a topic.');
      return;
    }
    const body = $('#post-body');
    if (body.value.trim() && !window.confirm('Replace the text in the editor with a generated caption?')) return;
    const result = await api.post('/ai/generate', { topic: values.topic.trim(), tone: values.tone, platform: values.platform });
    const tags = (result.hashtags || []).map((t) => (String(t).startsWith('#') ? t : `#${t}`)).join(' ');
    body.value = tags ? `${result.caption}\n\n${tags}` : result.caption;
    body.dispatchEvent(new Event('input'));
    const box = $(`#post-platform-${values.platform}`);
    if (box) box.checked = true;
    $('#ai-provider').textContent = result.provider ? `Generated by ${result.provider}.` : '';
    toast('Caption generated: review it in the editor before saving.', 'success');
    body.focus();
    refreshUsage();
  }, { busyText: 'Generating…' });
}

// ---- accounts ---------------------------------------------------------------------

async function loadAccounts() {
  const list = $('#accounts');
  try {
    const data = await api.get('/social/accounts');
    state.accounts = Array.isArray(data) ? data : (data && data.items) || [];
  } catch (error) {
    clear(list).append(el('li', { class: 'alert alert-error' }, error.message));
    return;
  }
  clear(list);
  if (!state.accounts.length) list.append(el('li', { class: 'muted' }, 'No accounts connected yet.'));
  for (const account of state.accounts) {
    const label = `${platformLabel(account.platform)} ${account.handle}`;
    list.append(el('li', {},
      el('span', {}, el('strong', {}, platformLabel(account.platform)), ' ', account.handle, ' ', badge(account.adapter || 'log', 'info')),
      el('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Disconnect ${label}`, on: { click: () => disconnect(account) } }, 'Disconnect')));
  }
}

async function disconnect(account) {
  if (!window.confirm(`Disconnect ${platformLabel(account.platform)} ${account.handle}? Scheduled publications to it will not be sent.`)) return;
  try {
    await api.del(`/social/accounts/${account.id}`);
    toast('Account disconnected.', 'success');
    loadAccounts();
    refreshUsage();
  } catch (error) {
    toast(error.message, 'error');
  }
}

function setupAccounts() {
  const form = $('#account-form');
  $('#account-platform').append(...PLATFORMS.map((p) => option(p, platformLabel(p))));
  const adapter = $('#account-adapter');
  const syncWebhook = () => {
    const needed = adapter.value === 'webhook';
    $('#account-webhook-field').hidden = !needed;
    $('#account-webhook').disabled = !needed;
    $('#account-webhook').required = needed;
  };
  adapter.addEventListener('change', syncWebhook);
  syncWebhook();
  onSubmit(form, async (values) => {
    for (const [name, message] of [['handle', 'Enter the account handle.'], ['access_token', 'Paste the access token.']]) {
      if (!String(values[name] || '').trim()) {
        fieldError(form, name, message);
        return;
      }
    }
    if (values.adapter === 'webhook' && !String(values.webhook_url || '').trim()) {
      fieldError(form, 'webhook_url', 'A webhook URL is needed for webhook delivery.');
      return;
    }
    const payload = { platform: values.platform, handle: values.handle.trim(), access_token: values.access_token, adapter: values.adapter };
    if (values.adapter === 'webhook') payload.webhook_url = values.webhook_url.trim();
    await api.post('/social/accounts', payload);
    form.reset();
    syncWebhook();
    toast('Account connected.', 'success');
    loadAccounts();
    refreshUsage();
  }, { busyText: 'Connecting…' });
}

// ---- scheduling ---------------------------------------------------------------------

function openSchedule(post) {
  const dialog = $('#schedule-dialog');
  const form = $('#schedule-form');
  clearErrors(form);
  state.scheduling = post;
  $('#schedule-post').textContent = post.title || (post.body || '').slice(0, 80);
  const box = clear($('#schedule-accounts'));
  if (!state.accounts.length) {
    box.append(el('p', { class: 'muted' }, 'Connect an account first (see "Connected accounts").'));
  }
  for (const account of state.accounts) {
    const id = `schedule-account-${account.id}`;
    const preferred = (post.platforms || []).includes(account.platform);
    box.append(el('label', { for: id },
      el('input', { type: 'checkbox', id, name: 'account_ids', value: account.id, 'data-multi': true, checked: preferred }),
      `${platformLabel(account.platform)} ${account.handle}`));
  }
  const soon = new Date(Date.now() + 60 * 60 * 1000);
  $('#schedule-at').value = post.scheduled_at ? isoToLocalInput(post.scheduled_at) : isoToLocalInput(soon.toISOString());
  dialog.showModal();
}

function setupSchedule() {
  const dialog = $('#schedule-dialog');
  const form = $('#schedule-form');
  $('#schedule-cancel').addEventListener('click', () => dialog.close());
  onSubmit(form, async (values) => {
    const ids = (values.account_ids || []).map(Number);
    if (!ids.length) {
      fieldError(form, 'account_ids', 'Choose at least one account.');
      return;
    }
    const when = localInputToIso(values.scheduled_at);
    if (!when) {
      fieldError(form, 'scheduled_at', 'Choose a date and time.');
      return;
    }
    const post = state.scheduling;
    const result = await api.post(`/social/posts/${post.id}/schedule`, { account_ids: ids, scheduled_at: when });
    dialog.close();
    const n = ((result && result.publications) || []).length;
    toast(`Scheduled ${n} publication${n === 1 ? '' : 's'} for ${formatDate(when)}.`, 'success');
    loadPosts();
    showPublications(post);
  }, { busyText: 'Scheduling…' });
}

// ---- publications --------------------------------------------------------------------

function accountLabel(id) {
  const account = state.accounts.find((a) => a.id === id);
  return account ? `${platformLabel(account.platform)} ${account.handle}` : `Account #${id}`;
}

async function showPublications(post) {
  state.pubsPost = post;
  const card = $('#pubs-card');
  const list = clear($('#pubs'));
  card.hidden = false;
  $('#pubs-post').textContent = `For: ${post.title || (post.body || '').slice(0, 60)}`;
  try {
    const data = await api.get(`/social/posts/${post.id}/publications`);
    const pubs = Array.isArray(data) ? data : (data && (data.publications || data.items)) || [];
    if (!pubs.length) list.append(el('li', { class: 'muted' }, 'Not scheduled yet.'));
    for (const pub of pubs) {
      const attempts = (pub.attempts || []).map((a) => el('li', {},
        `Attempt ${a.number ?? ''}: ${a.outcome || 'pending'}`,
        a.http_status ? ` (HTTP ${a.http_status})` : '',
        a.finished_at || a.started_at ? ` · ${formatDate(a.finished_at || a.started_at)}` : '',
        a.detail ? el('span', { class: 'mono' }, ` · ${a.detail}`) : ''));
      list.append(el('li', {},
        el('div', { class: 'post-head' }, el('strong', {}, accountLabel(pub.account_id)), badge(pub.status || 'pending')),
        el('div', { class: 'post-meta' },
          el('span', {}, `Scheduled ${formatDate(pub.scheduled_at)}`),
          pub.published_at ? el('span', {}, `Published ${formatDate(pub.published_at)}`) : null,
          pub.next_attempt_at ? el('span', {}, `Next try ${formatDate(pub.next_attempt_at)}`) : null,
          pub.external_id ? el('span', { class: 'mono' }, `ID ${pub.external_id}`) : null),
        pub.last_error ? el('p', { class: 'field-error' }, pub.last_error) : null,
        attempts.length ? el('ol', { class: 'attempts' }, attempts) : null));
    }
  } catch (error) {
    list.append(el('li', { class: 'alert alert-error' }, error.message));
  }
  card.scrollIntoView({ block: 'nearest' });
}

// ---- email verification reminder ---------------------------------------------------

function setupVerifyBanner() {
  $('#verify-banner').hidden = false;
  const button = $('#resend-verification');
  button.addEventListener('click', async () => {
    setBusy(button, true, 'Sending…');
    try {
      await api.post('/auth/resend-verification');
      toast('A new verification link is on its way. It may take a minute to arrive.', 'success');
    } catch (error) {
      toast(error.message, 'error');
    } finally {
      setBusy(button, false);
    }
  });
}

// ---- start ----------------------------------------------------------------------------

async function main() {
  let me;
  try {
    me = await startSignedInPage();
  } catch (error) {
    fatal(error);
    return;
  }
  $('#page-loading').hidden = true;
  $('#dashboard').hidden = false;
  renderUsage(me.subscription);
  const announcement = me.announcement; // GET /auth/me: banner text, null when unset
  if (announcement) showAlert($('#announcement'), announcement, 'info');
  setupComposer();
  setupAi();
  setupFilters();
  setupAccounts();
  setupSchedule();
  $('#pubs-refresh').addEventListener('click', () => state.pubsPost && showPublications(state.pubsPost));
  if (me.user && me.user.email_verified === false) setupVerifyBanner();
  await Promise.all([loadPosts(), loadAccounts()]);
  document.body.dataset.ready = 'true';
}

main();
