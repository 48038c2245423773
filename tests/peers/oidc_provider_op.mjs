// An outside OpenID provider for the federation tests: oidc-provider (a certified OpenID
// Provider implementation) on loopback, with its development interactions (a login form in
// which any password is accepted, and a consent form) for a browser or an HTTP client to
// drive. Accounts are made up from the login name: "alice@example.com" signs in as that
// address (verified); a name starting with "unverified-" has an unverified address.
//
//   node oidc_provider_op.mjs PORT CLIENTS_JSON
//
// CLIENTS_JSON: [{"client_id", "client_secret", "redirect_uris": [...]}]. It prints
// {"issuer": ...} once it listens.
import Provider from "oidc-provider";

const [port, clientsJson] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(clientsJson).map((client) => ({
  grant_types: ["authorization_code"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
  ...client,
}));

const provider = new Provider(issuer, {
  clients,
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  cookies: { keys: ["test-cookie-key-0123456789"] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: id.replace(/^unverified-/, ""),
      email_verified: !id.startsWith("unverified-"),
      name: id.split("@")[0],
    }),
  }),
});
provider.proxy = false;
// http on loopback is fine for tests; oidc-provider otherwise insists on https cookies.
provider.listen(Number(port), "127.0.0.1", () => {
  console.log(JSON.stringify({ issuer }));
});
