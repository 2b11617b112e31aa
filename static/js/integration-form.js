// Add/Edit Integration: region presets fill Host, Auth URL and Resource; the API flavour switches the defaults, the
// preset buttons and the permissions help. A value the user typed is never replaced without a click on a preset:
// switching flavour only updates fields that are empty or still hold a preset or default value.
(function () {
  "use strict";

  const PRESET_FIELDS = { host: "presetHost", auth_url: "presetAuthUrl", resource: "presetResource" };

  function presets() {
    return JSON.parse(document.getElementById("integration-presets").textContent);
  }

  function knownValues(flavours, field) {
    const values = new Set([""]);
    Object.values(flavours).forEach(function (flavour) {
      if (field === "api_version") {
        flavour.api_versions.forEach(function (version) { values.add(version); });
        values.add(flavour.api_version);
      } else {
        flavour.presets.forEach(function (preset) { values.add(preset[field]); });
      }
    });
    return values;
  }

  function fillIfUntouched(input, flavours, field, value) {
    if (input && knownValues(flavours, field).has(input.value.trim())) {
      input.value = value;
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-preset-host]");
    if (!button) {
      return;
    }
    const form = button.closest("form");
    Object.entries(PRESET_FIELDS).forEach(function ([field, key]) {
      form.elements.namedItem(field).value = button.dataset[key];
    });
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-role=api-flavour]")) {
      return;
    }
    const form = event.target.form;
    const flavours = presets();
    const chosen = flavours[event.target.value];
    Object.keys(PRESET_FIELDS).forEach(function (field) {
      fillIfUntouched(form.elements.namedItem(field), flavours, field, chosen.default[field]);
    });
    fillIfUntouched(form.elements.namedItem("api_version"), flavours, "api_version", chosen.api_version);
    form.querySelectorAll("[data-flavour]").forEach(function (element) {
      element.hidden = element.dataset.flavour !== event.target.value;
    });
  });
})();

// The Remote node choice matters only for a Remote integration: show it when Remote is chosen. Without JavaScript it
// simply stays visible.
(function () {
  "use strict";

  function showNodeChoice() {
    const field = document.getElementById("div_id_remote_node");
    const chosen = document.querySelector("input[name=location]:checked");
    if (field && chosen) {
      field.hidden = chosen.value !== "remote";
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "location") {
      showNodeChoice();
    }
  });
  document.addEventListener("DOMContentLoaded", showNodeChoice);
  document.addEventListener("htmx:afterSwap", showNodeChoice);
})();
