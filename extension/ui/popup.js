// The toolbar popup: the state at a glance, the way to the options page, and first-run setup.

import { $, el, lastRenewal, openOptions, openPage, request, showError } from './common.js';
import { renewalProblems, summarize } from './messages.js';

async function render() {
  const status = $('#status');
  try {
    const { accounts } = await request('account.list');
    const { keys } = accounts.length ? await request('certs.list', { address: accounts[0].address }) : { keys: [] };
    const summary = summarize(accounts, keys);
    status.dataset.state = summary.state;
    $('#headline').textContent = summary.headline;
    const details = [...summary.details, ...renewalProblems(await lastRenewal())];
    $('#details').replaceChildren(...details.map((text) => el('li', { text })));
    $('#setup').hidden = !['setup', 'enroll'].includes(summary.state);
  } catch (error) {
    status.dataset.state = 'error';
    $('#headline').textContent = 'autosmime cannot show its state.';
    showError($('#error'), error);
    $('#setup').hidden = false;
  }
}

$('#setup').addEventListener('click', () => { openPage('ui/onboarding.html'); window.close(); });
$('#options').addEventListener('click', () => { openOptions(); window.close(); });
render();
