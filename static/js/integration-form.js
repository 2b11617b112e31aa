// Add/Edit Integration: region presets fill Host, Auth URL, Resource and Cloud; the API flavour switches the defaults,
// the preset buttons and the permissions help. A value the user typed is never replaced without a click on a preset:
// switching flavour only updates fields that are empty or still hold a preset or default value.
(function () {
  "use strict";

  // The cloud too: GCC High and DoD share a host, and only the cloud tells their portals apart.
  const PRESET_FIELDS = {
    host: "presetHost", auth_url: "presetAuthUrl", resource: "presetResource", cloud: "presetCloud",
  };

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

  function presetButtons(form) {
    return form.querySelectorAll("[data-preset-host]");
  }

  // The preset the form's Host, Auth URL and Resource hold now, if any: the one last clicked when several match
  // (GCC High and DoD share a host), else the first that matches.
  function currentPresetKey(form) {
    const values = {};
    Object.keys(PRESET_FIELDS).forEach(function (field) {
      values[field] = form.elements.namedItem(field).value.trim();
    });
    const matching = Array.from(presetButtons(form)).filter(function (button) {
      return !button.closest("[hidden]") && Object.entries(PRESET_FIELDS).every(function ([field, key]) {
        return button.dataset[key] === values[field];
      });
    });
    const last = matching.find(function (button) { return button.dataset.presetKey === form.dataset.presetKey; });
    const chosen = last || matching[0];
    return chosen ? chosen.dataset.presetKey : "";
  }

  function markSelectedPreset(form) {
    const key = currentPresetKey(form);
    presetButtons(form).forEach(function (button) {
      const selected = key !== "" && button.dataset.presetKey === key && !button.closest("[hidden]");
      button.classList.toggle("active", selected);
      button.setAttribute("aria-pressed", selected ? "true" : "false");
    });
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
    form.dataset.presetKey = button.dataset.presetKey;
    markSelectedPreset(form);
  });

  document.addEventListener("input", function (event) {
    if (event.target.form && event.target.name in PRESET_FIELDS) {
      markSelectedPreset(event.target.form);
    }
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-role=api-flavour]")) {
      return;
    }
    const form = event.target.form;
    const flavours = presets();
    const chosen = flavours[event.target.value];
    // The same region in the new flavour when it has one (EU stays EU), else the flavour's default.
    const previousKey = currentPresetKey(form);
    const region = chosen.presets.find(function (preset) { return preset.key === previousKey; }) || chosen.default;
    Object.keys(PRESET_FIELDS).forEach(function (field) {
      fillIfUntouched(form.elements.namedItem(field), flavours, field, region[field]);
    });
    fillIfUntouched(form.elements.namedItem("api_version"), flavours, "api_version", chosen.api_version);
    form.querySelectorAll("[data-flavour]").forEach(function (element) {
      element.hidden = element.dataset.flavour !== event.target.value;
    });
    form.dataset.presetKey = region.key;
    markSelectedPreset(form);
  });

  // "More" opens the other regions and then reads "Less".
  function labelMoreToggle(event) {
    if (!event.target.matches("[id^=more-presets-]")) {
      return;
    }
    const toggle = document.querySelector('[data-bs-target="#' + event.target.id + '"]');
    if (toggle) {
      toggle.textContent = event.type === "shown.bs.collapse" ? "Less" : "More";
    }
  }
  document.addEventListener("shown.bs.collapse", labelMoreToggle);
  document.addEventListener("hidden.bs.collapse", labelMoreToggle);

  function markAll() {
    document.querySelectorAll("form").forEach(function (form) {
      if (presetButtons(form).length) {
        markSelectedPreset(form);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", markAll);
  document.addEventListener("htmx:afterSwap", markAll);
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

// Only the credential chosen is used: show the client secret or the certificate's fields, not both. Without
// JavaScript both stay visible, and the choice above them decides.
(function () {
  "use strict";

  function showCredential() {
    const chosen = document.querySelector("input[name=credential_type]:checked");
    const secret = document.getElementById("div_id_client_secret");
    const certificate = document.querySelector("[data-role=certificate-fields]");
    if (chosen && secret && certificate) {
      secret.hidden = chosen.value === "certificate";
      certificate.hidden = chosen.value !== "certificate";
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "credential_type") {
      showCredential();
    }
  });
  document.addEventListener("DOMContentLoaded", showCredential);
  document.addEventListener("htmx:afterSwap", showCredential);
})();
