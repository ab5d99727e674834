// Passkeys on aspen's PSU pages. A form with data-passkey="create" or
// "get" carries the WebAuthn options (buffers in base64url) in
// data-options; this script asks the browser, puts the response into the
// form's hidden inputs and submits it. Without this script (or without
// WebAuthn) the form stays hidden and the page works as before.
(function () {
  "use strict";
  function dec(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function enc(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    return (list || []).map(function (c) { return { type: c.type, id: dec(c.id) }; });
  }
  function set(form, name, value) {
    var input = form.querySelector('input[name="' + name + '"]');
    if (input) input.value = value;
  }
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var mode = form.getAttribute("data-passkey");
    var opts = JSON.parse(form.getAttribute("data-options"));
    var status = form.querySelector("[data-passkey-status]");
    form.hidden = false;
    form.addEventListener("submit", function (e) {
      if (form.getAttribute("data-ready") === "1") return;
      e.preventDefault();
      var ask;
      if (mode === "create") {
        opts.challenge = dec(opts.challenge);
        opts.user.id = dec(opts.user.id);
        opts.excludeCredentials = ids(opts.excludeCredentials);
        ask = navigator.credentials.create({ publicKey: opts });
      } else {
        opts.challenge = dec(opts.challenge);
        opts.allowCredentials = ids(opts.allowCredentials);
        ask = navigator.credentials.get({ publicKey: opts });
      }
      ask.then(function (cred) {
        set(form, "credential_id", enc(cred.rawId));
        set(form, "client_data", enc(cred.response.clientDataJSON));
        if (mode === "create") {
          set(form, "attestation", enc(cred.response.attestationObject));
        } else {
          set(form, "authenticator_data", enc(cred.response.authenticatorData));
          set(form, "signature", enc(cred.response.signature));
          if (cred.response.userHandle) set(form, "user_handle", enc(cred.response.userHandle));
        }
        form.setAttribute("data-ready", "1");
        form.submit();
      }).catch(function (err) {
        if (status) status.textContent = "The passkey was not used (" + err.name + "). Try again, or use another way to sign in.";
        opts = JSON.parse(form.getAttribute("data-options"));
      });
    });
  });
})();
