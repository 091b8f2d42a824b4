// node-oidc-provider in one process, issuing client_credentials JWT access tokens (RFC 9068) the way
// the app does: the same client, secret and scope, signed with ALG (ES256 or RS256). Started and
// measured by bench/node_reference.py; not part of the identity server.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const { PORT = '3000', ALG = 'ES256', CLIENT_ID, CLIENT_SECRET, SCOPE } = process.env;
if (!CLIENT_ID || !CLIENT_SECRET || !SCOPE) {
  console.error('CLIENT_ID, CLIENT_SECRET and SCOPE are required');
  process.exit(2);
}
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...rsa, alg: 'RS256', use: 'sig', kid: 'rs' }, { ...ec, alg: 'ES256', use: 'sig', kid: 'es' }] },
  scopes: [SCOPE],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench:localapi',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 3600,
        jwt: { sign: { alg: ALG } },
      }),
    },
  },
});

provider.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`ready: oidc-provider on 127.0.0.1:${PORT}, access tokens ${ALG}`);
});
