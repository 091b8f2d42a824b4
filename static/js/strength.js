// A rough, friendly password strength hint (0..4): mostly length, a little character variety.
// It only guides; the server's policy (length and a blocklist) decides what is accepted.
(function () {
  "use strict";

  var LABELS = ["Too short", "Weak", "Fair", "Good", "Strong"];

  function classes(password) {
    var found = 0;
    if (/[a-z]/.test(password)) found++;
    if (/[A-Z]/.test(password)) found++;
    if (/[0-9]/.test(password)) found++;
    if (/[^A-Za-z0-9]/.test(password)) found++;
    return found;
  }

  function distinct(chars) {
    var seen = {};
    var count = 0;
    for (var i = 0; i < chars.length; i++) {
      if (!seen[chars[i]]) {
        seen[chars[i]] = true;
        count++;
      }
    }
    return count;
  }

  function estimate(password, minLength) {
    var chars = Array.from ? Array.from(password) : password.split("");
    var length = chars.length;
    if (length === 0 || length < minLength) return 0;

    var score = 1;
    if (length >= minLength + 4) score++;
    if (length >= minLength + 8) score++;
    if (length >= minLength + 12) score++;
    if (classes(password) >= 3) score++;

    // "aaaaaaaaaaaa" or "abababababab" is long but not strong.
    var unique = distinct(chars);
    if (unique <= 2) score = 1;
    else if (unique <= 4) score = Math.min(score, 2);

    return Math.max(0, Math.min(4, score));
  }

  function init() {
    var input = document.getElementById("new_password");
    var meter = document.getElementById("strength");
    var label = document.getElementById("strength-label");
    if (!input || !meter || !label) return;

    var wrap = document.getElementById("strength-wrap");
    var minLength = parseInt((wrap && wrap.getAttribute("data-min-length")) || "8", 10);
    if (isNaN(minLength) || minLength < 1) minLength = 8;

    function update() {
      var password = input.value || "";
      var score = estimate(password, minLength);
      meter.value = score;
      label.textContent = password ? LABELS[score] : "";
      if (wrap) {
        wrap.hidden = !password;
        wrap.setAttribute("data-score", password ? String(score) : "");
      }
    }

    input.addEventListener("input", update);
    update();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
