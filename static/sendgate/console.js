// Sendgate console behaviour. No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";

// "Use this server" under a send-as address: copy the suggested SMTP server into the form.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-fill-server]");
  if (!button || !button.form) return;
  const form = button.form;
  form.elements.smtp_host.value = button.dataset.host;
  form.elements.smtp_port.value = button.dataset.port;
  form.elements.smtp_security.value = button.dataset.security;
});

// A passkey was added on the security page (django-otp-webauthn's script): show it in the list.
document.addEventListener("otp_webauthn.register_complete", () => window.location.reload());

// Busy states. A form (or one of its submit buttons) with data-busy="Sending…" posts to the
// server and waits for it: once submitted, its submit buttons are disabled, the one pressed says
// what is happening, and the form is aria-busy, so nobody submits it twice (a second connection
// test would use up another of the hourly tests; a second click on Send, a second message).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || event.defaultPrevented) return;
  const submitter = event.submitter;
  const label = (submitter && submitter.dataset.busy) || form.dataset.busy;
  if (!label) return;
  if (form.getAttribute("aria-busy") === "true") {
    event.preventDefault(); // already on its way
    return;
  }
  form.setAttribute("aria-busy", "true");
  // Disabled once the browser has read the form: a button disabled during this event would
  // leave its own name=value (which action, which provider) out of what is sent.
  setTimeout(() => {
    for (const button of form.querySelectorAll("button:not([type=button])")) {
      button.dataset.busyWas = button.textContent;
      button.disabled = true;
    }
    if (submitter && submitter.form === form && submitter.tagName === "BUTTON") {
      submitter.textContent = label;
    }
  });
});

// A page restored from the back/forward cache is shown as it was left: busy. Make it usable.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const form of document.querySelectorAll("form[aria-busy=true]")) {
    form.removeAttribute("aria-busy");
    for (const button of form.querySelectorAll("button[data-busy-was]")) {
      button.textContent = button.dataset.busyWas;
      delete button.dataset.busyWas;
      button.disabled = false;
    }
  }
});
