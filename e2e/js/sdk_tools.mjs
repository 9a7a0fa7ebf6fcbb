// TS SDK MCP client through the gateway: the Streamable HTTP transport meets the gateway's 401,
// runs the SDK's OAuth flow (PRM and RFC 8414 discovery, dynamic registration, authorize with
// PKCE), redirectToAuthorization posts the consent form (keeping cookies) and signs in at the
// IdP, finishAuth exchanges the code, and a new transport then calls every snippet tool.
// Prints one JSON line: the OAuth steps seen and each tool's answer.
//
// Usage: node sdk_tools.mjs <mcp url> <idp user> <redirect url> <snippet name>
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { cookieFetch } from './cookies.mjs';

const [serverUrl, user, redirectUrl, name] = process.argv.slice(2);
const origin = new URL(serverUrl).origin;

// The gateway's flow cookies must come back on /consent and on its callback.
const get = cookieFetch();

const flow = [];
const provider = {
  redirectUrl,
  get clientMetadata() {
    return { client_name: 'TS SDK tools e2e', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  state() { this.st = crypto.randomUUID(); return this.st; },
  clientInformation() { return this.ci; },
  saveClientInformation(c) { this.ci = c; flow.push('registered'); },
  tokens() { return this.t; },
  saveTokens(t) { this.t = t; flow.push(`tokens:${t.token_type}`); },
  saveCodeVerifier(v) { this.v = v; },
  codeVerifier() { return this.v; },
  async redirectToAuthorization(authUrl) {
    flow.push('authorize');
    let loc = authUrl.toString();
    for (let i = 0; i < 20 && !loc.startsWith(redirectUrl); i++) {
      const u = new URL(loc);
      let r;
      if (u.origin === origin && u.pathname === '/consent') {
        const page = await (await get(loc)).text();
        const field = n => page.match(new RegExp(`name="${n}" value="([^"]+)"`))?.[1].replace(/&#43;/g, '+').replace(/&amp;/g, '&');
        flow.push('consent');
        r = await get(origin + '/consent', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
          body: new URLSearchParams({ request: field('request'), csrf: field('csrf'), action: 'allow' }) });
      } else {
        if (u.origin !== origin && u.pathname === '/auth') { u.searchParams.set('login_hint', user); flow.push('idp'); }
        r = await get(u.toString());
      }
      const next = r.headers.get('location');
      if (!next) throw new Error(`no redirect from ${u.pathname}: ${r.status}`);
      loc = new URL(next, u).toString();
    }
    const cb = new URL(loc);
    if (cb.searchParams.has('error')) throw new Error(`authorization refused: ${cb.searchParams.get('error')}`);
    if (cb.searchParams.get('state') !== this.st) throw new Error('state mismatch');
    this.code = cb.searchParams.get('code');
  },
};

const client = new Client({ name: 'ts-sdk-tools-e2e', version: '1.0.0' });
let transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
try {
  await client.connect(transport);
  flow.push('connected without auth');
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  flow.push('unauthorized');
  await transport.finishAuth(provider.code);
  transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  await client.connect(transport);
}

const call = async (tool, args = {}) => {
  const r = await client.callTool({ name: tool, arguments: args });
  return { text: (r.content || []).filter(c => c.type === 'text').map(c => c.text).join(''), isError: !!r.isError,
    structured: r.structuredContent ?? null };
};
const out = { ok: true, flow, tools: (await client.listTools()).tools.map(t => t.name).sort(), calls: {} };
const content = `from the TS SDK ✓ ${name}\nline two`;
out.content = content;
out.calls.hello = await call('hello_mcp');
out.calls.save = await call('save_snippet', { snippetname: name, snippet: content });
out.calls.get = await call('get_snippet', { snippetname: name });
out.calls.list = await call('list_snippets');
out.calls.delete = await call('delete_snippet', { snippetname: name });
out.calls.getAfterDelete = await call('get_snippet', { snippetname: name });
out.calls.badName = await call('save_snippet', { snippetname: '../escape', snippet: 'x' });
await client.close();
console.log(JSON.stringify(out));
