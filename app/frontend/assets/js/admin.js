// /admin: users, plans, subscriptions, typed settings and the audit log
// (admin API under /api/v1/admin; every mutating call is audit-logged server-side).
import { api } from './api.js';
import { fatal, startSignedInPage } from './session.js';
import {
  $, $$, badge, clear, clearErrors, debounce, el, fieldError, formatDate, onSubmit,
  option, renderPager, showErrors, toast,
} from './ui.js';

const PER_PAGE = 20;
const state = {
  me: null,
  plans: [],
  users: { q: '', role: '', status: '', page: 1 },
  audit: { actor_id: '', action: '', page: 1 },
  editingPlan: null,
  loaded: new Set(),
};

function items(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of ['items', ...keys]) if (data && Array.isArray(data[key])) return data[key];
  return [];
}

function showError(id, error) {
  const box = $(id);
  box.textContent = error.message;
  box.hidden = false;
}

// ---- tabs (WAI-ARIA tabs pattern, manual activation by click/Enter, arrows move) ----

const LOADERS = {
  users: () => loadUsers(),
  plans: () => loadPlans(),
  settings: () => loadSettings(),
  audit: () => loadAudit(),
};

function selectTab(name, focus = false) {
  for (const tab of $$('[role="tab"]')) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected && focus) tab.focus();
    $(`#${tab.getAttribute('aria-controls')}`).hidden = !selected;
  }
  if (!state.loaded.has(name)) {
    state.loaded.add(name);
    LOADERS[name]();
  }
  if (window.location.hash !== `#${name}`) window.history.replaceState(null, '', `#${name}`);
}

function setupTabs() {
  const tabs = $$('[role="tab"]');
  tabs.forEach((tab, index) => {
    const name = tab.id.replace('tab-', '');
    tab.addEventListener('click', () => selectTab(name));
    tab.addEventListener('keydown', (event) => {
      let target = null;
      if (event.key === 'ArrowRight') target = tabs[(index + 1) % tabs.length];
      else if (event.key === 'ArrowLeft') target = tabs[(index - 1 + tabs.length) % tabs.length];
      else if (event.key === 'Home') target = tabs[0];
      else if (event.key === 'End') target = tabs[tabs.length - 1];
      if (target) {
        event.preventDefault();
        selectTab(target.id.replace('tab-', ''), true);
      }
    });
  });
  const initial = window.location.hash.slice(1);
  selectTab(LOADERS[initial] ? initial : 'users');
}

// ---- users ------------------------------------------------------------------------------

function userPlan(user) {
  // GET /admin/users items carry subscription: {plan: {id, code, name}, started_at} or null
  const plan = user.subscription && user.subscription.plan;
  return plan ? plan.code : '';
}

async function patchUser(user, changes, message) {
  try {
    await api.patch(`/admin/users/${user.id}`, changes);
    toast(message, 'success');
  } catch (error) {
    toast(error.message, 'error');
  }
  loadUsers();
}

function userRow(user) {
  const self = state.me && state.me.id === user.id;
  const label = user.email || `user #${user.id}`;

  const roleSelect = el('select', { 'aria-label': `Role of ${label}`, disabled: self },
    option('user', 'User', user.role === 'user'), option('admin', 'Admin', user.role === 'admin'));
  roleSelect.addEventListener('change', () => {
    const role = roleSelect.value;
    if (!window.confirm(`Make ${label} ${role === 'admin' ? 'an admin' : 'a regular user'}?`)) {
      roleSelect.value = user.role;
      return;
    }
    patchUser(user, { role }, `Role of ${label} changed to ${role}.`);
  });

  const current = userPlan(user);
  const planSelect = el('select', { 'aria-label': `Plan of ${label}` },
    state.plans.map((p) => option(p.id, p.name || p.code, p.code === current)));
  if (!current) planSelect.prepend(option('', 'Change plan…', true));
  const assign = el('button', {
    type: 'button', class: 'btn btn-small',
    on: {
      click: async () => {
        if (!planSelect.value) return;
        try {
          await api.put(`/admin/users/${user.id}/subscription`, { plan_id: Number(planSelect.value) });
          toast(`Plan of ${label} updated.`, 'success');
          loadUsers();
        } catch (error) {
          toast(error.message, 'error');
        }
      },
    },
  }, 'Assign');

  const suspended = user.status === 'suspended';
  const toggle = el('button', {
    type: 'button', class: `btn btn-small${suspended ? '' : ' btn-danger'}`, disabled: self,
    on: {
      click: () => {
        const verb = suspended ? 'Reactivate' : 'Suspend';
        if (!window.confirm(`${verb} ${label}?${suspended ? '' : ' Their sessions end immediately.'}`)) return;
        patchUser(user, { status: suspended ? 'active' : 'suspended' }, `${label} ${suspended ? 'reactivated' : 'suspended'}.`);
      },
    },
  }, suspended ? 'Reactivate' : 'Suspend');

  const revoke = el('button', {
    type: 'button', class: 'btn btn-small',
    on: {
      click: async () => {
        if (!window.confirm(`Sign ${label} out of every session?`)) return;
        try {
          await api.post(`/admin/users/${user.id}/revoke-sessions`);
          toast(`Sessions of ${label} revoked.`, 'success');
        } catch (error) {
          toast(error.message, 'error');
        }
      },
    },
  }, 'Revoke sessions');

  return el('tr', {},
    el('td', {}, el('strong', {}, user.email), el('br'), el('span', { class: 'muted' }, user.name || ''), ' ',
      user.email_verified === false ? badge('unverified', 'pending') : null, self ? badge('you', 'admin') : null),
    el('td', {}, roleSelect),
    el('td', {}, badge(user.status || 'active')),
    el('td', { class: 'actions' }, planSelect, ' ', assign),
    el('td', { class: 'muted activity' }, `Joined ${formatDate(user.created_at)}`, el('br'), `Last login ${formatDate(user.last_login_at)}`),
    el('td', { class: 'actions' }, toggle, ' ', revoke));
}

let usersRequest = 0;

async function loadUsers() {
  const body = $('#users');
  const ticket = ++usersRequest; // only the latest search may render
  try {
    if (!state.plans.length) await fetchPlans();
    const f = state.users;
    const data = await api.get('/admin/users', { q: f.q, role: f.role, status: f.status, page: f.page, per_page: PER_PAGE });
    if (ticket !== usersRequest) return;
    $('#users-error').hidden = true;
    clear(body);
    const users = items(data, 'users');
    if (!users.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No users match.')));
    for (const user of users) body.append(userRow(user));
    renderPager($('#users-pager'), data, (page) => {
      state.users.page = page;
      loadUsers();
    });
  } catch (error) {
    showError('#users-error', error);
  }
}

function setupUsers() {
  const apply = () => {
    state.users = { q: $('#users-q').value.trim(), role: $('#users-role').value, status: $('#users-status').value, page: 1 };
    loadUsers();
  };
  $('#users-filters').addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  $('#users-q').addEventListener('input', debounce(apply, 350));
  $('#users-role').addEventListener('change', apply);
  $('#users-status').addEventListener('change', apply);
}

// ---- plans ------------------------------------------------------------------------------------

async function fetchPlans() {
  state.plans = items(await api.get('/admin/plans', { per_page: 100 }), 'plans');
}

function limitText(value) {
  return value === null || value === undefined ? 'unlimited' : String(value);
}

async function loadPlans() {
  const body = $('#plans');
  try {
    await fetchPlans();
    $('#plans-error').hidden = true;
  } catch (error) {
    showError('#plans-error', error);
    return;
  }
  clear(body);
  if (!state.plans.length) body.append(el('tr', {}, el('td', { colspan: 8, class: 'empty' }, 'No plans yet.')));
  for (const plan of state.plans) {
    body.append(el('tr', {},
      el('td', { class: 'mono' }, plan.code),
      el('td', {}, plan.name),
      el('td', {}, `${((Number(plan.price_cents) || 0) / 100).toFixed(2)}`),
      el('td', {}, limitText(plan.posts_per_month)),
      el('td', {}, limitText(plan.ai_generations_per_month)),
      el('td', {}, limitText(plan.connected_accounts)),
      el('td', {}, plan.active ? badge('active') : badge('inactive', 'draft')),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit plan ${plan.code}`, on: { click: () => openPlan(plan) } }, 'Edit'),
        ' ',
        el('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Delete plan ${plan.code}`, on: { click: () => deletePlan(plan) } }, 'Delete'))));
  }
}

function openPlan(plan) {
  const form = $('#plan-form');
  form.reset();
  clearErrors(form);
  state.editingPlan = plan || null;
  $('#plan-dialog-title').textContent = plan ? `Edit plan ${plan.code}` : 'New plan';
  $('#plan-save').textContent = plan ? 'Save plan' : 'Create plan';
  if (plan) {
    const set = (id, value) => {
      $(id).value = value === null || value === undefined ? '' : String(value);
    };
    set('#plan-code', plan.code);
    set('#plan-name', plan.name);
    set('#plan-price', plan.price_cents);
    set('#plan-posts', plan.posts_per_month);
    set('#plan-ai', plan.ai_generations_per_month);
    set('#plan-accounts', plan.connected_accounts);
    $('#plan-active').checked = Boolean(plan.active);
  }
  $('#plan-dialog').showModal();
}

async function deletePlan(plan) {
  if (!window.confirm(`Delete plan ${plan.code}? Plans that are in use cannot be deleted: deactivate them instead.`)) return;
  try {
    await api.del(`/admin/plans/${plan.id}`);
    toast(`Plan ${plan.code} deleted.`, 'success');
  } catch (error) {
    toast(error.message, 'error');
  }
  loadPlans();
}

function parseLimit(form, name, value) {
  const text = String(value ?? '').trim();
  if (text === '') return { ok: true, value: null };
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) {
    fieldError(form, name, 'Enter a whole number ≥ 0, or leave empty for unlimited.');
    return { ok: false };
  }
  return { ok: true, value: n };
}

function setupPlans() {
  const form = $('#plan-form');
  const dialog = $('#plan-dialog');
  $('#plan-new').addEventListener('click', () => openPlan(null));
  $('#plan-cancel').addEventListener('click', () => dialog.close());
  onSubmit(form, async (values) => {
    const payload = { code: values.code.trim(), name: values.name.trim(), active: values.active };
    if (!payload.code) return fieldError(form, 'code', 'Required.');
    if (!payload.name) return fieldError(form, 'name', 'Required.');
    const price = Number(values.price_cents);
    if (values.price_cents === '' || !Number.isInteger(price) || price < 0) return fieldError(form, 'price_cents', 'Enter the price in cents (0 for free).');
    payload.price_cents = price;
    for (const name of ['posts_per_month', 'ai_generations_per_month', 'connected_accounts']) {
      const parsed = parseLimit(form, name, values[name]);
      if (!parsed.ok) return undefined;
      payload[name] = parsed.value;
    }
    if (state.editingPlan) {
      await api.patch(`/admin/plans/${state.editingPlan.id}`, payload);
      toast(`Plan ${payload.code} saved.`, 'success');
    } else {
      await api.post('/admin/plans', payload);
      toast(`Plan ${payload.code} created.`, 'success');
    }
    dialog.close();
    loadPlans();
    return undefined;
  }, { busyText: 'Saving…' });
}

// ---- settings (typed editor) ----------------------------------------------------------------------

function settingControl(setting, id) {
  const type = setting.type;
  if (type === 'boolean') {
    return el('input', { id, name: 'value', type: 'checkbox', checked: Boolean(setting.value), 'aria-describedby': `${id}-desc ${id}-error` });
  }
  if (type === 'integer') {
    return el('input', {
      id, name: 'value', type: 'number', step: 1, inputmode: 'numeric', value: setting.value ?? '',
      min: setting.minimum ?? null, max: setting.maximum ?? null, 'aria-describedby': `${id}-desc ${id}-error`,
    });
  }
  if (Array.isArray(setting.choices) && setting.choices.length) {
    return el('select', { id, name: 'value', 'aria-describedby': `${id}-desc ${id}-error` },
      setting.choices.map((c) => option(c, c, c === setting.value)));
  }
  return el('input', { id, name: 'value', type: 'text', value: setting.value ?? '', maxlength: setting.max_length ?? null, 'aria-describedby': `${id}-desc ${id}-error` });
}

function settingValue(setting, form) {
  const control = form.elements.namedItem('value');
  if (setting.type === 'boolean') return { ok: true, value: control.checked };
  if (setting.type === 'integer') {
    const n = Number(control.value);
    if (control.value.trim() === '' || !Number.isInteger(n)) return { ok: false, message: 'Enter a whole number.' };
    return { ok: true, value: n };
  }
  return { ok: true, value: control.value };
}

function settingForm(setting) {
  const id = `setting-${setting.key.replace(/[^a-zA-Z0-9_-]/g, '-')}`;
  const control = settingControl(setting, id);
  const isBool = setting.type === 'boolean';
  const label = el('label', { for: id, class: 'mono' }, setting.key);
  const form = el('form', { class: 'setting', method: 'post', novalidate: true, 'aria-label': `Setting ${setting.key}` },
    el('div', { class: 'field' },
      isBool ? el('div', { class: 'checks' }, el('label', { for: id }, control, el('span', { class: 'mono' }, setting.key))) : label,
      isBool ? null : control,
      el('p', { class: 'hint', id: `${id}-desc` }, setting.description || '', ' ', badge(setting.type, 'info'),
        setting.default !== undefined ? el('span', { class: 'muted' }, ` default: ${JSON.stringify(setting.default)}`) : null),
      el('p', { class: 'field-error', id: `${id}-error`, 'data-error-for': 'value', hidden: true }),
      el('p', { class: 'alert alert-error', 'data-form-error': true, role: 'alert', tabindex: -1, hidden: true })),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', class: 'btn btn-small btn-primary' }, 'Save')));
  onSubmit(form, async () => {
    const parsed = settingValue(setting, form);
    if (!parsed.ok) {
      fieldError(form, 'value', parsed.message);
      return;
    }
    try {
      await api.put(`/admin/settings/${encodeURIComponent(setting.key)}`, { value: parsed.value });
    } catch (error) {
      // field errors for a setting come back as {"value": reason} (or keyed by the setting name)
      if (error.fields && !error.fields.value && error.fields[setting.key]) error.fields = { value: error.fields[setting.key] };
      throw error;
    }
    setting.value = parsed.value;
    toast(`Setting ${setting.key} saved.`, 'success');
  }, { busyText: 'Saving…' });
  return form;
}

async function loadSettings() {
  const container = $('#settings');
  try {
    const settings = items(await api.get('/admin/settings'), 'settings');
    $('#settings-error').hidden = true;
    clear(container);
    if (!settings.length) container.append(el('p', { class: 'empty' }, 'No settings defined.'));
    for (const setting of settings) container.append(settingForm(setting));
  } catch (error) {
    showError('#settings-error', error);
  }
}

// ---- audit log ------------------------------------------------------------------------------------------

function details(value) {
  if (value === null || value === undefined || value === '') return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

async function loadAudit() {
  const body = $('#audit');
  try {
    const f = state.audit;
    const data = await api.get('/admin/audit-log', { actor_id: f.actor_id, action: f.action, page: f.page, per_page: PER_PAGE });
    $('#audit-error').hidden = true;
    clear(body);
    const entries = items(data, 'entries');
    if (!entries.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No entries.')));
    for (const entry of entries) {
      body.append(el('tr', {},
        el('td', {}, formatDate(entry.created_at)),
        el('td', {}, entry.actor_email || (entry.actor_id ? `#${entry.actor_id}` : 'system')),
        el('td', { class: 'mono' }, entry.action),
        el('td', {}, entry.target_type ? `${entry.target_type} #${entry.target_id ?? ''}` : ''),
        el('td', { class: 'mono cell-clip', title: details(entry.details) }, details(entry.details)),
        el('td', { class: 'mono' }, entry.ip || '')));
    }
    renderPager($('#audit-pager'), data, (page) => {
      state.audit.page = page;
      loadAudit();
    });
  } catch (error) {
    showError('#audit-error', error);
  }
}

function setupAudit() {
  const form = $('#audit-filters');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const actor = $('#audit-actor').value.trim();
    if (actor && !/^\d+$/.test(actor)) {
      showErrors(form, { message: 'Actor ID must be a number.', fields: {} });
      return;
    }
    state.audit = { actor_id: actor, action: $('#audit-action').value.trim(), page: 1 };
    loadAudit();
  });
}

// ---- start -----------------------------------------------------------------------------------------------

async function main() {
  let me;
  try {
    me = await startSignedInPage();
  } catch (error) {
    fatal(error);
    return;
  }
  state.me = me.user;
  if (!me.user || me.user.role !== 'admin') {
    fatal({ message: 'This page is for administrators. Your account does not have the admin role.' });
    return;
  }
  $('#page-loading').hidden = true;
  $('#admin').hidden = false;
  setupUsers();
  setupPlans();
  setupAudit();
  setupTabs();
  document.body.dataset.ready = 'true';
}

main();
