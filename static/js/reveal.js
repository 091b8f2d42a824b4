// "Show password" beside each password field (OWASP ASVS 2.1.12): the person may check what they
// typed, since most desktop browsers offer no way to. The checkbox (rendered hidden, as it does
// nothing without this script) switches its field between password and text; the field is masked
// again when its form is sent, so a browser never keeps it as a text field's value.
(function () {
  "use strict";

  function init() {
    var boxes = document.querySelectorAll("input[data-reveal-for]");
    Array.prototype.forEach.call(boxes, function (box) {
      var field = document.getElementById(box.getAttribute("data-reveal-for"));
      if (!field) return;
      box.checked = false;
      box.addEventListener("change", function () {
        field.type = box.checked ? "text" : "password";
      });
      if (field.form) {
        field.form.addEventListener("submit", function () {
          field.type = "password";
          box.checked = false;
        });
      }
      box.closest("[data-reveal]").hidden = false;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
