// fetch with cookies, for the headless OAuth clients: one cookie jar per origin (browsers
// ignore ports, but keeping them apart is enough here and never leaks the gateway's cookies
// to the IdP), redirects never followed (the caller walks them).
//
// Usage: const go = cookieFetch(); const r = await go(url, init);
export function cookieFetch() {
  const jars = new Map();
  return async (u, init = {}) => {
    const o = new URL(u).origin;
    if (!jars.has(o)) jars.set(o, new Map());
    const j = jars.get(o);
    const headers = { ...(init.headers || {}) };
    if (j.size) headers.cookie = [...j].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(u, { ...init, headers, redirect: 'manual' });
    for (const sc of r.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim(), value = pair.slice(i + 1).trim();
      const expired = attrs.some(a => /^\s*max-age=\s*(0|-)/i.test(a));
      if (expired) j.delete(name); else j.set(name, value);
    }
    return r;
  };
}
