// Small DOM helpers. Everything user-controlled goes through textContent /
// DOM nodes, never HTML strings.

export const PLATFORMS = ['twitter', 'linkedin', 'facebook', 'instagram', 'mastodon', 'webhook'];
export const TONES = ['professional', 'casual', 'enthusiastic', 'informative', 'witty'];
export const POST_STATUSES = ['draft', 'scheduled', 'published', 'failed'];

const PLATFORM_LABELS = {
  twitter: 'X / Twitter',
  linkedin: 'LinkedIn',
  facebook: 'Facebook',
  instagram: 'Instagram',
  mastodon: 'Mastodon',
  webhook: 'Webhook',
};

export function platformLabel(code) {
  return PLATFORM_LABELS[code] || code;
}

export function capitalize(text) {
  const s = String(text ?? '');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

/**
 * el('button', {class: 'btn', type: 'button', dataset: {id: 1}, on: {click: fn}}, 'Text', child)
 * Attribute values of false/null/undefined are skipped; true sets an empty attribute.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (key === 'value') node.value = value;
    else if (key === 'checked' || key === 'selected' || key === 'disabled') node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function option(value, label, selected = false) {
  return el('option', { value, selected }, label);
}

export function badge(text, kind = text) {
  return el('span', { class: `badge badge-${String(kind).toLowerCase().replace(/[^a-z0-9_-]/g, '')}` }, text);
}

// ---- dates --------------------------------------------------------------------

export function formatDate(value) {
  if (!value) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// <input type="datetime-local"> value (local time) -> ISO 8601 UTC string.
export function localInputToIso(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ISO string -> value for <input type="datetime-local"> in local time.
export function isoToLocalInput(value) {
  if (!value) return '';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---- forms and errors -----------------------------------------------------------

function errorSlot(form, name) {
  return form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
}

function fieldControls(form, name) {
  const item = form.elements.namedItem(name);
  if (!item) return [];
  if (item instanceof RadioNodeList) return Array.from(item);
  return [item];
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll('[data-error-for]')) {
    slot.textContent = '';
    slot.hidden = true;
  }
  for (const control of form.querySelectorAll('[aria-invalid="true"]')) control.removeAttribute('aria-invalid');
  const formError = form.querySelector('[data-form-error]');
  if (formError) {
    formError.textContent = '';
    formError.hidden = true;
  }
}

/**
 * Show an API error on a form: each entry of error.fields next to its field
 * (an element with data-error-for="<field>"), the message in the form's
 * [data-form-error] element. Focuses the first invalid field.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const fields = (error && error.fields) || {};
  let first = null;
  let unplaced = [];
  for (const [name, reason] of Object.entries(fields)) {
    const slot = errorSlot(form, name);
    const controls = fieldControls(form, name);
    if (slot) {
      slot.textContent = capitalize(reason);
      slot.hidden = false;
    } else {
      unplaced.push(`${name}: ${reason}`);
    }
    for (const control of controls) control.setAttribute('aria-invalid', 'true');
    if (!first && controls.length) first = controls[0];
  }
  const formError = form.querySelector('[data-form-error]');
  let message = (error && error.message) || 'Something went wrong.';
  if (error && error.retryAfter) message += ` (retry in ${error.retryAfter} s)`;
  if (unplaced.length) message += ` ${unplaced.join('; ')}`;
  if (formError) {
    formError.textContent = message;
    formError.hidden = false;
  } else {
    toast(message, 'error');
  }
  if (first) first.focus();
  else if (formError) formError.focus();
}

export function fieldError(form, name, message) {
  const slot = errorSlot(form, name);
  for (const control of fieldControls(form, name)) control.setAttribute('aria-invalid', 'true');
  if (slot) {
    slot.textContent = message;
    slot.hidden = false;
  }
  const [control] = fieldControls(form, name);
  if (control) control.focus();
}

export function setBusy(button, busy, busyText) {
  if (!button) return;
  if (busy) {
    button.dataset.label = button.textContent;
    if (busyText) button.textContent = busyText;
    button.dataset.busyText = button.textContent;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  } else {
    // restore the label unless the handler has meanwhile given the button a new one
    if (button.dataset.label && button.textContent === button.dataset.busyText) button.textContent = button.dataset.label;
    delete button.dataset.label;
    delete button.dataset.busyText;
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * Wire a form: prevent default submit, clear errors, mark the submit button
 * busy, call handler(values, form); API errors are shown on the form.
 */
export function onSubmit(form, handler, { busyText = 'Working…' } = {}) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (form.dataset.busy === 'true') return;
    clearErrors(form);
    const button = event.submitter || form.querySelector('[type="submit"]');
    form.dataset.busy = 'true';
    setBusy(button, true, busyText);
    try {
      await handler(formValues(form), form, button);
    } catch (error) {
      showErrors(form, error);
      if (!(error && error.name === 'ApiError')) console.error(error);
    } finally {
      form.dataset.busy = 'false';
      setBusy(button, false);
    }
  });
}

export function formValues(form) {
  const values = {};
  for (const control of form.elements) {
    if (!control.name || control.disabled) continue;
    if (control.type === 'checkbox') {
      if (control.dataset.multi !== undefined) {
        values[control.name] = values[control.name] || [];
        if (control.checked) values[control.name].push(control.value);
      } else {
        values[control.name] = control.checked;
      }
    } else if (control.type === 'radio') {
      if (control.checked) values[control.name] = control.value;
    } else if (control.tagName !== 'BUTTON' && control.tagName !== 'FIELDSET') {
      values[control.name] = control.value;
    }
  }
  return values;
}

// ---- notices ----------------------------------------------------------------------

export function toast(message, kind = 'info', timeout = 6000) {
  let region = document.getElementById('toasts');
  if (!region) {
    region = el('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const node = el('p', { class: `alert alert-${kind} toast` }, message);
  region.append(node);
  window.setTimeout(() => node.remove(), timeout);
}

export function showAlert(node, message, kind = 'info') {
  node.className = `alert alert-${kind}`;
  node.textContent = message;
  node.hidden = false;
}

export function query(name) {
  return new URLSearchParams(window.location.search).get(name);
}

// Pagination controls: renders "Page x of y" and Previous/Next buttons into container.
export function renderPager(container, data, onPage) {
  clear(container);
  if (!data) return;
  const page = Number(data.page) || 1;
  const pages = Math.max(Number(data.pages) || 1, 1);
  const prev = el('button', { type: 'button', class: 'btn btn-small', disabled: page <= 1, on: { click: () => onPage(page - 1) } }, '← Previous');
  const next = el('button', { type: 'button', class: 'btn btn-small', disabled: page >= pages, on: { click: () => onPage(page + 1) } }, 'Next →');
  const info = el('span', { class: 'pager-info' }, `Page ${page} of ${pages} · ${data.total ?? 0} total`);
  container.append(prev, info, next);
}

export function debounce(fn, wait = 300) {
  let timer = null;
  return (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), wait);
  };
}
