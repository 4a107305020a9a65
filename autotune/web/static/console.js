// autotune console: live fragments, actions, the new-study form, live logs.
// Plain browser JavaScript, no build step. State-changing calls are JSON POSTs
// (the server refuses anything else: CSRF guard).
"use strict";

async function postJSON(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { ok: r.ok, status: r.status, data };
}

async function refresh(el) {
  const r = await fetch(el.dataset.refresh, { headers: { Accept: "text/html" } });
  if (r.ok) { el.innerHTML = await r.text(); loadSources(el); }
}

function loadSources(root) {
  root.querySelectorAll("pre[data-src]").forEach(async (pre) => {
    const r = await fetch(pre.dataset.src);
    if (r.ok) pre.textContent = await r.text();
  });
}

function liveFragments() {
  document.querySelectorAll("[data-refresh][data-every]").forEach((el) => {
    setInterval(() => { if (!document.hidden) refresh(el); }, 1000 * Number(el.dataset.every));
  });
  document.querySelectorAll("[data-refresh][data-events]").forEach((el) => {
    const es = new EventSource(el.dataset.events);
    es.addEventListener("status", (ev) => {
      const state = JSON.parse(ev.data);
      if (el.dataset.study.startsWith("l-") && state.id && !state.id.startsWith("l-")) {
        window.location.replace("/studies/" + state.id);
        return;
      }
      refresh(el);
    });
    es.addEventListener("end", () => { es.close(); refresh(el); });
  });
}

function actions() {
  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-post]");
    if (btn) {
      ev.preventDefault();
      if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
      btn.disabled = true;
      const r = await postJSON(btn.dataset.post, {});
      if (!r.ok) { alert((r.data && r.data.detail) || "failed: " + r.status); btn.disabled = false; return; }
      if (btn.dataset.go && r.data && r.data.id) { window.location = btn.dataset.go + r.data.id; return; }
      const live = btn.closest("[data-refresh]");
      if (live) refresh(live);
      return;
    }
    const copy = ev.target.closest("button.copy");
    if (copy) {
      ev.preventDefault();
      const text = document.getElementById(copy.dataset.copy).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text);
    }
  });
}

// --- trial page: live logs ------------------------------------------------------
function logs() {
  const pre = document.getElementById("log");
  if (!pre) return;
  let es = null;
  function open(name) {
    if (es) es.close();
    pre.textContent = "";
    pre.dataset.name = name;
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.log === name));
    es = new EventSource(`/api/trials/${pre.dataset.run}/logs/${name}/stream`);
    es.addEventListener("log", (ev) => {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += ev.data.endsWith("\n") ? ev.data : ev.data + "\n";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("end", () => { es.close(); pre.dataset.ended = "true"; });
    es.onerror = () => {
      if (!pre.textContent) pre.textContent = `(no ${name} log for this trial on this host)`;
      es.close();
    };
  }
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => open(t.dataset.log)));
  open(document.querySelector(".tab").dataset.log);
}

// --- new-study form ----------------------------------------------------------------
const GROUPS = ["model", "runtime", "deploy", "benchmark", "objective", "search"];

function splitList(text) {
  // "D(1024,256); N(480,240)/(300,150)" or "8, 32": commas inside () belong to the item.
  const out = []; let depth = 0; let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if ((ch === "," || ch === ";") && depth === 0) { if (cur.trim()) out.push(cur.trim()); cur = ""; } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function quote(s) { return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'"; }

class StudyForm {
  constructor(form) {
    this.form = form;
    this.choices = null;
    this.timer = null;
    this.savedName = null;
  }

  async init() {
    const r = await fetch("/api/choices");
    this.choices = await r.json();
    for (const g of GROUPS) {
      const sel = this.form.querySelector(`select[data-group="${g}"]`);
      for (const c of this.choices.groups[g]) sel.add(new Option(c, c));
      sel.value = this.choices.defaults.choices[g];
    }
    this.prefill(JSON.parse(this.form.dataset.start || "[]"));
    this.updateFlags();
    this.form.addEventListener("input", () => this.changed());
    this.form.addEventListener("change", (ev) => {
      if (ev.target.dataset.group === "runtime") this.updateFlags();
      this.changed();
    });
    document.getElementById("add-flag").addEventListener("click", () => { this.addRow("", ""); });
    this.form.addEventListener("submit", (ev) => { ev.preventDefault(); this.launch(); });
    document.getElementById("save-experiment").addEventListener("click", () => this.save());
    document.getElementById("launch-experiment").addEventListener("click", () => this.launch(this.savedName));
    this.changed();
  }

  prefill(args) {
    const extra = [];
    for (const a of args) {
      const eq = a.indexOf("=");
      const key = eq > 0 ? a.slice(0, eq) : a; const val = eq > 0 ? a.slice(eq + 1) : "";
      const sel = this.form.querySelector(`select[data-group="${key}"]`);
      if (sel) { sel.value = val; continue; }
      if (key.startsWith("params.")) { this.addRow(key.slice(7), val); continue; }
      const simple = { "deploy.clock": "f-clock", "search.n_trials": "f-n-trials", "tracking.experiment": "f-experiment", "tracking.uri": "f-uri" };
      if (simple[key]) { document.getElementById(simple[key]).value = val; continue; }
      extra.push(a);
    }
    document.getElementById("f-extra").value = extra.join("\n");
  }

  updateFlags() {
    const rt = this.form.querySelector('select[data-group="runtime"]').value;
    const table = (this.choices.flags[rt] || { flags: {}, aliases: {} });
    const dl = document.getElementById("flag-names");
    dl.innerHTML = "";
    for (const name of [...Object.keys(table.aliases), ...Object.keys(table.flags)]) {
      const spec = table.flags[name] || table.flags[table.aliases[name]] || {};
      const o = new Option((spec.help || "").slice(0, 80), name);
      dl.appendChild(o);
    }
  }

  addRow(flag, values) {
    const row = document.createElement("div");
    row.className = "field space-row";
    row.innerHTML = `<input class="flag" list="flag-names" placeholder="flag, e.g. mem-fraction-static">
      <input class="values" placeholder="values, e.g. 0.7,0.8"><button type="button" class="remove">remove</button>
      <div class="field-error"></div>`;
    row.querySelector(".flag").value = flag;
    row.querySelector(".values").value = values;
    row.querySelector(".remove").addEventListener("click", () => { row.remove(); this.changed(); });
    document.getElementById("space-rows").appendChild(row);
    this.changed();
    return row;
  }

  overrides() {
    const out = [];
    const d = this.choices.defaults;
    for (const g of GROUPS) {
      const v = this.form.querySelector(`select[data-group="${g}"]`).value;
      if (v && v !== d.choices[g]) out.push(`${g}=${v}`);
    }
    const val = (id) => document.getElementById(id).value.trim();
    if (val("f-clock")) out.push(`deploy.clock=${val("f-clock")}`);
    if (val("f-scenarios")) out.push(`benchmark.scenarios=[${splitList(val("f-scenarios")).map(quote).join(",")}]`);
    if (val("f-concurrency")) out.push(`benchmark.concurrency=[${splitList(val("f-concurrency")).join(",")}]`);
    for (const item of splitList(val("f-slo"))) {
      const m = item.match(/^([\w.]+)\s*(?:<=|=)\s*(.+)$/);
      if (m) out.push(`++objective.slo.${m[1]}=${m[2]}`); else out.push(`objective.slo=${item}`);
    }
    if (val("f-n-trials")) out.push(`search.n_trials=${val("f-n-trials")}`);
    document.querySelectorAll(".space-row").forEach((row) => {
      const flag = row.querySelector(".flag").value.trim();
      const values = row.querySelector(".values").value.trim();
      row.dataset.key = flag ? "params." + flag : "";
      if (flag && values) out.push(`params.${flag}=${values}`);
    });
    if (val("f-experiment")) out.push(`tracking.experiment=${val("f-experiment")}`);
    if (val("f-uri")) out.push(`tracking.uri=${val("f-uri")}`);
    for (const line of val("f-extra").split("\n")) if (line.trim()) out.push(line.trim());
    return out;
  }

  changed() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.validate(), 400);
  }

  showErrors(errors) {
    this.form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    this.form.querySelectorAll(".field.invalid").forEach((e) => e.classList.remove("invalid"));
    const fields = [...this.form.querySelectorAll(".field[data-key]")].filter((f) => f.dataset.key);
    for (const err of errors) {
      // The field whose key is the error's key or its longest prefix; else the general box.
      let best = null;
      for (const f of fields) {
        const k = f.dataset.key;
        if (err.field === k || err.field.startsWith(k + ".")) if (!best || k.length > best.dataset.key.length) best = f;
      }
      const slot = best ? best.querySelector(".field-error") : document.getElementById("errors");
      if (best) best.classList.add("invalid");
      const p = document.createElement("div");
      p.textContent = err.message;
      slot.appendChild(p);
    }
  }

  async validate() {
    const r = await postJSON("/api/validate", { overrides: this.overrides() });
    if (!r.data) return null;
    document.getElementById("command").textContent = r.data.command || "";
    this.showErrors(r.data.errors || []);
    document.getElementById("launch").disabled = !r.data.ok;
    document.getElementById("form-status").textContent = r.data.ok ? "valid" : `${r.data.errors.length} problem(s)`;
    return r.data;
  }

  async launch(experiment) {
    const body = experiment ? { experiment } : { overrides: this.overrides() };
    document.getElementById("form-status").textContent = "launching…";
    const r = await postJSON("/api/studies", body);
    if (r.ok) { window.location = "/studies/" + r.data.id; return; }
    const detail = (r.data && r.data.detail) || {};
    this.showErrors((detail.errors || [{ message: String(detail) }]).map((e) => ({ field: e.field || "", message: e.message })));
    document.getElementById("form-status").textContent = "not launched";
  }

  async save() {
    const name = document.getElementById("experiment-name").value.trim();
    const r = await postJSON("/api/experiments", { name, overrides: this.overrides() });
    const status = document.getElementById("form-status");
    if (r.ok) {
      this.savedName = r.data.experiment;
      document.getElementById("launch-experiment").disabled = false;
      document.getElementById("command").textContent = r.data.command;
      status.textContent = "saved " + r.data.path;
    } else {
      const detail = (r.data && r.data.detail) || {};
      status.textContent = (detail.errors || [{ message: String(detail) }]).map((e) => e.message).join("; ");
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveFragments();
  actions();
  logs();
  loadSources(document);
  const form = document.getElementById("study-form");
  if (form) new StudyForm(form).init();
});
