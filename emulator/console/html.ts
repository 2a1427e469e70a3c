// HTML for the web console, written on the server: a tagged template that escapes every value it
// is given (a name from a device or a config file can hold anything) unless it is already Html,
// the page around each view, and the pieces forms are made of (a field with its label, hint and
// error, tied together for screen readers).

export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** html`<p>${value}</p>`: values escaped; Html kept; arrays joined; null, undefined and false left out. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new Html(out);
}

function render(value: unknown): string {
  if (value === undefined || value === null || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export const NAV = [
  ['/', 'Overview'],
  ['/linked-hubs', 'Linked IoT hubs'],
  ['/allocation-policy', 'Allocation policy'],
  ['/enrollments', 'Manage enrollments'],
  ['/hubs', 'Hubs'],
  ['/live', 'Live'],
] as const;

export interface PageFrame {
  title: string;
  /** The NAV entry to mark as the current page. */
  active?: string;
  /** The session's CSRF token: in every form, and in a meta tag for the script. */
  csrf: string;
  /** A line to announce once (after a change), or an error. */
  flash?: { kind: 'ok' | 'error'; text: string };
  /** Whether a logout button belongs in the header (a login is required on this host). */
  signedIn?: boolean;
  body: Html;
}

export function page(frame: PageFrame): string {
  const nav =
    frame.csrf === ''
      ? ''
      : html`<nav aria-label="Console"><ul>${NAV.map(
          ([href, label]) => html`<li><a href="${href}"${frame.active === href ? new Html(' aria-current="page"') : ''}>${label}</a></li>`,
        )}</ul></nav>`;
  const flash = frame.flash
    ? html`<p class="flash ${frame.flash.kind}" role="${frame.flash.kind === 'error' ? 'alert' : 'status'}">${frame.flash.text}</p>`
    : '';
  const logout = frame.signedIn
    ? html`<form method="post" action="/logout" class="logout">${csrfField(frame.csrf)}<button type="submit">Sign out</button></form>`
    : '';
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${frame.csrf}"><title>${frame.title} · DPS emulator</title>
<link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a><header><p class="brand">DPS emulator</p>${nav}${logout}</header>
<main id="main"><h1>${frame.title}</h1>${flash}${frame.body}</main></body></html>`}`;
}

export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}">`;
}

export interface FieldOptions {
  name: string;
  label: string;
  value?: string;
  /** The error to show next to the field (from the console's checks or the service API's answer). */
  error?: string | undefined;
  hint?: string;
  type?: 'text' | 'url' | 'password';
  inputmode?: 'numeric';
  required?: boolean;
  /** A textarea with this many rows instead of an input. */
  rows?: number;
  autocomplete?: string;
}

/** A labelled input or textarea; its hint and error are announced with it (aria-describedby). */
export function field(options: FieldOptions): Html {
  const id = `f-${options.name}`;
  const described = [options.hint ? `${id}-hint` : '', options.error ? `${id}-error` : ''].filter(Boolean).join(' ');
  const common = html` id="${id}" name="${options.name}"${options.required ? new Html(' required') : ''}${
    described ? html` aria-describedby="${described}"` : ''
  }${options.error ? new Html(' aria-invalid="true"') : ''}${options.autocomplete ? html` autocomplete="${options.autocomplete}"` : ''}`;
  const control =
    options.rows !== undefined
      ? html`<textarea${common} rows="${options.rows}" spellcheck="false">${options.value ?? ''}</textarea>`
      : html`<input${common} type="${options.type ?? 'text'}" value="${options.value ?? ''}"${
          options.inputmode ? html` inputmode="${options.inputmode}"` : ''
        }>`;
  return html`<div class="field${options.error ? ' invalid' : ''}"><label for="${id}">${options.label}</label>${control}${
    options.hint ? html`<p class="hint" id="${id}-hint">${options.hint}</p>` : ''
  }${options.error ? html`<p class="error" id="${id}-error">${options.error}</p>` : ''}</div>`;
}

/** A labelled select. */
export function select(options: {
  name: string;
  label: string;
  value: string;
  choices: ReadonlyArray<readonly [string, string]>;
  error?: string | undefined;
  hint?: string;
}): Html {
  const id = `f-${options.name}`;
  const described = [options.hint ? `${id}-hint` : '', options.error ? `${id}-error` : ''].filter(Boolean).join(' ');
  return html`<div class="field${options.error ? ' invalid' : ''}"><label for="${id}">${options.label}</label><select id="${id}" name="${
    options.name
  }"${described ? html` aria-describedby="${described}"` : ''}${options.error ? new Html(' aria-invalid="true"') : ''}>${options.choices.map(
    ([value, label]) => html`<option value="${value}"${value === options.value ? new Html(' selected') : ''}>${label}</option>`,
  )}</select>${options.hint ? html`<p class="hint" id="${id}-hint">${options.hint}</p>` : ''}${
    options.error ? html`<p class="error" id="${id}-error">${options.error}</p>` : ''
  }</div>`;
}

/** A form that posts to `action` with the CSRF token; `confirm` asks before (through the script). */
export function postButton(action: string, label: string, csrf: string, options: { confirm?: string; className?: string } = {}): Html {
  return html`<form method="post" action="${action}" class="inline"${options.confirm ? html` data-confirm="${options.confirm}"` : ''}>${csrfField(
    csrf,
  )}<button type="submit"${options.className ? html` class="${options.className}"` : ''}>${label}</button></form>`;
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
