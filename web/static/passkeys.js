// Passkeys (WebAuthn) for the pages that offer them. Progressive: without this script (or a
// browser without WebAuthn) the buttons stay hidden and password + code still work.
(() => {
  const words = JSON.parse(document.body.dataset.words || "{}");
  // Browsers refuse passkeys on an IP address (a relying party is a domain, or localhost):
  // there the buttons stay hidden, and the passkeys page says why.
  const host = window.location.hostname;
  const onAddress = /^[0-9.]+$/.test(host) || host.includes(":") || host.startsWith("[");
  if (!window.PublicKeyCredential || onAddress) {
    document.querySelectorAll("[data-passkeys-impossible]").forEach((note) => { note.hidden = false; });
    return;
  }
  document.querySelectorAll("[data-passkeys-possible]").forEach((part) => { part.hidden = false; });

  const toBytes = (value) => {
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const toText = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  const post = async (path, body) => {
    const response = await fetch(path, {
      method: "POST",
      // The API answers in the page's language (it follows Accept-Language).
      headers: { "Content-Type": "application/json", "Accept-Language": document.documentElement.lang },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 && String(data.type || "").endsWith("reauthentication-required")) {
      // Adding a way in needs a recent sign-in: confirm it is you, then back here.
      const back = window.location.pathname + window.location.search;
      window.location.assign("/account/reauthenticate?next=" + encodeURIComponent(back));
      throw new Error(words.confirm_first);
    }
    if (!response.ok) throw new Error(data.detail || words.passkey_refused);
    return data;
  };

  const credentialJSON = (credential) => {
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      if (response.getTransports) json.response.transports = response.getTransports();
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      if (response.userHandle) json.response.userHandle = toText(response.userHandle);
    }
    return json;
  };

  const say = (element, message) => {
    const status = document.getElementById(element.dataset.status);
    if (status) status.textContent = message;
  };

  document.querySelectorAll("[data-passkey-register]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        const { ceremony, options } = await post("/api/v1/passkeys/register/options", {});
        options.challenge = toBytes(options.challenge);
        options.user.id = toBytes(options.user.id);
        options.excludeCredentials = (options.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) }));
        const credential = await navigator.credentials.create({ publicKey: options });
        const name = document.getElementById("passkey-name").value || words.passkey;
        await post("/api/v1/passkeys/register", { ceremony, name, credential: credentialJSON(credential) });
        window.location.reload();
      } catch (error) {
        say(button, error.message);
      }
    });
  });

  document.querySelectorAll("[data-passkey-sign-in]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        const { ceremony, options } = await post("/api/v1/login/passkey/options", {});
        options.challenge = toBytes(options.challenge);
        options.allowCredentials = (options.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) }));
        const credential = await navigator.credentials.get({ publicKey: options });
        // On a second step, the page's "remember this browser" box goes with the passkey.
        const trust = document.querySelector("input[name=trust_browser]");
        const answer = await post("/api/v1/login/passkey", {
          ceremony, credential: credentialJSON(credential), trust_browser: Boolean(trust && trust.checked),
        });
        // A passkey that did not verify the person is one factor: the second step follows.
        window.location.assign(answer.second_step ? "/login/two-factor" : (button.dataset.next || "/"));
      } catch (error) {
        say(button, error.message);
      }
    });
  });
  document.querySelectorAll("[data-passkey-reauthenticate]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        const { ceremony, options } = await post("/api/v1/reauthenticate/passkey/options", {});
        options.challenge = toBytes(options.challenge);
        options.allowCredentials = (options.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) }));
        const credential = await navigator.credentials.get({ publicKey: options });
        await post("/api/v1/reauthenticate/passkey", { ceremony, credential: credentialJSON(credential) });
        window.location.assign(button.dataset.next || "/account");
      } catch (error) {
        say(button, error.message);
      }
    });
  });
})();
