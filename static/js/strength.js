// The change-password page's strength meter. It asks the server (POST /account/password/check,
// with the form's CSRF token) instead of guessing: the answer is the same policy, for the same
// user, that the form applies on submit, so the meter never promises what the form then refuses.
// Requests wait for a pause in typing; a late answer to an older value is ignored.
(function () {
  "use strict";

  var PAUSE_MS = 250;

  function init() {
    var input = document.getElementById("new_password");
    var form = input && input.form;  // the password form, not the first on the page (the header's sign-out)
    var current = document.getElementById("current_password");
    var meter = document.getElementById("strength");
    var label = document.getElementById("strength-label");
    var problems = document.getElementById("strength-problems");
    var wrap = document.getElementById("strength-wrap");
    if (!form || !input || !meter || !label || !problems || !wrap) return;
    var url = wrap.getAttribute("data-check-url");
    var token = form.querySelector("input[name=csrf_token]");
    if (!url || !token || !window.fetch) return;

    var timer = null;
    var asked = 0;

    function show(answer) {
      meter.value = answer.strength;
      label.textContent = answer.label;
      problems.textContent = "";
      answer.problems.forEach(function (text) {
        var item = document.createElement("li");
        item.textContent = text;
        problems.appendChild(item);
      });
      wrap.setAttribute("data-acceptable", answer.acceptable ? "true" : "false");
      wrap.setAttribute("data-score", String(answer.strength));
    }

    function forget() {
      label.textContent = "";
      problems.textContent = "";
      wrap.removeAttribute("data-acceptable");
      wrap.setAttribute("data-score", "");
    }

    function ask() {
      var number = ++asked;
      var body = new FormData();
      body.append("new_password", input.value);
      if (current && current.value) body.append("current_password", current.value);
      fetch(url, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token.value, "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) throw new Error("check answered " + response.status);
        return response.json();
      }).then(function (answer) {
        if (number !== asked) return;  // the password changed since: a newer answer is coming
        show(answer);
        wrap.setAttribute("data-state", "done");
      }).catch(function () {
        if (number !== asked) return;
        forget();  // rate-limited or signed out: the form still says what it accepts on submit
        wrap.setAttribute("data-state", "failed");
      });
    }

    function changed() {
      clearTimeout(timer);
      asked++;  // any answer still on its way is for an older value
      wrap.hidden = !input.value;
      if (!input.value) {
        forget();
        wrap.setAttribute("data-state", "done");
        return;
      }
      wrap.setAttribute("data-state", "pending");
      timer = setTimeout(ask, PAUSE_MS);
    }

    input.addEventListener("input", changed);
    if (current) current.addEventListener("input", function () { if (input.value) changed(); });
    if (input.value) changed();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
