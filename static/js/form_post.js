// Form Post Response Mode: send the authorization response to the client straight away.
(function () {
  "use strict";
  var sent = false;

  function submit() {
    if (sent) return;
    var form = document.getElementById("form-post");
    if (!form) return;
    sent = true;
    form.submit();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", submit);
  } else {
    submit();
  }
  window.addEventListener("load", submit);
})();
