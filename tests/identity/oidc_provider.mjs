// A real OpenID Connect provider for arrowroot's tests: oidc-provider (certified OpenID
// implementation) on a loopback port, issuing JWT access tokens through its own endpoints.
//
//   node oidc_provider.mjs CONFIG.json
//
// CONFIG: { "port": 0, "host": "127.0.0.1", "keys_file": "jwks.json", "audience": "arrowroot",
//           "resource": "urn:arrowroot", "scopes": "storage.read:/ ...", "access_ttl": 600,
//           "clients": [{client_id, client_secret, grant_types, redirect_uris, response_types,
//                        token_endpoint_auth_method}],
//           "client_claims": {client_id: {claims...}}, "accounts": {login: {claims...}} }
//
// keys_file holds a private JWK set; the first key signs. SIGHUP re-reads it and swaps in a new
// provider on the same port (key rotation without a restart). Prints "listening PORT" when up.
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const host = config.host || '127.0.0.1';

function build(issuer) {
  const jwks = JSON.parse(fs.readFileSync(config.keys_file, 'utf8'));
  const accounts = config.accounts || {};
  const clientClaims = config.client_claims || {};
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks,
    features: {
      devInteractions: { enabled: true },      // the provider's own login form: any login, any password
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => config.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resource) => {
          if (resource !== config.resource && resource !== config.other_resource) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: config.scopes,
            audience: resource === config.resource ? config.audience : config.other_audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.access_ttl || 600,
            jwt: { sign: { alg: jwks.keys[0].alg || 'RS256' } },
          };
        },
      },
    },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: id, ...(accounts[id] || {}) }),
    }),
    // user name and groups in access tokens, as Keycloak's mappers put them
    extraTokenClaims: async (ctx, token) => {
      if (token.accountId) {
        return { preferred_username: token.accountId, ...(accounts[token.accountId] || {}) };
      }
      return clientClaims[token.clientId];
    },
    ttl: { ClientCredentials: config.access_ttl || 600, IdToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
    pkce: { required: () => true },
    conformIdTokenClaims: false,
  });
  provider.proxy = false;
  return provider;
}

let handler = null;
const server = http.createServer((req, res) => handler(req, res));
server.listen(config.port || 0, host, () => {
  const { port } = server.address();
  const issuer = config.issuer || `http://${host}:${port}`;
  handler = build(issuer).callback();
  process.on('SIGHUP', () => {
    try {
      handler = build(issuer).callback();
      process.stdout.write('rotated\n');
    } catch (err) {
      process.stdout.write(`rotation failed: ${err.message}\n`);
    }
  });
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
