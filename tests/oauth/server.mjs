// A real OAuth 2.0 authorization server on loopback for the tests: oidc-provider (a certified
// OpenID Connect implementation) with authorization code + PKCE, rotating refresh tokens,
// revocation, and token introspection for Dovecot's oauth2 passdb. tests/harness/oauth.py starts
// it and reads the one JSON line it prints once it listens.
//
//   node server.mjs '{"clients": [...], "accessTokenTtl": 3600}'
//
// Sign-in is oidc-provider's development interaction (any login, any password; the login becomes
// the token's subject), then its consent page: the test types the person's address.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? '{}');
const accessTokenTtl = config.accessTokenTtl ?? 3600;
// Clients whose access tokens live only this many seconds (a token that runs out while a
// client still holds it): {clientId: seconds}.
const shortLived = config.shortLived ?? {};

// The issuer names the port (discovery, redirects and tokens carry it): listen first.
const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  scopes: ['openid', 'email', 'offline_access', 'mail'],
  features: {
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: (ctx, token, client) => shortLived[client?.clientId ?? token.clientId] ?? accessTokenTtl,
    AuthorizationCode: 60,
    Grant: 14 * 86400,
    Interaction: 600,
    RefreshToken: 14 * 86400,
    Session: 86400,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, email: sub }) }),
  cookies: { keys: ['autosmime-test-cookie-key'] },
});
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
