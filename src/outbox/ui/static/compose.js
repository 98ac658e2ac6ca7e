// Compose: recipient chips (checked and resolved by the server), autocomplete, streamed
// uploads with progress (queued under the server's limit of uploads at once), one submit
// per form, and a draft kept in this tab when the session expires. No build step, no
// framework.
(function () {
  "use strict";
  const form = document.getElementById("compose");
  if (!form) return;
  const send = document.getElementById("send");
  const errors = document.getElementById("compose-errors");
  const csrf = form.querySelector('input[name="csrf_token"]').value;
  const draft = window.OutboxDraft;  // compose-draft.js
  const MAX_WAITS = 60;  // 429 answers a file waits through before it is given up
  const maxUploads = Math.max(1, Number(form.dataset.maxUploads) || 1);
  const queue = [];  // uploads waiting for one of the maxUploads slots
  let streaming = 0;
  let uploading = 0;  // queued or streaming: Send waits for them
  let submitted = false;
  let confirmed = false;  // the session was found alive for this submit
  let waiting = false;  // a submit waits for the chips still being checked
  const checks = new WeakMap();  // chip -> the promise of its check
  const flushes = [];  // per chip box: turn the text still typed in it into chips

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function refresh() {
    const bad = [...form.querySelectorAll(".chip.invalid")];
    const problems = bad.map(c => `${c.dataset.entry}: ${c.dataset.error}`);
    if (uploading) problems.push("wait for the attachments to finish uploading");
    const outside = [...form.querySelectorAll(".chip.external")].flatMap(c => c.dataset.external.split(" "));
    const note = document.getElementById("compose-external");
    if (note && !document.getElementById("confirm-external")) {
      note.hidden = outside.length === 0;
      note.textContent = outside.length ? "Outside the internal domains: " + outside.join(", ") +
        ". You will be asked to confirm before it is sent." : "";
    }
    errors.hidden = bad.length === 0;
    errors.textContent = bad.length ? "Fix before sending: " + problems.join("; ") : "";
    // A chip still being checked does not disable Send: pressing the button blurs the box,
    // which makes a chip of its text, and a button disabled under the pointer gets no click.
    send.disabled = submitted || waiting || bad.length > 0 || uploading > 0;
  }

  function expired() {
    flushes.forEach(flush => flush());
    draft.save(form);
    draft.showExpired(document.getElementById("compose-session"));
  }

  async function check(chip) {
    const field = chip.closest(".chips").dataset.field;
    const url = "/ui/compose/resolve?field=" + field + "&entry=" + encodeURIComponent(chip.dataset.entry);
    let answer;
    try {
      const response = await fetch(url, {credentials: "same-origin"});
      if (draft.isSignIn(response)) {
        chip.classList.replace("pending", "unchecked");
        chip.querySelector(".why").textContent = " — not checked: your session expired";
        expired();
        refresh();
        return;
      }
      answer = await response.json();
    } catch (e) {
      answer = {ok: false, error: "could not be checked", members: [], via: ""};
    }
    chip.classList.remove("pending");
    if (answer.external && answer.external.length) {
      chip.classList.add("external");
      chip.dataset.external = answer.external.join(" ");
    }
    if (!answer.ok) {
      chip.classList.add("invalid");
      chip.dataset.error = answer.error;
      chip.querySelector(".why").textContent = " — invalid: " + answer.error;
    } else if (answer.via) {
      chip.querySelector(".via").textContent = answer.via;
      const toggle = el("button", {type: "button", "aria-expanded": "false",
                                   "aria-label": "Show members of " + chip.dataset.entry}, "▸ members");
      const list = el("ul", {class: "members", hidden: ""});
      answer.members.forEach(m => list.appendChild(el("li", {}, m)));
      toggle.addEventListener("click", () => {
        const open = list.hidden;
        list.hidden = !open;
        toggle.setAttribute("aria-expanded", String(open));
        toggle.textContent = open ? "▾ members" : "▸ members";
      });
      chip.insertBefore(toggle, chip.querySelector(".remove"));
      chip.appendChild(list);
    }
    refresh();
  }

  function addChip(box, entry, chip) {
    entry = entry.trim();
    if (!entry) return;
    chip = chip || el("span", {class: "chip pending"});
    chip.className = "chip pending";
    chip.dataset.entry = entry;
    chip.replaceChildren(el("span", {class: "entry"}, entry), el("span", {class: "via"}),
                         el("span", {class: "why"}));
    const remove = el("button", {type: "button", class: "remove", "aria-label": "Remove " + entry}, "×");
    remove.addEventListener("click", () => { chip.remove(); refresh(); });
    chip.appendChild(remove);
    chip.appendChild(el("input", {type: "hidden", name: box.dataset.field, value: entry}));
    if (!chip.parentNode) box.insertBefore(chip, box.querySelector(".chip-input"));
    refresh();
    checks.set(chip, check(chip));
  }

  function split(text) {
    return text.split(/[,;\n]+(?=(?:[^"]*"[^"]*")*[^"]*$)/);
  }

  form.querySelectorAll(".chips").forEach(box => {
    const input = box.querySelector(".chip-input");
    const list = document.getElementById(box.dataset.field + "-suggest");
    box.querySelectorAll(".chip").forEach(chip => addChip(box, chip.dataset.entry, chip));
    // Without this script the box itself is the field; with it, its chips are.
    input.removeAttribute("name");
    function flush() {
      if (input.value.trim()) { split(input.value).forEach(v => addChip(box, v)); input.value = ""; }
    }
    flushes.push(flush);
    let active = -1;
    let timer = null;
    // Closing also drops a suggestion still on its way: shown after Enter had made a chip
    // of the text, the list pushed Send down under a click (a flaky UI test in CI).
    function close() { clearTimeout(timer); timer = null;
                       list.hidden = true; list.replaceChildren(); active = -1;
                       input.setAttribute("aria-expanded", "false");
                       input.removeAttribute("aria-activedescendant"); }
    // The highlighted option is the input's active descendant: a screen reader reads it.
    function highlight(items, index) {
      active = index;
      items.forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
      input.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({block: "nearest"});
    }
    function take(value) { addChip(box, value); input.value = ""; close(); input.focus(); }
    input.addEventListener("keydown", e => {
      const items = [...list.querySelectorAll("li")];
      if (e.key === "ArrowDown" && items.length) {
        e.preventDefault(); highlight(items, (active + 1) % items.length);
      } else if (e.key === "ArrowUp" && items.length) {
        e.preventDefault(); highlight(items, active <= 0 ? items.length - 1 : active - 1);
      } else if (e.key === "Enter" || e.key === "," || e.key === ";") {
        e.preventDefault();
        if (active >= 0 && items[active]) take(items[active].dataset.value);
        else if (input.value.trim()) { flush(); close(); }
      } else if (e.key === "Backspace" && !input.value) {
        const chips = box.querySelectorAll(".chip");
        if (chips.length) { chips[chips.length - 1].remove(); refresh(); }
      } else if (e.key === "Escape") { close(); }
    });
    // At once, not after a delay, so the chip exists before a click on Send submits. A
    // suggestion is taken on mousedown, which keeps the focus here.
    input.addEventListener("blur", () => { flush(); close(); });
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = input.value.trim();
      if (!q) { close(); return; }
      const asked = timer = setTimeout(async () => {
        const response = await fetch("/ui/compose/suggest?q=" + encodeURIComponent(q));
        if (draft.isSignIn(response)) { expired(); return; }
        const found = await response.json();
        if (timer !== asked) return;  // closed or typed on meanwhile: this answer is stale
        list.replaceChildren();
        active = -1;
        input.removeAttribute("aria-activedescendant");
        found.forEach((s, i) => {
          const li = el("li", {role: "option", id: `${box.dataset.field}-opt-${i}`,
                               "aria-selected": "false"}, s.label);
          li.dataset.value = s.value;
          li.addEventListener("mousedown", e => { e.preventDefault(); take(s.value); });
          list.appendChild(li);
        });
        list.hidden = found.length === 0;
        input.setAttribute("aria-expanded", String(found.length > 0));
      }, 150);
    });
  });

  document.getElementById("files").addEventListener("change", e => {
    [...e.target.files].forEach(upload);
    e.target.value = "";
  });

  // An uploaded file's entry holds the form's field for it, so removing the entry drops it.
  function removable(item) {
    item.querySelector(".remove").addEventListener("click", () => { item.remove(); refresh(); });
  }
  document.querySelectorAll("#uploads li").forEach(removable);  // carried back with an error

  function refusal(file) {
    const max = Number(form.dataset.maxAttachment);
    const blocked = (form.dataset.blocked || "").split(",").filter(Boolean);
    const name = file.name.toLowerCase();
    if (max && file.size > max)
      return `over the limit of ${max.toLocaleString("en")} bytes (limits.max_attachment_size)`;
    const ext = blocked.find(b => name.endsWith(b.toLowerCase()));
    if (ext) return `files ending in ${ext} are blocked (limits.blocked_extensions)`;
    return "";
  }

  // A refused file's entry carries its notice in the form, so that the page the server
  // sends back after an error still names the file and why it was left out.
  function refuse(item, file, why) {
    item.classList.add("error");
    item.append(el("button", {type: "button", class: "remove",
                              "aria-label": "Dismiss the notice about " + file.name}, "×"),
                el("input", {type: "hidden", name: "refused", value: JSON.stringify(
                  {name: file.name, size: file.size.toLocaleString("en"), why: why})}));
    removable(item);
  }

  function upload(file) {
    const item = el("li", {class: "upload"});
    const label = el("span", {}, `${file.name} (${file.size.toLocaleString("en")} bytes) `);
    const refused = refusal(file);
    if (refused) {
      item.append(label, el("span", {class: "pct", role: "alert"}, "not attached: " + refused));
      refuse(item, file, refused);
      document.getElementById("uploads").appendChild(item);
      return;
    }
    const bar = el("progress", {max: "100", value: "0", "aria-label": "Upload of " + file.name});
    const pct = el("span", {class: "pct", "aria-live": "polite"}, "waiting");
    item.append(label, bar, pct);
    document.getElementById("uploads").appendChild(item);
    uploading += 1;
    refresh();
    queue.push({file, item, bar, pct, waits: 0});
    pump();
  }

  // At most maxUploads stream at once (the server's limits.max_uploads_in_flight): more
  // would be refused, so the rest wait their turn.
  function pump() {
    while (streaming < maxUploads && queue.length) stream(queue.shift());
  }

  function attached(job, answer) {
    const {file, item, bar, pct} = job;
    bar.value = 100; pct.textContent = "100 % uploaded";
    item.dataset.uploadId = answer.upload_id;
    // id|size|type|name: compose.py sends it, and lists it again if the form comes back.
    item.append(el("button", {type: "button", class: "remove", "aria-label": "Remove " + file.name}, "×"),
                el("input", {type: "hidden", name: "attachment", value: `${answer.upload_id}|` +
                             `${answer.size}|${file.type || "application/octet-stream"}|${file.name}`}));
    removable(item);
  }

  function notAttached(job, why) {
    job.bar.remove();
    job.pct.textContent = "not attached: " + why;
    refuse(job.item, job.file, why);
  }

  function done() {
    uploading -= 1;
    refresh();
    pump();
  }

  function stream(job) {
    streaming += 1;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/ui/uploads");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = ev => {
      if (ev.lengthComputable) {
        const p = Math.floor(ev.loaded * 100 / ev.total);
        job.bar.value = p; job.pct.textContent = p + " %";
      }
    };
    xhr.onload = () => {
      streaming -= 1;
      if (draft.isSignIn({status: xhr.status, url: xhr.responseURL})) {
        notAttached(job, "your session expired");
        expired();
      } else if (xhr.status === 201) {
        attached(job, JSON.parse(xhr.responseText));
      } else if (xhr.status === 429 && job.waits < MAX_WAITS) {
        // Another page of this user is uploading too: the file waits and goes again.
        job.waits += 1;
        job.bar.value = 0; job.pct.textContent = "waiting";
        const seconds = Number(xhr.getResponseHeader("Retry-After")) || 1;
        setTimeout(() => { queue.unshift(job); pump(); }, seconds * 1000);
        pump();
        return;
      } else {
        let why = String(xhr.status);
        try { why = JSON.parse(xhr.responseText).error || why; } catch (e) { /* not JSON */ }
        notAttached(job, why);
      }
      done();
    };
    xhr.onerror = async () => {
      streaming -= 1;
      // The server may close the connection on a refused body: ask what happened.
      if (await draft.signedIn()) notAttached(job, "upload failed");
      else { notAttached(job, "your session expired"); expired(); }
      done();
    };
    xhr.send(job.file);
  }

  form.addEventListener("submit", e => {
    flushes.forEach(flush => flush());  // typed but not yet a chip is a recipient too
    refresh();
    if (send.disabled) { e.preventDefault(); return; }
    const checking = [...form.querySelectorAll(".chip.pending")].map(chip => checks.get(chip));
    if (checking.length) {  // sent once every chip is checked; an invalid one blocks it
      e.preventDefault();
      waiting = true;
      refresh();
      Promise.all(checking).then(() => {
        waiting = false;
        refresh();
        if (!send.disabled) form.requestSubmit(e.submitter);
      });
      return;
    }
    if (!confirmed) {  // an expired session would lose the form to the sign-in page
      e.preventDefault();
      waiting = true;
      refresh();
      draft.signedIn().then(alive => {
        waiting = false;
        if (!alive) { expired(); refresh(); return; }
        confirmed = true;
        draft.forget();  // what it held is in the form now being sent
        refresh();
        form.requestSubmit(e.submitter);
      });
      return;
    }
    submitted = true;  // a second click (or Enter) does not submit again
    setTimeout(refresh, 0);
  });

  // Back to this page from the browser's cache: it may be sent again (a changed form
  // is a new message; the same form gives the one already queued).
  window.addEventListener("pageshow", e => {
    if (e.persisted) { submitted = false; confirmed = false; waiting = false; refresh(); }
  });

  // A draft kept when the session expired, back in a new Compose of the same user.
  draft.restore(form, addChip, document.getElementById("compose-draft"));
  refresh();
  form.dataset.ready = "true";  // chips, autocomplete and uploads are wired up
})();
