// Compose: recipient chips (checked and resolved by the server), autocomplete, streamed
// uploads with progress, and one submit per form. No build step, no framework.
(function () {
  "use strict";
  const form = document.getElementById("compose");
  if (!form) return;
  const send = document.getElementById("send");
  const errors = document.getElementById("compose-errors");
  const csrf = form.querySelector('input[name="csrf_token"]').value;
  let uploading = 0;
  let submitted = false;
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

  async function check(chip) {
    const url = "/ui/compose/resolve?entry=" + encodeURIComponent(chip.dataset.entry);
    let answer;
    try {
      answer = await (await fetch(url, {credentials: "same-origin"})).json();
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
    function close() { list.hidden = true; list.replaceChildren(); active = -1;
                       input.setAttribute("aria-expanded", "false"); }
    function take(value) { addChip(box, value); input.value = ""; close(); input.focus(); }
    input.addEventListener("keydown", e => {
      const items = [...list.querySelectorAll("li")];
      if (e.key === "ArrowDown" && items.length) {
        e.preventDefault(); active = (active + 1) % items.length;
        items.forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
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
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = input.value.trim();
      if (!q) { close(); return; }
      timer = setTimeout(async () => {
        const found = await (await fetch("/ui/compose/suggest?q=" + encodeURIComponent(q))).json();
        list.replaceChildren();
        active = -1;
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
    const pct = el("span", {class: "pct", "aria-live": "polite"}, "0 %");
    item.append(label, bar, pct);
    document.getElementById("uploads").appendChild(item);
    uploading += 1;
    refresh();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/ui/uploads");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = ev => {
      if (ev.lengthComputable) {
        const p = Math.floor(ev.loaded * 100 / ev.total);
        bar.value = p; pct.textContent = p + " %";
      }
    };
    xhr.onload = () => {
      uploading -= 1;
      if (xhr.status === 201) {
        const answer = JSON.parse(xhr.responseText);
        bar.value = 100; pct.textContent = "100 % uploaded";
        item.dataset.uploadId = answer.upload_id;
        // id|size|type|name: compose.py sends it, and lists it again if the form comes back.
        item.append(el("button", {type: "button", class: "remove", "aria-label": "Remove " + file.name}, "×"),
                    el("input", {type: "hidden", name: "attachment", value: `${answer.upload_id}|` +
                                 `${answer.size}|${file.type || "application/octet-stream"}|${file.name}`}));
        removable(item);
      } else {
        let why = String(xhr.status);
        try { why = JSON.parse(xhr.responseText).error || why; } catch (e) { /* not JSON */ }
        bar.remove();
        pct.textContent = "not attached: " + why;
        refuse(item, file, why);
      }
      refresh();
    };
    xhr.onerror = () => { uploading -= 1; bar.remove(); pct.textContent = "not attached: upload failed";
                          refuse(item, file, "upload failed"); refresh(); };
    xhr.send(file);
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
    submitted = true;  // a second click (or Enter) does not submit again
    setTimeout(refresh, 0);
  });
  refresh();
  form.dataset.ready = "true";  // chips, autocomplete and uploads are wired up
})();
