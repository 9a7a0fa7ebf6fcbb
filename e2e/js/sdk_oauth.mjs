// TS SDK OAuth client against the gateway's authorization server: discovery (PRM → RFC 8414),
// dynamic client registration, authorize (posting the consent form with cookies and signing in
// at the IdP), token exchange and refresh. Prints one JSON line with what happened.
//
// Usage: node sdk_oauth.mjs <mcp url> <idp user> <redirect url>
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { cookieFetch } from './cookies.mjs';

const [serverUrl, user, redirectUrl] = process.argv.slice(2);
const origin = new URL(serverUrl).origin;

const go = cookieFetch();
const abs = (base, loc) => new URL(loc, base).toString();

const steps = [];
class Provider {
  constructor() { this.redirectUrl = redirectUrl; }
  get clientMetadata() {
    return { client_name: 'TS SDK e2e', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', application_type: 'native' };
  }
  state() { this.st = 'sdk-state-' + Math.random().toString(36).slice(2); return this.st; }
  clientInformation() { return this.ci; }
  saveClientInformation(c) { this.ci = c; steps.push({ step: 'registered', client_id: c.client_id }); }
  tokens() { return this.t; }
  saveTokens(t) { this.t = t; steps.push({ step: 'tokens', has_refresh: !!t.refresh_token, scope: t.scope, token_type: t.token_type }); }
  saveCodeVerifier(v) { this.v = v; }
  codeVerifier() { return this.v; }
  async redirectToAuthorization(authUrl) {
    steps.push({ step: 'authorize', resource: authUrl.searchParams.get('resource'), scope: authUrl.searchParams.get('scope'),
      method: authUrl.searchParams.get('code_challenge_method') });
    let r = await go(authUrl.toString());
    let loc = abs(authUrl, r.headers.get('location'));
    if (new URL(loc).pathname === '/consent') {
      r = await go(loc);
      const page = await r.text();
      if (r.status !== 200) throw new Error(`consent page ${r.status}`);
      const field = n => { const m = page.match(new RegExp(`name="${n}" value="([^"]+)"`)); return m && m[1].replace(/&#43;/g, '+').replace(/&amp;/g, '&'); };
      steps.push({ step: 'consent', status: r.status, xfo: r.headers.get('x-frame-options') });
      const form = new URLSearchParams({ request: field('request'), csrf: field('csrf'), action: 'allow' });
      r = await go(origin + '/consent', { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', origin } });
      if (r.status !== 303) throw new Error(`consent POST ${r.status}: ${await r.text()}`);
      loc = abs(origin, r.headers.get('location'));
    }
    // Sign in at the IdP (login_hint makes the fixture finish without a form), follow its
    // redirects to our callback, then to the client's redirect URI.
    const idp = new URL(loc);
    idp.searchParams.set('login_hint', user);
    loc = idp.toString();
    for (let i = 0; i < 20 && !loc.startsWith(redirectUrl); i++) {
      r = await go(loc);
      const next = r.headers.get('location');
      if (!next) throw new Error(`no redirect from ${new URL(loc).pathname}: ${r.status} ${(await r.text()).slice(0, 300)}`);
      loc = abs(loc, next);
    }
    const cb = new URL(loc);
    this.redirect = { state_ok: cb.searchParams.get('state') === this.st, iss: cb.searchParams.get('iss'), error: cb.searchParams.get('error') };
    this.code = cb.searchParams.get('code');
  }
}

const p = new Provider();
// An MCP tool call through the gateway with the current tokens (the transport asks p).
const callTool = async () => {
  const client = new Client({ name: 'ts-sdk-e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: p }));
  try {
    const r = await client.callTool({ name: 'hello_mcp', arguments: {} });
    return { text: r.content?.[0]?.text, isError: !!r.isError };
  } finally { await client.close(); }
};
const first = await auth(p, { serverUrl });
steps.push({ step: 'auth', result: first, redirect: p.redirect });
const second = await auth(p, { serverUrl, authorizationCode: p.code });
steps.push({ step: 'auth', result: second, tool: await callTool() });
const oldAccess = p.t.access_token, oldRefresh = p.t.refresh_token;
const third = await auth(p, { serverUrl }); // has a refresh token: refreshes
steps.push({ step: 'refresh', result: third, rotated: p.t.refresh_token !== oldRefresh && p.t.access_token !== oldAccess, tool: await callTool() });
console.log(JSON.stringify({ ok: true, steps }));
