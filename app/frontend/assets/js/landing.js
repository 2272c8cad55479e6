// Landing page: the public plan list from GET /api/v1/plans.
import { api } from './api.js';
import { $, clear, el } from './ui.js';

function price(cents) {
  const value = Number(cents) || 0;
  if (value === 0) return 'Free';
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD' }).format(value / 100);
}

function limit(value, noun) {
  if (value === null || value === undefined || Number(value) < 0) return `Unlimited ${noun}`;
  return `${value} ${noun}`;
}

async function loadPlans() {
  const status = $('#plans-status');
  const container = $('#plans');
  try {
    const data = await api.get('/plans', undefined, { auth: false });
    const plans = Array.isArray(data) ? data : (data && data.items) || [];
    clear(container);
    if (!plans.length) {
      status.textContent = 'Plans will be announced soon.';
      return;
    }
    status.hidden = true;
    for (const plan of plans) {
      container.append(
        el('article', { class: 'card' },
          el('h3', {}, plan.name || plan.code),
          el('p', { class: 'plan-price' }, price(plan.price_cents), Number(plan.price_cents) > 0 ? el('small', {}, ' / month') : null),
          el('ul', { class: 'plan-limits' },
            el('li', {}, limit(plan.posts_per_month, 'posts per month')),
            el('li', {}, limit(plan.ai_generations_per_month, 'AI generations per month')),
            el('li', {}, limit(plan.connected_accounts, 'connected accounts'))),
          el('a', { class: 'btn btn-primary', href: '/signup' }, 'Get started')));
    }
  } catch {
    status.textContent = 'Plans could not be loaded right now.';
  }
}

loadPlans().finally(() => {
  document.body.dataset.ready = 'true';
});
