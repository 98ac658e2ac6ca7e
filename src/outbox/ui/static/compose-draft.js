// The compose page's session and draft: an expired session is told apart from the other
// answers a script gets, and what was typed is kept in this tab (sessionStorage) until a
// new Compose of the same user gives it back. Never a file's content, never a token.
// Loaded before compose.js, which uses window.OutboxDraft.
window.OutboxDraft = (function () {
  "use strict";
  const SIGN_IN = "/ui/login";
  const KEY = "outbox.compose.draft";
  const TYPED = ["sender", "subject", "text", "html"];

  // An expired session answers a script with the sign-in page (a redirect followed) or 401.
  function isSignIn(response) {
    return response.status === 401 ||
      Boolean(response.url && new URL(response.url).pathname === SIGN_IN);
  }

  async function signedIn() {
    try {
      return !isSignIn(await fetch("/ui/compose/session", {credentials: "same-origin",
                                                             cache: "no-store"}));
    } catch (e) {
      return true;  // the network, not the session: the submit itself says what happened
    }
  }

  function entries(form, field) {
    return [...form.querySelectorAll(`.chips[data-field="${field}"] .chip`)].map(c => c.dataset.entry);
  }

  function save(form) {
    const draft = {user: form.dataset.user, to: entries(form, "to"), cc: entries(form, "cc"),
                   bcc: entries(form, "bcc"),
                   attachments: form.querySelectorAll('input[name="attachment"]').length};
    TYPED.forEach(name => { draft[name] = form.elements[name].value; });
    try { sessionStorage.setItem(KEY, JSON.stringify(draft)); } catch (e) { /* storage off */ }
  }

  function forget() {
    try { sessionStorage.removeItem(KEY); } catch (e) { /* storage off */ }
  }

  function showExpired(note) {
    if (!note.hidden) return;
    const link = document.createElement("a");
    link.href = `${SIGN_IN}?expired=1&next=${encodeURIComponent(location.pathname)}`;
    link.textContent = "sign in again";
    note.replaceChildren("Your session expired: ", link, " (your draft is kept).");
    note.hidden = false;
  }

  function isBlank(form) {
    return !form.querySelector(".chip") && TYPED.every(name => !form.elements[name].value);
  }

  // Into a blank form only: a form the server sent back (an error, a question) wins.
  function restore(form, addChip, note) {
    let draft = null;
    try { draft = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { /* none */ }
    if (!draft || draft.user !== form.dataset.user || !isBlank(form)) return;
    TYPED.forEach(name => { form.elements[name].value = draft[name] || ""; });
    form.querySelectorAll(".chips").forEach(box => {
      (draft[box.dataset.field] || []).forEach(entry => addChip(box, entry));
    });
    const files = draft.attachments
      ? ` Attach its ${draft.attachments} file(s) again: files are not kept.` : "";
    const discard = document.createElement("button");
    discard.type = "button";
    discard.id = "discard-draft";
    discard.textContent = "Discard the draft";
    discard.addEventListener("click", () => { forget(); location.assign(location.pathname); });
    note.replaceChildren("Your draft from before the sign-in is back." + files + " ", discard);
    note.hidden = false;
  }

  return {isSignIn, signedIn, save, forget, showExpired, restore};
})();
