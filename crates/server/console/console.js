// Cairn's admin console: one page over the public API (docs/api/openapi.json), nothing else.
//
// Security rules this file keeps (docs/console.md):
// - the token lives in the `session` variable only: never in localStorage, sessionStorage,
//   cookies or the URL; reloading the page signs out;
// - every value that comes from the server (paths, names, ids) reaches the page through
//   `textContent` or attributes set by `setAttribute`, never through HTML parsing;
// - every call is a same-origin `fetch` with the bearer token; what the token's capabilities
//   do not allow, the server refuses, and the console shows the refusal.
"use strict";

(function () {
  let session = null; // { token, tenant, user, role }
  let lastEvents = []; // the activity page's current results, for event detail

  const $ = (id) => document.getElementById(id);

  // Builds an element; string children become text nodes (never parsed as HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "onsubmit") node.addEventListener("submit", v);
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children.flat()) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, text) {
      super(`${status} ${text.trim()}`);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${session.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(`/v1/tenants/${encodeURIComponent(session.tenant)}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    });
    if (!resp.ok) throw new ApiError(resp.status, await resp.text());
    const type = resp.headers.get("content-type") || "";
    if (resp.status === 204) return null;
    return type.includes("json") ? resp.json() : resp.text();
  }

  // A call with raw bytes in and out (escrow recovery takes a 32-byte key, returns an envelope).
  async function apiBytes(method, path, bytes) {
    const resp = await fetch(`/v1/tenants/${encodeURIComponent(session.tenant)}${path}`, {
      method,
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/octet-stream" },
      body: bytes,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    });
    if (!resp.ok) throw new ApiError(resp.status, await resp.text());
    return new Uint8Array(await resp.arrayBuffer());
  }

  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  function fromHex(hex) {
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
    return new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
  }

  // The tenant a PASETO v4.public token names: its payload is readable (signed, not
  // encrypted). Only a convenience for the sign-in form; the server decides.
  function tenantOf(token) {
    try {
      const body = token.trim().split(".")[2];
      const bin = atob(body.replace(/-/g, "+").replace(/_/g, "/"));
      const claims = JSON.parse(bin.slice(0, bin.length - 64));
      return typeof claims.tid === "string" ? claims.tid : "";
    } catch (_) {
      return "";
    }
  }

  function page(title, ...content) {
    const p = $("page");
    p.replaceChildren(el("h2", {}, title), ...content);
    p.hidden = false;
  }

  function failure(e) {
    return el("p", { class: "error", role: "alert" }, e instanceof ApiError && e.status === 403
      ? "Refused: this token's capabilities do not allow it (403)."
      : `Failed: ${e.message}`);
  }

  const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—");
  const fmtBytes = (n) => {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  };
  // A process with a pid is OCSF's actor.process; one known only by name or path is
  // unmapped.cairn_process (OCSF 1.1.0's process needs a pid or uid).
  const processOf = (e) => {
    const p = e.actor.process;
    if (p) return `${p.name || (p.file ? p.file.name : "?")} (pid ${p.pid})`;
    const u = e.unmapped && e.unmapped.cairn_process;
    return u ? (u.name || u.path) : "—";
  };
  const exposureOf = (e) => (e.unmapped && e.unmapped.cairn_exposure ? e.unmapped.cairn_exposure : null);
  const backupOf = (e) => (e.unmapped && e.unmapped.cairn_backup ? e.unmapped.cairn_backup : null);

  // ---- activity -------------------------------------------------------------------------------

  const ACTIVITIES = [["", "any"], ["1", "Create"], ["2", "Read"], ["3", "Update"], ["4", "Delete"], ["5", "Rename"]];
  const EXPOSURES = [["", "any"], ["removable_media", "removable media"], ["cloud_sync", "cloud sync"],
    ["browser_download", "browser download"], ["browser_upload", "browser upload"], ["network_share", "network share"]];

  function select(id, options) {
    return el("select", { id }, options.map(([v, t]) => el("option", { value: v }, t)));
  }

  function activityPage() {
    const form = el("form", { class: "filters", id: "filters", onsubmit: (ev) => { ev.preventDefault(); search(null); } },
      el("label", {}, "From ", el("input", { id: "f-from", type: "datetime-local" })),
      el("label", {}, "To ", el("input", { id: "f-to", type: "datetime-local" })),
      el("label", {}, "User ", el("input", { id: "f-user", size: 10 })),
      el("label", {}, "Device ", el("input", { id: "f-device", size: 16 })),
      el("label", {}, "Path starts with ", el("input", { id: "f-path", size: 24 })),
      el("label", {}, "Activity ", select("f-activity", ACTIVITIES)),
      el("label", {}, "Exposure ", select("f-exposure", EXPOSURES)),
      el("button", { type: "submit", id: "search" }, "Search"));
    page("Activity", form, el("div", { id: "results" }));
    search(null);
  }

  function query(after) {
    const q = new URLSearchParams();
    const ns = (id) => {
      const v = $(id).value;
      return v ? String(BigInt(Date.parse(`${v}Z`)) * 1000000n) : null;
    };
    const put = (k, v) => { if (v) q.set(k, v); };
    put("from", ns("f-from"));
    put("to", ns("f-to"));
    put("user", $("f-user").value.trim());
    put("device", $("f-device").value.trim());
    put("path_prefix", $("f-path").value);
    put("activity", $("f-activity").value);
    put("exposure", $("f-exposure").value);
    put("after", after);
    q.set("limit", "200");
    return q.toString();
  }

  async function search(after) {
    const out = $("results");
    out.replaceChildren(el("p", { class: "muted" }, "Searching…"));
    let result;
    try {
      result = await api("GET", `/events?${query(after)}`);
    } catch (e) {
      out.replaceChildren(failure(e));
      return;
    }
    lastEvents = result.events;
    const rows = result.events.map((e, i) => {
      const x = exposureOf(e);
      return el("tr", { "data-event": i },
        el("td", {}, fmtTime(e.time)),
        el("td", {}, e.activity_name),
        el("td", { class: "path" }, el("a", { href: `#/event/${i}`, class: "event-link" }, e.file.path)),
        el("td", {}, e.actor.user.uid),
        el("td", {}, e.device.uid),
        el("td", {}, x ? x.kind.replace(/_/g, " ") : ""),
        el("td", {}, fmtBytes(e.file.size)));
    });
    out.replaceChildren(
      el("div", { class: "panels" },
        el("div", { class: "panel" }, el("h3", {}, "Timeline"), timeline(result.events)),
        el("div", { class: "panel" }, el("h3", {}, "By exposure vector"), breakdown(result.events))),
      el("p", { class: "muted", id: "count" }, `${result.events.length} events on this page`),
      el("table", { id: "events" },
        el("thead", {}, el("tr", {}, ["Time", "Activity", "Path", "User", "Device", "Exposure", "Size"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)),
      ...(result.next ? [el("button", { type: "button", id: "next", class: "secondary", onclick: () => search(result.next) }, "Next page")] : []));
  }

  // Event counts over time: 24 equal buckets between the first and the last event shown.
  function timeline(events) {
    const W = 480, H = 110, N = 24;
    const chart = svg("svg", { class: "chart", id: "timeline", viewBox: `0 0 ${W} ${H + 16}`, width: "100%", role: "img" });
    if (!events.length) {
      chart.append(svg("text", { x: 4, y: 20 }, "no events"));
      return chart;
    }
    const times = events.map((e) => e.time);
    const lo = Math.min(...times), hi = Math.max(...times);
    const span = Math.max(hi - lo, 1);
    const counts = new Array(N).fill(0);
    for (const t of times) counts[Math.min(N - 1, Math.floor(((t - lo) / span) * N))] += 1;
    const max = Math.max(...counts);
    counts.forEach((c, i) => {
      const h = Math.round((c / max) * H);
      chart.append(svg("rect", { x: i * (W / N) + 1, y: H - h, width: W / N - 2, height: h, "data-count": c },
        svg("title", {}, `${c} events`)));
    });
    chart.append(svg("text", { x: 0, y: H + 13 }, fmtTime(lo)));
    chart.append(svg("text", { x: W, y: H + 13, "text-anchor": "end" }, fmtTime(hi)));
    return chart;
  }

  function breakdown(events) {
    const counts = new Map();
    for (const e of events) {
      const x = exposureOf(e);
      const k = x ? x.kind.replace(/_/g, " ") : "none";
      counts.set(k, (counts.get(k) || 0) + 1);
    }
    return el("table", { id: "exposures" }, el("tbody", {},
      [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => el("tr", {}, el("td", {}, k), el("td", {}, n)))));
  }

  function eventPage(index) {
    const e = lastEvents[index];
    if (!e) {
      page("Event", el("p", {}, "Not in the current results: search again."));
      return;
    }
    const fields = [
      ["Event id", e.metadata.uid],
      ["Observed", fmtTime(e.time)],
      ["Received", fmtTime(e.metadata.logged_time)],
      ["Activity", e.activity_name],
      ["Path", e.file.path],
      ["Name", e.file.name],
      ["Size", e.file.size === undefined ? "—" : `${e.file.size} bytes`],
      ["Modified", fmtTime(e.file.modified_time)],
      ["Owner", e.file.owner ? e.file.owner.name : "—"],
      ["User", e.actor.user.uid],
      ["Process", processOf(e)],
      ["Device", e.device.uid],
      ["Tenant", e.metadata.tenant_uid],
    ];
    // Hashes the server keyed for this tenant (docs/format/events.md §4.1) are named as such:
    // they match the same file across the tenant, not a public hash list.
    const hashNames = {
      "cairn-tenant-keyed-sha256-v1": "SHA-256 (tenant-keyed)",
      "cairn-tenant-keyed-blake3-v1": "BLAKE3 (tenant-keyed)",
    };
    for (const h of e.file.hashes || []) fields.push([hashNames[h.algorithm] || h.algorithm, h.value]);
    const x = exposureOf(e);
    if (x) fields.push(["Exposure", `${x.kind.replace(/_/g, " ")}: ${x.destination}`]);
    const b = backupOf(e);
    const link = b
      ? el("p", {}, "Backed-up version: ",
        el("a", { id: "backup-link", href: `#/archives/${encodeURIComponent(e.actor.user.uid)}/${b.snapshot_id}` },
          `snapshot ${b.snapshot_id.slice(0, 16)}…, file version ${b.file_version}`))
      : el("p", { class: "muted" }, "No backed-up version of this file.");
    page("Event",
      el("dl", { class: "fields", id: "event-fields" }, fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      link,
      el("h3", {}, "As stored (OCSF)"),
      el("pre", { id: "event-json" }, JSON.stringify(e, null, 2)));
  }

  // ---- devices --------------------------------------------------------------------------------

  async function devicesPage() {
    page("Devices", el("p", { class: "muted" }, "Loading…"));
    let devices;
    try {
      devices = await api("GET", "/devices");
    } catch (e) {
      page("Devices", failure(e));
      return;
    }
    const rows = devices.map((d) => {
      const cell = el("td", {});
      if (d.state !== "deauthorized") {
        const ask = el("button", { type: "button", class: "danger deauthorize", "data-device": d.id }, "Deauthorize");
        ask.addEventListener("click", () => {
          const confirm = el("button", { type: "button", class: "danger confirm-deauthorize", "data-device": d.id }, `Confirm: deauthorize ${d.name}`);
          const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
          cancel.addEventListener("click", () => cell.replaceChildren(ask));
          confirm.addEventListener("click", async () => {
            try {
              await api("POST", `/devices/${encodeURIComponent(d.id)}/deauthorize`);
              devicesPage();
            } catch (e) {
              cell.replaceChildren(failure(e));
            }
          });
          cell.replaceChildren(confirm, " ", cancel);
        });
        cell.append(ask);
      }
      return el("tr", { "data-device": d.id },
        el("td", {}, d.name), el("td", {}, d.user), el("td", { class: "path" }, d.id),
        el("td", { class: "state" }, d.state), el("td", {}, fmtTime(d.last_seen_unix * 1000)),
        el("td", {}, d.agent_version || "—"), el("td", {}, fmtBytes(d.archive_bytes)),
        el("td", {}, d.last_backup_unix ? `last ${fmtTime(d.last_backup_unix * 1000)}` : "no backup yet"), cell);
    });
    page("Devices", el("table", { id: "devices" },
      el("thead", {}, el("tr", {}, ["Name", "User", "Id", "State", "Last seen", "Agent", "Archive", "Backup", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
  }

  // ---- archives -------------------------------------------------------------------------------

  async function archivesPage(user, highlight) {
    let users;
    try {
      users = await api("GET", "/users");
    } catch (e) {
      page("Archives", failure(e));
      return;
    }
    const pick = el("select", { id: "archive-user" }, users.map((u) => el("option", { value: u.id }, u.id)));
    if (user) pick.value = user;
    pick.addEventListener("change", () => { location.hash = `#/archives/${encodeURIComponent(pick.value)}`; });
    const body = el("div", { id: "archive" });
    page("Archives", el("label", {}, "User ", pick), body);
    if (!pick.value) return;
    try {
      const who = encodeURIComponent(pick.value);
      const [a, plan, state] = await Promise.all([api("GET", `/users/${who}/archive`),
        api("GET", `/users/${who}/retention/plan`), api("GET", `/users/${who}/retention`)]);
      const verdicts = new Map(plan.series.flatMap((s) => s.snapshots).map((v) => [v.id, v]));
      const fate = (id) => {
        const v = verdicts.get(id);
        if (!v) return "—";
        return v.keep ? `kept (${v.reasons.join(", ").replace(/_/g, " ")})` : "past retention";
      };
      const health = a.health === "damaged"
        ? el("p", { class: "error", id: "archive-health" },
          `Damaged since ${fmtTime(a.damage.since_unix * 1000)}: ${a.damage.detail}. ` +
          `${a.damage.lost_records} acknowledged records lost in all. Its devices refuse a history shorter than the one they wrote; an operator should look into it (server archive clear-damage).`)
        : el("p", { id: "archive-health" }, "Health: no acknowledged data found missing.");
      body.replaceChildren(
        health,
        el("p", {}, `Stored: ${fmtBytes(a.stored_bytes)} (sealed, as uploaded; the server cannot read it).`),
        retentionPanel(pick.value, plan, state),
        el("table", { id: "snapshots" },
          el("thead", {}, el("tr", {}, ["Snapshot", "Received", "From device", "Record size", "Retention"].map((h) => el("th", {}, h)))),
          el("tbody", {}, a.snapshots.map((s) => el("tr", s.id === highlight ? { class: "current", id: "highlighted" } : {},
            el("td", { class: "path" }, s.id), el("td", {}, fmtTime(s.received_unix ? s.received_unix * 1000 : 0)),
            el("td", {}, s.device || "—"), el("td", {}, fmtBytes(s.bytes)), el("td", { class: "fate" }, fate(s.id)))))));
    } catch (e) {
      body.replaceChildren(failure(e));
    }
  }

  // The policy a user's archive follows, its legal holds (placed and lifted here), and which
  // snapshots are past retention (the server's plan: nothing is forgotten by showing it).
  const RULES = [["keep_last", "last"], ["keep_within_days", "days of everything"], ["keep_hourly", "hourly"],
    ["keep_daily", "daily"], ["keep_weekly", "weekly"], ["keep_monthly", "monthly"], ["keep_yearly", "yearly"]];
  const describe = (p) => RULES.filter(([k]) => p[k] > 0).map(([k, name]) => `${p[k]} ${name}`).join(", ") || "the newest snapshot only";

  // The policy editor: the user's override, or the tenant's policy. Keeping more takes effect at
  // once; keeping less under any rule waits out the server's delay (shown as pending).
  function policyForm(user, state, out) {
    const inputs = RULES.map(([k]) => el("input", { type: "number", min: state.floor[k], max: 36500, id: `policy-${k}`, value: state.policy[k], required: "" }));
    const save = (path) => async (ev) => {
      ev.preventDefault();
      const body = Object.fromEntries(RULES.map(([k], i) => [k, Number(inputs[i].value)]));
      try {
        const next = await api("PUT", path, body);
        await archivesPage(user);
        ($("policy-out") || out).replaceChildren(el("p", { id: "policy-result" }, next.pending
          ? `Saved: it keeps less, so it takes effect on ${fmtTime(next.pending_from_unix * 1000)}; until then the current policy applies.`
          : "Saved: in effect now."));
      } catch (e) {
        out.replaceChildren(failure(e));
      }
    };
    const tenantButton = el("button", { type: "button", class: "secondary", id: "policy-tenant" }, "Save as the tenant's policy");
    tenantButton.addEventListener("click", save("/retention"));
    return el("form", { id: "policy-form", class: "filters", onsubmit: save(`/users/${encodeURIComponent(user)}/retention`) },
      RULES.map(([k, name], i) => el("label", {}, `${name} `, inputs[i])),
      el("button", { type: "submit" }, "Save as this user's policy"), tenantButton);
  }

  function retentionPanel(user, plan, state) {
    const p = plan.policy;
    const out = el("p", { id: "hold-result" });
    const policyOut = el("div", { id: "policy-out" });
    const pending = state.pending
      ? el("p", { class: "error", id: "policy-pending" }, `Pending: from ${fmtTime(state.pending_from_unix * 1000)} it keeps ${describe(state.pending)} (a change that keeps less waits).`)
      : null;
    const holds = el("ul", { id: "holds" }, plan.holds.length ? plan.holds.map((h) => {
      const lift = el("button", { type: "button", class: "secondary lift-hold", "data-hold": h.id }, "Lift");
      lift.addEventListener("click", async () => {
        try {
          await api("POST", `/holds/${encodeURIComponent(h.id)}/lift`);
          archivesPage(user);
        } catch (e) {
          out.replaceChildren(failure(e));
        }
      });
      return el("li", { class: "hold" }, `On hold since ${fmtTime(h.placed_unix * 1000)} (${h.device ? `device ${h.device}` : "every device"}), placed by ${h.placed_by}: ${h.reason} `, lift);
    }) : [el("li", { class: "muted" }, "No legal hold.")]);
    const devices = plan.series.map((s) => s.device).filter((d) => d);
    const form = el("form", { id: "hold-form", class: "filters", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { user, reason: $("hold-reason").value };
      if ($("hold-device").value) body.device = $("hold-device").value;
      try {
        await api("POST", "/holds", body);
        archivesPage(user);
      } catch (e) {
        out.replaceChildren(failure(e));
      }
    } },
    el("label", {}, "Reason ", el("input", { id: "hold-reason", size: 40, maxlength: 1000, required: "" })),
    el("label", {}, "Covers ", el("select", { id: "hold-device" }, [el("option", { value: "" }, "every device")]
      .concat(devices.map((d) => el("option", { value: d }, `device ${d}`))))),
    el("button", { type: "submit" }, "Place legal hold"));
    return el("div", { class: "panel", id: "retention" },
      el("h3", {}, "Retention"),
      el("p", { id: "policy" }, `Policy (${plan.source}): keeps ${describe(p)}. ` +
        `${plan.forgotten} of ${plan.kept + plan.forgotten} snapshots are past retention; a legal hold keeps everything it covers.`),
      pending, policyForm(user, state, policyOut), policyOut,
      el("h3", {}, "Legal holds"), holds, form, out);
  }

  // ---- escrow ---------------------------------------------------------------------------------

  function escrowPage() {
    const out = el("div", { id: "escrow-result" });
    const form = el("form", { id: "escrow-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const user = $("escrow-user").value.trim();
      const key = fromHex($("escrow-to").value.trim());
      if (!key) {
        out.replaceChildren(el("p", { class: "error" }, "The public key must be 64 hex digits."));
        return;
      }
      try {
        const envelope = await apiBytes("POST", `/users/${encodeURIComponent(user)}/escrow/recover`, key);
        out.replaceChildren(el("p", {}, `Recovered (and audited): a ${envelope.length}-byte envelope that opens only with your X25519 key (hex):`),
          el("textarea", { id: "envelope", rows: 6, readonly: "" }, toHex(envelope)));
      } catch (e) {
        out.replaceChildren(failure(e));
      }
    } },
    el("label", {}, "User ", el("input", { id: "escrow-user", required: "" })),
    el("label", {}, "Your X25519 public key (64 hex digits) ", el("input", { id: "escrow-to", size: 70, required: "" })),
    el("button", { type: "submit" }, "Recover key"));
    page("Escrow recovery",
      el("ul", { class: "rules" },
        el("li", {}, "Standard mode: the server holds the key wrapped to the escrow authority; an administrator may recover it, re-wrapped to their own public key. Every attempt is audited."),
        el("li", {}, "Archive password mode: the escrowed copy is also locked by the user's password; the server alone cannot recover it."),
        el("li", {}, "Custom key mode: no escrowed copy exists."),
        el("li", {}, "A mode can only be strengthened (standard → archive password → custom key), never weakened.")),
      form, out);
  }

  // ---- audit ----------------------------------------------------------------------------------

  async function auditPage() {
    let log;
    try {
      log = await api("GET", "/audit");
    } catch (e) {
      page("Audit log", failure(e));
      return;
    }
    page("Audit log", el("table", { id: "audit" },
      el("thead", {}, el("tr", {}, ["Time", "Actor", "Action", "Target", "Outcome"].map((h) => el("th", {}, h)))),
      el("tbody", {}, log.map((a) => el("tr", {}, el("td", {}, fmtTime(a.at_unix * 1000)), el("td", {}, a.actor),
        el("td", {}, a.action), el("td", { class: "path" }, a.target), el("td", {}, a.outcome))))));
  }

  // ---- navigation -----------------------------------------------------------------------------

  function route() {
    if (!session) return;
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("current", a.getAttribute("href") === `#/${parts[0] || "activity"}`);
    }
    switch (parts[0]) {
      case "event": return eventPage(Number(parts[1]));
      case "devices": return devicesPage();
      case "archives": return archivesPage(parts[1], parts[2]);
      case "escrow": return escrowPage();
      case "audit": return auditPage();
      default: return activityPage();
    }
  }

  async function signIn(ev) {
    ev.preventDefault();
    const token = $("token").value.trim();
    const tenant = $("tenant").value.trim() || tenantOf(token);
    $("sign-in-error").textContent = "";
    session = { token, tenant };
    try {
      const who = await api("GET", "/whoami");
      const fields = Object.fromEntries(who.trim().split(" ").map((kv) => kv.split("=")));
      session.user = fields.user;
      session.role = fields.role;
    } catch (e) {
      session = null;
      $("sign-in-error").textContent = e instanceof ApiError && e.status === 401 ? "That token was refused." : `Sign-in failed: ${e.message}`;
      return;
    }
    $("token").value = "";
    $("sign-in").hidden = true;
    $("nav").hidden = false;
    $("who").textContent = `${session.user} (${session.role}) · ${session.tenant}`;
    if (!location.hash) location.hash = "#/activity";
    route();
  }

  function signOut() {
    session = null;
    lastEvents = [];
    $("page").replaceChildren();
    $("page").hidden = true;
    $("nav").hidden = true;
    $("sign-in").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("token").addEventListener("input", () => { $("tenant").placeholder = tenantOf($("token").value) || "read from the token"; });
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
  });
})();
