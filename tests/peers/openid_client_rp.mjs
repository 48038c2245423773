// A public relying party built with openid-client (a certified OpenID Connect RP library):
// discovery, an authorization URL with PKCE (S256), state and nonce, then - once the test has
// walked the person through sign-in and consent and sends the callback URL on stdin - the
// code exchange (checking iss, state, nonce, the ID token's signature and claims), userinfo,
// a refresh, and the old refresh token's reuse. It prints one JSON line per step.
//
//   node openid_client_rp.mjs ISSUER CLIENT_ID REDIRECT_URI
import * as client from "openid-client";
import { createInterface } from "node:readline";

const [issuer, clientId, redirectUri] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (value) => console.log(JSON.stringify(value));

const config = await client.discovery(
  new URL(issuer), clientId, undefined, client.None(),
  { execute: [client.allowInsecureRequests] }, // the test issuer is http://localhost
);
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: "openid email profile",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state,
  nonce,
});
say({ authorize: url.href });

const callback = (await lines.next()).value;
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
let reuse;
try {
  await client.refreshTokenGrant(config, tokens.refresh_token);
  reuse = "accepted";
} catch (error) {
  reuse = error.error ?? String(error);
}
let afterReuse;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
  afterReuse = "accepted";
} catch (error) {
  afterReuse = error.error ?? String(error);
}
say({ claims, userinfo, refreshed: Boolean(refreshed.access_token), reuse, afterReuse });
process.exit(0);
