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
