// The test double's own scripts: it renders Gmail-shaped views (GMAIL_DOM.md selectors), keeps a
// fake draft autosave that records everything it ever saw in the compose body, and records the
// page's network requests. The extension must never let plaintext reach any of these.
(() => {
  const draftStore = [];
  const networkLog = [];
  const events = [];
  window.__fixture = { draftStore, networkLog, events };

  // The page is hostile (docs/SECURITY.md): this capture listener is registered before any
  // extension script runs. Armed (window.__bccOnSend = address), it adds a hidden Bcc chip the
  // instant Send is pressed. test_firefox.py arms it; Chromium's tests inject the same listener.
  window.addEventListener('pointerdown', (event) => {
    const address = window.__bccOnSend;
    if (!address || !event.target.closest?.('.T-I.aoO')) return;
    window.__bccOnSend = null;
    const field = document.createElement('div');
    field.setAttribute('name', 'bcc');
    field.className = 'page-bcc';
    field.style.display = 'none';
    const chip = document.createElement('div');
    chip.setAttribute('data-hovercard-id', address);
    field.append(chip);
    document.querySelector('div.M9').append(field);
  }, true);

  // network: fetch, XHR, sendBeacon, and every resource timing entry
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    networkLog.push({ kind: 'fetch', url: String(input?.url ?? input), body: init.body ? String(init.body) : '' });
    return realFetch(input, init);
  };
  const realOpen = XMLHttpRequest.prototype.open;
  const realSend = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.__url = String(url);
    return realOpen.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.send = function (body) {
    networkLog.push({ kind: 'xhr', url: this.__url, body: body ? String(body) : '' });
    return realSend.call(this, body);
  };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) networkLog.push({ kind: 'resource', url: entry.name, body: '' });
  }).observe({ type: 'resource', buffered: true });

  // draft autosave, as Gmail's POST /sync/u/0/i/s does: on input and every 300 ms
  function autosave() {
    const body = document.querySelector('div.Am.Al[role=textbox]');
    if (!body) return;
    const subject = document.querySelector('input[name=subjectbox]')?.value ?? '';
    const snapshot = { subject, html: body.innerHTML, text: body.innerText };
    const last = draftStore[draftStore.length - 1];
    if (last && last.html === snapshot.html && last.subject === subject) return;
    draftStore.push(snapshot);
    const payload = JSON.stringify(snapshot);
    try { localStorage.setItem('draft', payload); } catch { /* private mode */ }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/sync/u/0/i/s');
    xhr.send(payload);
  }
  setInterval(autosave, 300);
  document.addEventListener('input', autosave, true);

  const chip = (address) => `<div class="afV" role="option" data-name="${address}" data-hovercard-id="${address}">${address}<div class="afX" aria-label="Remove ${address}"></div></div>`;

  function composeHtml(to) {
    return `<div class="AD"><div class="nH Hd" role="dialog">
      <div class="nH Hy aXJ"><table class="cf Ht"><tr><td><div class="Hp"><h2 class="a3E"><div class="aYF">New Message</div></h2></div></td>
        <td class="Hm"><button class="Hl" aria-label="Minimize"></button><button class="Ha" aria-label="Save &amp; close">×</button></td></tr></table></div>
      <div class="nH"><div class="aaZ"><div class="M9" jsaction="compose">
        <div class="aoI" role="region" aria-label="New Message"><table class="aoP aoC"><tr><td class="I5">
          <form class="bAs" method="post">
            <input type="hidden" name="composeid" value="compose-1"><input type="hidden" name="from" value="alice@example.test">
            <input type="hidden" name="draft" value="#msg-a:r-1"><input type="hidden" name="subject" value="">
            <table class="GS"><tbody><tr class="bzf"><td class="eV"><div><div><div class="anm" name="to"><div><div><div><div>
              <div role="listbox" aria-label="To">${to.map(chip).join('')}<input role="combobox" aria-autocomplete="list" peoplekit-id="to"></div>
            </div></div></div></div></div></div></div></td></tr>
            <tr class="bzf"><td class="eV"><div><div><div class="anm" name="cc"><div><div><div><div><div role="listbox" aria-label="Cc"></div></div></div></div></div></div></div></div></td></tr></tbody></table>
            <input name="subjectbox" class="aoT" placeholder="Subject">
          </form>
          <table class="cf An"><tr><td class="Ap"><div class="Ar Au">
            <div class="Am Al editable LW-avf tS-tW" aria-label="Message Body" g_editable="true" role="textbox" contenteditable="true"></div>
          </div></td></tr></table>
          <table class="iN"><tr><td class="HE"><div class="aDg"><div class="aDj"><div class="aDh"><table class="IZ" role="group"><tr class="btC">
            <td class="gU Up"><div class="btA"><div class="dC">
              <div class="T-I J-J5-Ji aoO v7 T-I-atl L3" role="button" tabindex="1" data-tooltip="Send \u202a(Ctrl-Enter)\u202c">Send</div>
              <div class="T-I J-J5-Ji hG" role="button" aria-haspopup="true" aria-label="More send options"></div></div></div></td>
            <td class="gU"><div class="oh J-Z-I" role="button" aria-label="Discard draft \u202a(Ctrl-Shift-D)\u202c">🗑</div></td>
          </tr></table></div></div></div><div class="oG aOy"></div></td></tr></table>
        </td></tr></table></div>
      </div></div></div></div></div>`;
  }

  // What Gmail renders of a message (/fixture/thread, from the raw message the test put).
  async function shownMessage(permId) {
    const response = await realFetch(`/fixture/thread?permmsgid=${encodeURIComponent(permId)}`);
    return response.ok ? response.json() : { subject: 'Encrypted message', body: '', attachments: ['smime.p7m'] };
  }

  function fillThread(view, shown) {
    view.querySelector('h2.hP').textContent = shown.subject;
    view.querySelector('.a3s').textContent = shown.body;
    view.querySelector('.aQH').replaceChildren(...shown.attachments.map((name) => {
      const chip = document.createElement('span');
      chip.className = 'aZo';
      chip.innerHTML = '<span class="aV3"></span><span class="SaH2Ve">5 KB</span>';
      chip.firstChild.textContent = name;
      return chip;
    }));
  }

  function threadHtml(permId) {
    const dec = permId.replace('msg-f:', '');
    return `<div class="nH a98 iY"><div class="ha"><h2 class="hP" data-legacy-thread-id="18f00aa"></h2></div>
      <div role="list"><div role="listitem" class="h7"><div class="adn ads" data-message-id="#${permId}" data-legacy-message-id="${BigInt(dec).toString(16)}">
        <div class="gs"><h3 class="iw"><span class="gD" email="alice@example.test" name="Alice">Alice</span></h3>
          <span class="hb"><span class="g2" email="bob@example.test">me</span></span><span class="gK"><span class="g3" title="now">now</span></span>
          <div class="ii gt"><div class="a3s aiL"></div></div>
          <div class="hq gt"><div class="aQH"></div></div>
        </div></div></div></div></div>`;
  }

  // An inline reply (Gmail's reply box under the message): the same div.M9 compose, not in a
  // dialog, the sender as recipient and the subject in a hidden subjectbox ("Re: ...").
  function addInlineReply(view, message) {
    const holder = document.createElement('div');
    holder.innerHTML = composeHtml([message.from ?? 'alice@example.test']);
    const compose = holder.querySelector('div.M9');
    compose.querySelector('input[name=subjectbox]').value = `Re: ${message.subject}`;
    compose.querySelector('input[name=subjectbox]').style.display = 'none';
    // The reply goes out from the account the message came to.
    if (message.to) compose.querySelector('input[name=from]').value = message.to;
    const reply = document.createElement('div');
    reply.className = 'ip adB';
    reply.append(compose);
    view.querySelector('[role=listitem]').append(reply);
  }

  function render() {
    const hash = location.hash || '#inbox';
    const view = document.getElementById('view');
    const moles = document.getElementById('moles');
    const thread = /^#inbox\/(msg-f:\d+)/.exec(hash);
    const replying = /[?&]reply\b/.test(hash);
    const shown = thread ? shownMessage(thread[1]) : null;
    // Like Gmail, views appear a moment after load (the adapter must wait for them).
    setTimeout(async () => {
      view.innerHTML = thread ? threadHtml(thread[1]) : '<div class="ae4"><div role="list">Inbox</div></div>';
      if (thread) {
        const message = await shown;
        fillThread(view, message);
        if (replying) addInlineReply(view, message);
      }
      const compose = /compose=new(?:&to=([^&]*))?/.exec(hash);
      moles.innerHTML = compose ? composeHtml(compose[1] ? decodeURIComponent(compose[1]).split(',') : []) : '';
    }, 150);
  }

  // Gmail's own handlers: Send posts the draft as plaintext mail; Discard removes the window.
  document.addEventListener('click', (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest('.T-I.aoO')) {
      events.push('gmail-send');
      const body = document.querySelector('div.Am.Al[role=textbox]');
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/sync/u/0/i/s?send=1');
      xhr.send(JSON.stringify({ send: true, text: body?.innerText ?? '' }));
    }
    if (target?.closest('[aria-label^="Discard draft"]')) {
      events.push('discarded');
      (target.closest('.ip') ?? document.querySelector('.AD'))?.remove();
    }
  });
  // Gmail's shortcut: Ctrl-Enter in a compose window sends it.
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && event.target.closest?.('.M9')) {
      events.push('gmail-send');
    }
  });
  window.addEventListener('hashchange', render);
  render();
})();
