// Form errors, summarised at the top of their form with the focus moved there, so a user who
// submitted from the bottom of a long page (or a screen reader user) learns what went wrong
// without hunting for it. Each entry links to its field. A static file: the CSP forbids inline
// script. The heading comes translated from the page (<body data-error-summary>).
"use strict";

(() => {
  const heading = () => document.body.dataset.errorSummary || "";

  function entries(form) {
    const items = [];
    for (const list of form.querySelectorAll(".errorlist")) {
      if (list.closest(".error-summary")) continue;
      // Django names a field's error list "<field id>_error".
      const fieldId = list.id && list.id.endsWith("_error") ? list.id.slice(0, -6) : "";
      const label = fieldId ? form.querySelector(`label[for="${CSS.escape(fieldId)}"]`) : null;
      for (const error of list.querySelectorAll("li")) {
        const text = error.textContent.trim();
        if (!text) continue;
        items.push({ fieldId, label: label ? label.textContent.trim() : "", text });
      }
    }
    return items;
  }

  function summarise(form) {
    const old = form.querySelector(":scope > .error-summary");
    const items = entries(form);
    const key = items.map((item) => `${item.fieldId}:${item.text}`).join("\n");
    if (old && old.dataset.key === key) return null;
    if (old) old.remove();
    if (!items.length) return null;
    const summary = document.createElement("div");
    summary.className = "error-summary";
    summary.tabIndex = -1;
    summary.dataset.key = key;
    const title = document.createElement("p");
    title.className = "error-summary-title";
    title.textContent = heading();
    const list = document.createElement("ul");
    for (const item of items) {
      const li = document.createElement("li");
      const text = item.label ? `${item.label}: ${item.text}` : item.text;
      if (item.fieldId && document.getElementById(item.fieldId)) {
        const link = document.createElement("a");
        link.href = `#${item.fieldId}`;
        link.textContent = text;
        li.append(link);
      } else {
        li.textContent = text;
      }
      list.append(li);
    }
    summary.append(title, list);
    form.prepend(summary);
    return summary;
  }

  function summariseAll(root, focus) {
    const forms = root.matches && root.matches("form") ? [root] : [...root.querySelectorAll("form")];
    const enclosing = root.closest && root.closest("form");
    if (enclosing && !forms.includes(enclosing)) forms.push(enclosing);
    let first = null;
    for (const form of forms) {
      const summary = summarise(form);
      first = first || summary;
    }
    if (first && focus) first.focus();
  }

  // A link in the summary moves the focus into its field, not only the scroll position.
  document.addEventListener("click", (event) => {
    const link = event.target.closest(".error-summary a[href^='#']");
    if (!link) return;
    const field = document.getElementById(link.getAttribute("href").slice(1));
    if (field) {
      event.preventDefault();
      field.focus();
    }
  });

  document.addEventListener("DOMContentLoaded", () => summariseAll(document, true));
  // A live part (the connection test's result) that brings new errors gets the same treatment.
  document.addEventListener("htmx:afterSettle", (event) => summariseAll(event.target, true));
})();
