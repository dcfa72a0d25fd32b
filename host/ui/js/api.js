// The JSON API, called with the key the user pasted. The key lives in this
// tab's sessionStorage only: no cookies, so nothing else can send it for us.

const KEY = 'muon.key';

/** An answer of the API that is not a success: its status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function key() { return sessionStorage.getItem(KEY); }
export function setKey(value) { sessionStorage.setItem(KEY, value); }
export function forgetKey() { sessionStorage.removeItem(KEY); }

/** The tenant an admin key acts as (`x-muon-tenant`), or null for the key's own. */
let actingTenant = null;
export function actAs(tenant) { actingTenant = tenant; }

function headers(extra = {}) {
  const acting = actingTenant ? { 'x-muon-tenant': actingTenant } : {};
  return { ...extra, ...acting, authorization: `Bearer ${key() ?? ''}` };
}

/** The error a failed response carries: the API's JSON `{error: {code, message}}`, or its text. */
async function errorOf(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    if (error && error.message) return new ApiError(response.status, error.code, error.message);
  } catch { /* not JSON: say what came */ }
  return new ApiError(response.status, 'http_' + response.status, text.trim() || response.statusText);
}

/** `fetch` with the key; the parsed JSON of a success, else an `ApiError`. */
export async function api(path, { method = 'GET', body, contentType, signal } = {}) {
  const extra = contentType ? { 'content-type': contentType } : {};
  const response = await fetch(path, { method, body, signal, headers: headers(extra), cache: 'no-store' });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** A path with its query: `query` entries that are undefined or empty are left out. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Follows a Server-Sent Events stream, calling `onEvent({id, data})` for each
 * event. EventSource cannot send an Authorization header, so this reads the
 * stream with fetch; after a dropped connection it resumes with
 * `Last-Event-ID`, as EventSource would. Resolves when the server ends the
 * stream; rejects with an `ApiError` on an error answer.
 */
export async function followEvents(path, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; ; attempt++) {
    const extra = lastId === null ? {} : { 'last-event-id': String(lastId) };
    let response;
    try {
      response = await fetch(path, { signal, headers: headers(extra), cache: 'no-store' });
    } catch (err) {
      if (signal.aborted || attempt >= 5) throw err;
      await new Promise((resume) => setTimeout(resume, 1000));
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    try {
      await readEvents(response.body, (event) => { lastId = event.id ?? lastId; onEvent(event); });
      return;
    } catch (err) {
      if (signal.aborted || attempt >= 5) throw err;
    }
  }
}

/** Reads `text/event-stream` blocks: `id:` and `data:` lines; comments (`:`) are keep-alives. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      const data = [];
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = Number(text);
        else if (field === 'data') data.push(text);
      }
      if (data.length) onEvent({ id, data: JSON.parse(data.join('\n')) });
    }
  }
}
