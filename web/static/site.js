// Progressive enhancement only: every page works without this file.
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
      status.textContent = "Copied.";
    } catch {
      status.textContent = "Your browser did not allow copying: select the codes instead.";
    }
  });
  codesActions.querySelector("[data-download-codes]").addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([codes()], { type: "text/plain" }));
    link.download = "recovery-codes.txt";
    link.click();
    URL.revokeObjectURL(link.href);
    status.textContent = "Saved as recovery-codes.txt.";
  });
}
