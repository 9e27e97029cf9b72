/* Live updates of the queue and the ticket page (docs/web.md, "Live updates").

   The page carries <div data-live-url data-live-since data-live-seconds>. Every few
   seconds this asks that URL whether anything changed since the time the server
   gave last; only then it fetches the page again and swaps in the elements marked
   data-live-region (matched by id). A region the person is typing in is left alone
   and tried again at the next poll, ticked check boxes (the queue's bulk
   selection) stay ticked, and an opened <details> (a mail's formatted version)
   stays open. Without this script the pages work as before: a
   reload shows the same. A file of our own origin, because the Content-Security-
   Policy runs no inline script (helpdesk/security.py). */
"use strict";

(function () {
  const root = document.querySelector("[data-live-url]");
  if (!root || !window.fetch || !window.DOMParser) {
    return;
  }
  const url = root.dataset.liveUrl;
  const seconds = Math.max(1, Number(root.dataset.liveSeconds) || 10);
  let since = root.dataset.liveSince;

  function typingIn(region) {
    const active = document.activeElement;
    return region.contains(active) && active.matches("textarea, select, input:not([type=checkbox]):not([type=radio])");
  }

  // A <details> by the element with an id it is in (a message's article) and its
  // place there, the same in the page and in the fresh copy of it.
  function detailsKey(details) {
    const holder = details.parentElement ? details.parentElement.closest("[id]") : null;
    if (!holder) {
      return null;
    }
    return holder.id + "#" + Array.prototype.indexOf.call(holder.querySelectorAll("details"), details);
  }

  // Whether every region could be brought up to date (one someone is typing in waits).
  async function refresh() {
    const page = await fetch(window.location.href, { credentials: "same-origin" });
    if (!page.ok) {
      return false;
    }
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
    const ticked = new Set(
      Array.from(document.querySelectorAll("input[type=checkbox]:checked"), (box) => box.name + "=" + box.value)
    );
    const opened = new Set(Array.from(document.querySelectorAll("details[open]"), detailsKey));
    let complete = true;
    for (const region of document.querySelectorAll("[data-live-region]")) {
      const replacement = fresh.getElementById(region.id);
      if (!replacement) {
        continue;
      }
      if (typingIn(region)) {
        complete = false;
        continue;
      }
      for (const box of replacement.querySelectorAll("input[type=checkbox]")) {
        box.checked = ticked.has(box.name + "=" + box.value);
      }
      for (const details of replacement.querySelectorAll("details")) {
        const key = detailsKey(details);
        if (key !== null && opened.has(key)) {
          details.open = true;
        }
      }
      region.replaceWith(document.adoptNode(replacement));
    }
    return complete;
  }

  async function poll() {
    try {
      const answer = await fetch(url + "?since=" + encodeURIComponent(since), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        const state = await answer.json();
        if (!state.changed || (await refresh())) {
          since = state.now;
        }
      }
    } catch (offline) {
      // The server is restarting or the network is gone: ask again next time.
    }
    window.setTimeout(poll, seconds * 1000);
  }

  window.setTimeout(poll, seconds * 1000);
})();
