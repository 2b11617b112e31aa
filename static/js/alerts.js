// The actor page: alert times in the viewer's own time zone, and the custom-range fields only when they apply.
// Without JavaScript the page still works: times stay in UTC and both range fields are always shown.
(function () {
  "use strict";

  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  const parts = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23", timeZoneName: "short",
  });

  // Same shape as the server's UTC text (2024-05-01 14:03:07), so a column reads the same either way.
  function local(moment) {
    const p = Object.fromEntries(parts.formatToParts(moment).map((part) => [part.type, part.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
  }

  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((element) => {
      const iso = element.getAttribute("datetime");
      const moment = new Date(iso);
      if (Number.isNaN(moment.getTime())) return;
      element.textContent = local(moment);
      element.title = iso;
    });
  }

  // From and Until are typed in local time; the form reads them in this zone.
  function sendTimeZone(root) {
    root.querySelectorAll("input[name=time_zone]").forEach((input) => { input.value = zone; });
  }

  function showCustomRangeWhenChosen(root) {
    root.querySelectorAll("form").forEach((form) => {
      const range = form.querySelector(".custom-range");
      const choices = form.querySelectorAll("input[name=window]");
      if (!range || !choices.length) return;
      const update = () => {
        const chosen = form.querySelector("input[name=window]:checked");
        const errors = range.querySelector(".invalid-feedback, .is-invalid");
        range.hidden = !errors && (!chosen || chosen.value !== "custom");
      };
      choices.forEach((choice) => choice.addEventListener("change", update));
      update();
    });
  }

  function setUp(root) {
    localiseTimes(root);
    sendTimeZone(root);
    showCustomRangeWhenChosen(root);
  }

  if (window.htmx) {
    window.htmx.onLoad(setUp); // the first page load and every swapped-in Alerts section
  } else {
    document.addEventListener("DOMContentLoaded", () => setUp(document));
  }
})();
