// closeloop: small progressive enhancements (the pages work without JavaScript).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("a[data-back]").forEach((a) => {
    a.addEventListener("click", (ev) => {
      if (history.length > 1) { ev.preventDefault(); history.back(); }
    });
  });
  // Disable a form's submit button while it is being sent (no double submissions).
  document.querySelectorAll("form[method=post]").forEach((form) => {
    form.addEventListener("submit", () => {
      form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; b.textContent += "…"; });
    });
  });
});
