// TS SDK SSEClientTransport against the gateway's legacy SSE endpoint with a bearer token.
// Prints one JSON line with what happened.
//
// Usage: node sse_client.mjs <sse url> <access token> tools|progress
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';

const [sseUrl, token, mode] = process.argv.slice(2);
const auth = { Authorization: `Bearer ${token}` };
const transport = new SSEClientTransport(new URL(sseUrl), {
  // The GET that opens the stream goes through eventsource's fetch; the POSTs use requestInit.
  eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers || {}), ...auth } }) },
  requestInit: { headers: auth },
});
const client = new Client({ name: 'e2e-sse', version: '1.0.0' });
await client.connect(transport);
const out = { protocolVersion: transport._protocolVersion ?? null, server: client.getServerVersion()?.name };
const text = r => (r.content || []).filter(c => c.type === 'text').map(c => c.text).join('');

if (mode === 'tools') {
  out.tools = (await client.listTools()).tools.map(t => t.name).sort();
  const call = async (name, args) => { const r = await client.callTool({ name, arguments: args }); return { text: text(r), isError: !!r.isError, structured: r.structuredContent ?? null }; };
  out.hello = await call('hello_mcp', {});
  out.save = await call('save_snippet', { snippetname: 'ts-sse', snippet: 'from the TS SDK over SSE ✓' });
  out.get = await call('get_snippet', { snippetname: 'ts-sse' });
  out.list = await call('list_snippets', {});
  out.del = await call('delete_snippet', { snippetname: 'ts-sse' });
  out.missing = await call('get_snippet', { snippetname: 'ts-sse' });
} else if (mode === 'progress') {
  const progress = [];
  const r = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
    onprogress: p => progress.push(p.progress),
  });
  out.progress = progress;
  out.result = text(r);
} else {
  throw new Error(`unknown mode ${mode}`);
}
await client.close();
console.log(JSON.stringify(out));
