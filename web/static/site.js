// Progressive enhancement only: every page works without this file.
// The page's words for what scripts say, in its language (base.html, <body data-words>).
const words = JSON.parse(document.body.dataset.words || "{}");

// The browser's time zone, so that signed-out pages (and a new account) show times in it.
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && !document.cookie.split("; ").includes("tz=" + zone)) {
    document.cookie = `tz=${zone}; path=/; max-age=31536000; samesite=lax`;
  }
} catch {
  // no Intl: times stay in UTC, and say so
}
// Dismissible flash messages: the close button removes its alert.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".alert-close");
  if (button) {
    button.closest(".alert").remove();
  }
});

// Recovery codes: copy them, or save them as a file (the page shows them either way).
const codesActions = document.querySelector("[data-codes-actions]");
if (codesActions) {
  const list = document.getElementById("recovery-codes");
  const status = codesActions.querySelector("[data-codes-status]");
  const codes = () => [...list.querySelectorAll("code")].map((code) => code.textContent).join("\n") + "\n";
  codesActions.hidden = false;
  codesActions.querySelector("[data-copy-codes]").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(codes());
      status.textContent = words.copied;
    } catch {
      status.textContent = words.copy_refused;
    }
  });
  codesActions.querySelector("[data-download-codes]").addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([codes()], { type: "text/plain" }));
    link.download = "recovery-codes.txt";
    link.click();
    URL.revokeObjectURL(link.href);
    status.textContent = words.saved;
  });
}
