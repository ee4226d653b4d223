// Copy buttons: <button data-copy="ID" hidden> copies the text of the element ID. The button stays
// hidden where the clipboard cannot be used (no script, or a page that is not a secure context).
document.addEventListener("DOMContentLoaded", () => {
  if (!navigator.clipboard) return;
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    const done = document.querySelector(`[data-copied-for="${button.dataset.copy}"]`);
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(source.textContent.trim());
      if (done) done.hidden = false;
    });
  }
});
