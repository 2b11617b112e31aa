// Runs a Test in place and shows each step as soon as the server reports it.
//
// Test buttons carry hx-post, so htmx alone would show the steps once the Test is over. The server streams one HTML
// fragment per step, each ending with FRAGMENT_END; this reader takes over such buttons (data-test-stream) and shows
// the page up to the last complete fragment as it arrives. Without JavaScript the buttons post a plain form instead.
(function () {
  "use strict";

  const FRAGMENT_END = "<!--/fragment-->";

  document.addEventListener("htmx:confirm", function (event) {
    const button = event.detail.elt;
    if (!button.matches("[data-test-stream]") || !window.ReadableStream) {
      return;
    }
    event.preventDefault();
    runTest(button);
  });

  // A Test pressed in a table row shows its steps in a row right below it, where the person is looking.
  function placeNextToRow(button, indicator, target) {
    const row = button.closest("tr");
    if (!row) {
      return;
    }
    let panelRow = document.getElementById("test-panel-row");
    if (!panelRow) {
      panelRow = document.createElement("tr");
      panelRow.id = "test-panel-row";
      // Named for what it holds, so that it is not taken for another row of the integration it reports on.
      panelRow.setAttribute("aria-label", "Test result");
      panelRow.appendChild(document.createElement("td"));
    }
    const cell = panelRow.firstElementChild;
    cell.colSpan = row.cells.length;
    cell.append(indicator, target);
    row.after(panelRow);
  }

  async function runTest(button) {
    const target = document.querySelector(button.getAttribute("hx-target"));
    const indicator = document.querySelector(button.getAttribute("hx-indicator"));
    const form = button.form || button.closest("form");
    placeNextToRow(button, indicator, target);
    button.disabled = true;
    indicator.classList.add("htmx-request");
    target.replaceChildren();
    document.querySelectorAll("[data-replaced-by-test]").forEach(function (element) {
      element.hidden = true;
    });
    indicator.scrollIntoView({ block: "nearest" });
    try {
      const response = await fetch(button.getAttribute("hx-post"), {
        method: "POST",
        body: new FormData(form),
        headers: { "HX-Request": "true", "HX-Current-URL": window.location.href },
        credentials: "same-origin",
      });
      const retarget = response.headers.get("HX-Retarget");
      if (retarget) {
        // The form had errors: the server sent the form back with each error next to its field. htmx swaps it in,
        // so that its buttons work as before and the page's scripts see the swap (htmx:afterSwap).
        const html = await response.text();
        if (window.htmx) {
          window.htmx.swap(retarget, html, { swapStyle: "outerHTML" });
        } else {
          document.querySelector(retarget).outerHTML = html;
        }
        return;
      }
      if (!response.ok) {
        target.textContent = "The Test could not be run (" + response.status + " " + response.statusText + ").";
        return;
      }
      await showAsItArrives(response.body, target);
      applyOutOfBand(target);
      if (window.htmx) {
        // A Remote integration answers "waiting for remote node…", which polls the job with htmx attributes.
        window.htmx.process(target);
      }
    } catch (error) {
      target.textContent = "The Test could not be run: " + error.message;
    } finally {
      button.disabled = false;
      indicator.classList.remove("htmx-request");
      // Focus follows the result, so a keyboard user who pressed Test hears and reads it next; after a form came back
      // with errors, the first field in error takes it.
      const invalid = !target.isConnected && document.querySelector(".is-invalid");
      const focus = invalid || target;
      if (!invalid) {
        target.tabIndex = -1;
      }
      focus.focus({ preventScroll: true });
      focus.scrollIntoView({ block: "nearest" });
    }
  }

  async function showAsItArrives(body, target) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      text += decoder.decode(value, { stream: true });
      const end = text.lastIndexOf(FRAGMENT_END);
      if (end >= 0) {
        // The browser closes the elements a later fragment will close.
        target.innerHTML = text.slice(0, end);
      }
    }
    target.innerHTML = text + decoder.decode();
  }

  // Elements marked hx-swap-oob (the list's badge) replace the element of the same id elsewhere on the page.
  function applyOutOfBand(container) {
    container.querySelectorAll("[hx-swap-oob]").forEach(function (element) {
      element.removeAttribute("hx-swap-oob");
      element.remove();
      const current = document.getElementById(element.id);
      if (current) {
        current.replaceWith(element);
      }
    });
  }
})();
