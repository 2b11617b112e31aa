// Test buttons run their Test with plain htmx: the answer is the Test run's section, which polls the run until it is
// finished (and then updates the list's badge out of band). This only puts the result where the person is looking:
// a Test pressed in a table row shows in a row right below it, the page's earlier steps make way for the new ones,
// and focus moves to the result (or, after the form came back with errors, to the first field in error).
(function () {
  "use strict";

  function isTestButton(element) {
    return element instanceof Element && element.matches("[data-test-button]");
  }

  function placeBelowRow(row, panel) {
    let panelRow = document.getElementById("test-panel-row");
    if (!panelRow) {
      panelRow = document.createElement("tr");
      panelRow.id = "test-panel-row";
      // Named for what it holds, so that it is not taken for another row of the integration it reports on.
      panelRow.setAttribute("aria-label", "Test result");
      panelRow.appendChild(document.createElement("td"));
    }
    panelRow.firstElementChild.colSpan = row.cells.length;
    panelRow.firstElementChild.append(panel);
    row.after(panelRow);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    const button = event.detail.elt;
    const panel = document.getElementById("test-result");
    if (!isTestButton(button) || !panel) {
      return;
    }
    const row = button.closest("tr");
    if (row) {
      placeBelowRow(row, panel);
    }
    document.querySelectorAll("[data-replaced-by-test]").forEach(function (element) {
      element.hidden = true;
    });
  });

  // After the settle: until then the swapped form's fields still carry the classes of the form they replace.
  document.addEventListener("htmx:afterSettle", function (event) {
    const config = event.detail.requestConfig;
    const panel = document.getElementById("test-result");
    if (panel && panel.contains(event.target) && document.activeElement === panel) {
      // The run's section grew by a step: keep the person's result on screen.
      panel.scrollIntoView({ block: "nearest" });
    }
    if (!config || !isTestButton(config.elt)) {
      return;
    }
    const invalid = document.querySelector("#integration-form .is-invalid");
    const focus = event.detail.target.id === "integration-form" ? invalid : panel;
    if (!focus) {
      return;
    }
    if (focus === panel) {
      panel.tabIndex = -1;
    }
    focus.focus({ preventScroll: true });
    focus.scrollIntoView({ block: "nearest" });
  });
})();
