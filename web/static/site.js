// Progressive enhancement only: every page works without this file.
// Dismissible flash messages: the close button removes its alert.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".alert-close");
  if (button) {
    button.closest(".alert").remove();
  }
});
