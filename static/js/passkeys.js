// Passkeys (WebAuthn) in the browser: ask the server for options, call
// navigator.credentials.create() or .get(), and hand the answer back. The server keeps the
// challenge; this script only converts between WebAuthn's ArrayBuffers and base64url JSON.
//   form#passkey-register: registers a new passkey (fetch, JSON), then reloads the page.
//   form[data-passkey-get]: signs in (login page) or confirms the second step: the assertion
//   is posted with the form's CSRF token, like any other form, and the server answers the page.
(function () {
  "use strict";

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var bytes = atob(base64), buffer = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
    return buffer.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer), binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBuffers(descriptors) {
    return (descriptors || []).map(function (d) {
      return { type: d.type, id: toBuffer(d.id), transports: d.transports };
    });
  }

  function creationOptions(json) {
    json.challenge = toBuffer(json.challenge);
    json.user.id = toBuffer(json.user.id);
    json.excludeCredentials = withBuffers(json.excludeCredentials);
    return json;
  }

  function requestOptions(json) {
    json.challenge = toBuffer(json.challenge);
    json.allowCredentials = withBuffers(json.allowCredentials);
    return json;
  }

  function credentialJSON(credential) {
    var r = credential.response, response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    });
  }

  function post(url, form, body, contentType) {
    var headers = { "X-CSRFToken": form.querySelector("input[name=csrf_token]").value, "Accept": "application/json" };
    if (contentType) headers["Content-Type"] = contentType;
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: body });
  }

  function fetchOptions(form) {
    return post(form.getAttribute("data-options-url"), form).then(function (response) {
      if (response.ok) return response.json();
      return response.json().catch(function () { return {}; }).then(function (answer) {
        throw new Error(answer.error || "Passkeys are not available right now (" + response.status + ").");
      });
    });
  }

  function showError(element, text) {
    element.textContent = text;
    element.className = "alert alert--error";
    element.hidden = false;
  }

  function problem(error) {
    if (error && error.name === "NotAllowedError") return "The passkey request was cancelled or timed out.";
    if (error && error.name === "InvalidStateError") return "This passkey is already registered.";
    return (error && error.message) || "The passkey could not be used.";
  }

  function initRegister(form) {
    var error = document.getElementById("passkey-register-error");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.hidden = true;
      fetchOptions(form).then(function (options) {
        return navigator.credentials.create({ publicKey: creationOptions(options) });
      }).then(function (credential) {
        var name = form.querySelector("input[name=name]");
        return post(form.getAttribute("data-register-url"), form,
          JSON.stringify({ credential: credentialJSON(credential), name: name ? name.value : "" }),
          "application/json");
      }).then(function (response) {
        return response.json().then(function (answer) {
          if (!response.ok) throw new Error(answer.error || "The passkey was not registered.");
          window.location.reload();
        });
      }).catch(function (err) { showError(error, problem(err)); });
    });
  }

  function initGet(form) {
    var error = form.querySelector("[role=alert]");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      if (form.credential.value) return;  // the assertion is in: post the form
      event.preventDefault();
      if (error) error.hidden = true;
      fetchOptions(form).then(function (options) {
        return navigator.credentials.get({ publicKey: requestOptions(options) });
      }).then(function (credential) {
        form.credential.value = credentialJSON(credential);
        // the login page's "Keep me signed in" belongs to the password form: carry its answer
        var keep = document.getElementById("remember");
        if (form.remember && keep) form.remember.value = keep.checked ? "y" : "";
        form.submit();
      }).catch(function (err) { if (error) showError(error, problem(err)); });
    });
  }

  function init() {
    if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) return;
    var register = document.getElementById("passkey-register");
    if (register) initRegister(register);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey-get]"), initGet);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
