// The console's one style sheet and one script, served from the emulator itself (no CDN: the
// machines it runs on may have no internet). The script only adds to pages that work without
// it: copy buttons, confirmations before a delete, and the live page's event stream, whose
// fragments the server renders (the script inserts them; it builds no markup from data).

export const CONSOLE_CSS = `
:root{color-scheme:light;--fg:#1b1b1b;--muted:#555;--line:#c8c8c8;--bg:#fff;--panel:#f4f6f8;--accent:#0b5cad;--ok:#0a6b2c;--warn:#8a4b00;--bad:#b00020;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
body{margin:0;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.5rem 1.25rem;background:#12324f;color:#fff}
header .brand{font-weight:700;margin:0}
header nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;margin:0;padding:0}
header a{color:#fff}
header a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
header .logout{margin-left:auto}
main{max-width:72rem;padding:1rem 1.25rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:2rem 0 .5rem}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible,summary:focus-visible{outline:3px solid #c26e00;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:.5rem;top:.5rem;background:#fff;color:#000;padding:.25rem .5rem;z-index:1}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1.25rem;margin:0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{background:var(--panel);border:1px solid var(--line);padding:.6rem .75rem;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.secret code{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid var(--line);padding:.4rem .5rem;text-align:left;vertical-align:top}
thead th{background:var(--panel)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.row-actions{white-space:nowrap}
.card{background:var(--panel);border:1px solid var(--line);padding:1rem;max-width:44rem}
.field{margin:0 0 .9rem}.field label{display:block;font-weight:600;margin-bottom:.2rem}
input[type=text],input[type=password],input[type=url],select,textarea{box-sizing:border-box;width:100%;padding:.4rem .5rem;border:1px solid #767676;border-radius:3px;font:inherit;background:#fff;color:var(--fg)}
textarea{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.field.invalid input,.field.invalid textarea,.field.invalid select{border-color:var(--bad);border-width:2px}
.hint{color:var(--muted);font-size:.9rem;margin:.2rem 0 0}
.error{color:var(--bad);font-weight:600;margin:.25rem 0 0}
fieldset{border:1px solid var(--line);margin:0 0 .9rem;padding:.5rem .75rem}legend{font-weight:600}
.choice{display:flex;gap:.5rem;align-items:baseline;margin:.25rem 0}.choice label{font-weight:400}
button{font:inherit;padding:.4rem .9rem;border:1px solid #0b4f94;border-radius:3px;background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}button.danger{background:var(--bad);border-color:#8a0019}
form.inline{display:inline}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
.flash{padding:.5rem .75rem;border-left:4px solid var(--ok);background:#e8f4ec}
.flash.error{border-color:var(--bad);background:#fbe9ec}
.badge{display:inline-block;padding:0 .4rem;border-radius:3px;border:1px solid var(--line);font-size:.8rem;font-weight:600;background:#fff}
.badge.ok{color:var(--ok);border-color:var(--ok)}.badge.warn{color:var(--warn);border-color:var(--warn)}
.chart{max-width:44rem}.chart svg{display:block;width:100%;height:auto}
.chart .devices{fill:var(--accent)}.chart .weight{fill:#9bb7d4}.chart .axis{stroke:var(--line)}
.chart text{font-size:12px;fill:var(--fg)}
.legend{display:flex;gap:1rem;font-size:.9rem;margin:.25rem 0}.legend span::before{content:"";display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
.legend .devices::before{background:var(--accent)}.legend .weight::before{background:#9bb7d4}
.legend .registrations::before{background:#0b5cad}.legend .assignments::before{background:#0a6b2c}.legend .failures::before{background:#b00020}
.series-registrations{fill:#0b5cad}.series-assignments{fill:#0a6b2c}.series-failures{fill:#b00020}
ol.events{list-style:none;padding:0;margin:0;max-height:28rem;overflow:auto;border:1px solid var(--line)}
ol.events li{padding:.25rem .5rem;border-bottom:1px solid #eee;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
ol.events time{color:var(--muted);margin-right:.5rem}
`;

export const CONSOLE_JS = `
(() => {
  'use strict';
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? '';
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  }
  for (const button of document.querySelectorAll('[data-copy-secret]')) {
    button.addEventListener('click', async () => {
      const status = button.parentElement.querySelector('[data-copy-status]');
      try {
        const answer = await fetch(button.dataset.copySecret, { method: 'POST', headers: { 'x-csrf-token': csrf }, credentials: 'same-origin' });
        if (!answer.ok) throw new Error(String(answer.status));
        await navigator.clipboard.writeText((await answer.json()).value);
        if (status) status.textContent = 'Copied';
      } catch {
        if (status) status.textContent = 'Could not copy: use Show, then copy it by hand';
      }
    });
  }
  const live = document.querySelector('[data-live-stream]');
  if (live && 'EventSource' in window) {
    const list = document.getElementById('events');
    const charts = document.getElementById('charts');
    const state = document.getElementById('stream-state');
    const source = new EventSource(live.dataset.liveStream);
    source.addEventListener('open', () => { state.textContent = 'live'; });
    source.addEventListener('error', () => { state.textContent = 'reconnecting…'; });
    source.addEventListener('device', (event) => {
      const { html } = JSON.parse(event.data);
      list.insertAdjacentHTML('afterbegin', html);
      while (list.children.length > 200) list.lastElementChild.remove();
    });
    source.addEventListener('charts', (event) => { charts.innerHTML = JSON.parse(event.data).html; });
  }
})();
`;
