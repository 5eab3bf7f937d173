// srt's HTTP proxy alone, as SandboxManager builds it (sandbox-manager.js,
// startMuxProxyServer): createHttpProxyServer from the installed
// @anthropic-ai/sandbox-runtime, with a host allowlist filter written like
// the manager's filterNetworkRequest (canonicalizeHost, then
// matchesDomainPatternWithPort against allowedDomains), and a lookupFor that
// maps the bench host to the loopback upstream (where the manager passes
// its resolved-address guard, which would refuse loopback).
//
// Left out: the mux front end (srt's real listener relays HTTP connections
// to this server over a unix socket), the SOCKS server, proxy auth, the
// violation store. So this is srt's proxy at its cheapest.
//
//   node srt-proxy.mjs PKG_DIR UPSTREAM_CA_PEM CA_OUT
// prints `ready {"port":N,"ca":CA_OUT}`; with CA_OUT, CONNECTs are
// TLS-terminated (srt's tlsTerminate) with an ephemeral CA written there.
import { pathToFileURL } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import dns from 'node:dns';

const [pkgDir, upstreamCa, caOut] = process.argv.slice(2);
const mod = p => import(pathToFileURL(`${pkgDir}/dist/sandbox/${p}`).href);
const { createHttpProxyServer } = await mod('http-proxy.js');
const { matchesDomainPatternWithPort } = await mod('domain-pattern.js');
const { canonicalizeHost } = await mod('parent-proxy.js');
const { createMitmCA } = await mod('mitm-ca.js');

const HOST = 'upstream.test';
const allowedDomains = [HOST];
const filter = (port, host) => {
  const canonical = canonicalizeHost(host) ?? host;
  return allowedDomains.some(d => matchesDomainPatternWithPort(canonical, port, d));
};
const lookup = (hostname, options, callback) => {
  if (hostname !== HOST) return dns.lookup(hostname, options, callback);
  if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
  return callback(null, '127.0.0.1', 4);
};

let mitmCA;
if (caOut) {
  mitmCA = createMitmCA({});
  writeFileSync(caOut, mitmCA.certPem);
}
const server = createHttpProxyServer({
  filter,
  mitmCA,
  tlsTerminateUpstreamCA: upstreamCa ? readFileSync(upstreamCa) : undefined,
  lookupFor: () => lookup,
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`ready ${JSON.stringify({ port, ca: caOut ?? null })}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
