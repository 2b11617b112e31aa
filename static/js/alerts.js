// The actor page: alert times in the viewer's own time zone, and the custom-range fields only when they apply.
// Without JavaScript the page still works: times stay in UTC and the range fields are always shown.
(function () {
  "use strict";

  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  const parts = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23", timeZoneName: "short",
  });

  function nowrap(text) {
    const span = document.createElement("span");
    span.className = "text-nowrap";
    span.textContent = text;
    return span;
  }

  // Same shape as the server's UTC text (2024-05-01 14:03:07 UTC), with the zone named, so a column reads the
  // same either way; the line may break between the date and the time, never inside either.
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((element) => {
      const iso = element.getAttribute("datetime");
      const moment = new Date(iso);
      if (Number.isNaN(moment.getTime())) return;
      const p = Object.fromEntries(parts.formatToParts(moment).map((part) => [part.type, part.value]));
      element.replaceChildren(
        nowrap(`${p.year}-${p.month}-${p.day}`),
        " ",
        nowrap(`${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`),
      );
      element.title = iso;
    });
  }

  // From and Until are typed in local time; the forms read them in this zone, and say which it is.
  function sendTimeZone(root) {
    root.querySelectorAll("input[name=time_zone], input[name=tz]").forEach((input) => { input.value = zone; });
    if (zone) root.querySelectorAll(".viewer-zone").forEach((element) => { element.textContent = zone; });
  }

  // The Get alerts form: its From and Until only for a custom range (always, while they show an error).
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

  // The table's time filter: Active from and until only for a custom range; hidden, they are not sent either, so
  // an earlier range cannot linger in the address.
  function showTimeRangeWhenCustom(root) {
    root.querySelectorAll("form.alerts-filter").forEach((form) => {
      const period = form.querySelector("select[name=period]");
      const range = form.querySelector(".time-range");
      if (!period || !range) return;
      const update = () => {
        const invalid = range.querySelector("[aria-invalid=true]");
        const custom = period.value === "custom" || Boolean(invalid);
        range.hidden = !custom;
        range.querySelectorAll("input").forEach((input) => { input.disabled = !custom; });
      };
      period.addEventListener("change", update);
      update();
    });
  }

  function setUp(root) {
    localiseTimes(root);
    sendTimeZone(root);
    showCustomRangeWhenChosen(root);
    showTimeRangeWhenCustom(root);
  }

  if (window.htmx) {
    window.htmx.onLoad(setUp); // the first page load and every swapped-in Alerts section
  } else {
    document.addEventListener("DOMContentLoaded", () => setUp(document));
  }
})();
