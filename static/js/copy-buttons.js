// Copy buttons: a button with data-copy="#id" copies that element's value (or text) to the clipboard.
(function () {
  "use strict";

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      const source = document.querySelector(button.dataset.copy);
      const text = source.value !== undefined ? source.value : source.textContent;
      navigator.clipboard.writeText(text.trim()).then(function () { button.textContent = "Copied"; });
    });
  });
})();
