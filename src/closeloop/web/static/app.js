// closeloop: small progressive enhancements (the pages work without JavaScript).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("a[data-back]").forEach((a) => {
    a.addEventListener("click", (ev) => {
      if (history.length > 1) { ev.preventDefault(); history.back(); }
    });
  });
  // Confirm irreversible actions (merge, go-live, close) before sending them.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => { if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); } });
  });
  // Disable a form's submit button while it is being sent (no double submissions); not for downloads.
  document.querySelectorAll("form[method=post]:not([data-download])").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (ev.defaultPrevented) { return; }
      form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; b.textContent += "…"; });
    });
  });
  // A running background job (bill run, reconciliation, import): poll its status, reload when it ends.
  const job = document.querySelector("[data-job][data-job-status=running]");
  if (job) {
    const elapsed = document.getElementById("job-elapsed");
    const poll = () => {
      fetch(job.dataset.job, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((s) => {
          if (elapsed) { elapsed.textContent = s.elapsed_seconds; }
          if (s.status === "done" || s.status === "failed") { window.location.reload(); } else { setTimeout(poll, 700); }
        })
        .catch(() => setTimeout(poll, 2000));
    };
    setTimeout(poll, 500);
  }
});
