/* Copy buttons (docs/web.md, "Ticket page"): <button data-copy="ID" hidden> copies
   the value of the field with that id, and says how it went in the element with
   data-copy-status="ID", in the words the server wrote there in the reader's language
   (its data-copied and data-copy-failed attributes): no text of its own.

   Progressive enhancement: the text is on the page without this script, which only
   shows the buttons and gives them their action. It is a file of our own origin
   because the Content-Security-Policy runs no inline script (helpdesk/security.py).
   The clipboard API needs a secure context and the browser's consent; where it is
   missing or refused, the field's text is selected and copied the old way
   (execCommand), and if even that fails it stays selected for the keyboard. */
"use strict";

(function () {
  async function copy(field) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(field.value);
        return true;
      } catch (refused) {
        // Denied or unavailable: the selection below still works.
      }
    }
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (unsupported) {
      return false;
    }
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    const id = button.dataset.copy;
    const field = document.getElementById(id);
    if (!field) {
      continue;
    }
    const status = document.querySelector('[data-copy-status="' + CSS.escape(id) + '"]');
    button.hidden = false;
    button.addEventListener("click", async function () {
      const copied = await copy(field);
      if (status) {
        status.textContent = (copied ? status.dataset.copied : status.dataset.copyFailed) || "";
      }
    });
  }
})();
