// The operator console: a thin client of /admin/api. Every value from the server goes into the
// page through textContent (or SVG attributes), never as HTML. Over 400 lines: one script for
// one page without a build step; its sections (search, user page, trends, events, jobs,
// reconciliation) share the helpers at the top.
(function () {
  "use strict";
  var TOKEN_KEY = "authsync.adminToken";
  var SVG = "http://www.w3.org/2000/svg";
  var $ = function (id) { return document.getElementById(id); };
  var nextCursor = null;
  var detailFor = null;

  function AuthError(message) { this.message = message; }

  function token() { return window.sessionStorage.getItem(TOKEN_KEY); }

  // Calls the admin API with the stored token (or the session cookie when the console runs
  // inside the app). 401/403 bring back the sign-in card; other errors carry their code.
  function api(method, path) {
    var headers = { "Accept": "application/json" };
    var t = token();
    if (t) { headers["Authorization"] = "Bearer " + t; }
    return fetch("/admin/api" + path, { method: method, headers: headers, credentials: "same-origin" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          var error = (body && body.error) || {};
          if (resp.status === 401) { throw new AuthError(t ? "That token was not accepted." : null); }
          if (resp.status === 403 && error.code !== "cross_site_request") {
            throw new AuthError("This account is not an admin.");
          }
          if (!resp.ok) {
            var e = new Error(error.message || ("HTTP " + resp.status));
            e.code = error.code;
            throw e;
          }
          return body;
        });
      });
  }

  function showLogin(message) {
    $("console").hidden = true;
    $("search-form").hidden = true;
    $("login").hidden = false;
    $("sign-out").hidden = true;
    if (message) { $("login-message").textContent = message; }
  }

  function showConsole() {
    $("login").hidden = true;
    $("console").hidden = false;
    $("search-form").hidden = false;
    $("sign-out").hidden = !token();
  }

  function flash(text, ok) {
    var el = $("flash");
    el.textContent = text;
    el.className = "flash " + (ok ? "ok" : "err");
    el.hidden = false;
  }

  function failed(err) {
    if (err instanceof AuthError) { showLogin(err.message); return; }
    flash(err.message || String(err), false);
  }

  function say(id, text) {
    $(id).textContent = text || "";
    $(id).hidden = !text;
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== null && text !== undefined) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function cell(row, text, cls) { return row.appendChild(el("td", text, cls)); }

  // A row action; `onClick(event, button)`. `why`: it is disabled, and says so.
  function button(className, label, onClick, why) {
    var b = el("button", label, className);
    b.type = "button";
    if (why) { b.disabled = true; b.title = why; b.setAttribute("aria-label", label + " (" + why + ")"); }
    b.addEventListener("click", function (e) { onClick(e, b); });
    return b;
  }

  function badge(state) { return el("span", state, "badge badge-" + state); }

  function emptyRow(tbody, text, cols) {
    var tr = document.createElement("tr");
    cell(tr, text, "muted").colSpan = cols;
    tbody.appendChild(tr);
  }

  // ---- times: relative, the absolute time on hover ---------------------------------------
  function relative(iso) {
    var d = new Date(iso);
    if (isNaN(d)) { return iso; }
    var s = (Date.now() - d.getTime()) / 1000;
    var ahead = s < 0;
    s = Math.abs(s);
    var text = s < 10 ? "just now"
      : s < 90 ? Math.round(s) + " s"
      : s < 90 * 60 ? Math.round(s / 60) + " min"
      : s < 36 * 3600 ? Math.round(s / 3600) + " h"
      : Math.round(s / 86400) + " d";
    return text === "just now" ? text : (ahead ? "in " + text : text + " ago");
  }

  function time(iso) {
    if (!iso) { return el("span", "—", "muted"); }
    var t = el("time", relative(iso));
    t.dateTime = iso;
    t.title = new Date(iso).toLocaleString();
    return t;
  }

  function cellTime(row, iso) { var td = cell(row, null, "nowrap"); td.appendChild(time(iso)); return td; }

  function retime() {
    document.querySelectorAll("time[datetime]").forEach(function (t) { t.textContent = relative(t.dateTime); });
  }

  function age(seconds) {
    if (!seconds) { return "—"; }
    if (seconds < 120) { return Math.round(seconds) + " s"; }
    if (seconds < 7200) { return Math.round(seconds / 60) + " min"; }
    return Math.round(seconds / 3600) + " h";
  }

  // ---- queues ---------------------------------------------------------------------------
  function loadQueues() {
    return api("GET", "/queues").then(function (body) {
      var tbody = $("queues").tBodies[0];
      tbody.textContent = "";
      body.queues.forEach(function (q) {
        var tr = document.createElement("tr");
        tr.dataset.queue = q.queue;
        cell(tr, q.queue, "mono nowrap");
        cell(tr, q.pending, "pending"); cell(tr, q.running); cell(tr, q.retrying); cell(tr, q.dead);
        cell(tr, age(q.oldest_pending_seconds));
        tbody.appendChild(tr);
      });
      if (!body.queues.length) { emptyRow(tbody, "All queues are empty.", 6); }
      $("queues-updated").textContent = "updated " + new Date().toLocaleTimeString();
    });
  }

  // ---- jobs -----------------------------------------------------------------------------
  function jobRow(job, onRetried) {
    var tr = document.createElement("tr");
    tr.dataset.jobId = job.job_id;
    cell(tr, job.job_id, "mono");
    cell(tr, job.queue, "mono nowrap");
    cell(tr, null, "state").appendChild(badge(job.dead ? "dead" : job.state));
    cell(tr, job.attempts + "/" + job.max_attempts, "attempts nowrap");
    cell(tr, job.svix_id || "", "mono");
    cell(tr, job.last_error || "", "error-text");
    var actions = cell(tr, null);
    if (onRetried) {
      actions.appendChild(button("retry", "Retry", function (e, b) { retry(tr, b, onRetried); },
        job.dead ? null : "only dead jobs are retried by hand; this one retries by itself"));
    }
    return tr;
  }

  function loadJobs() {
    return api("GET", "/jobs?state=" + encodeURIComponent($("jobs-state").value)).then(function (body) {
      var tbody = $("jobs-table").tBodies[0];
      tbody.textContent = "";
      body.jobs.forEach(function (job) { tbody.appendChild(jobRow(job, jobsChanged)); });
      $("jobs-empty").hidden = body.jobs.length > 0;
    });
  }

  function jobsChanged() {
    $("jobs-empty").hidden = $("jobs-table").tBodies[0].rows.length > 0;
    return loadQueues();
  }

  function retry(tr, b, then) {
    b.disabled = true;
    var id = tr.dataset.jobId;
    api("POST", "/jobs/" + encodeURIComponent(id) + "/retry").then(function () {
      flash("Job " + id + " queued again.", true);
      tr.parentNode.removeChild(tr);
      return then();
    }).catch(function (err) { b.disabled = false; failed(err); });
  }

  // ---- events ---------------------------------------------------------------------------
  function filterQuery() {
    var q = new URLSearchParams();
    var type = $("f-type").value.trim();
    var status = $("f-status").value;
    if (type) { q.set("type", type); }
    if (status) { q.set("status", status); }
    var since = $("f-since").value, until = $("f-until").value;
    if (since && until && new Date(since) >= new Date(until)) {
      throw new RangeError("“Received from” must be before “until”: the range " + since.replace("T", " ") +
        " … " + until.replace("T", " ") + " is reversed or empty. Swap the two times or clear one.");
    }
    if (since) { q.set("since", new Date(since).toISOString()); }
    if (until) { q.set("until", new Date(until).toISOString()); }
    return q;
  }

  // What a row shows of an event: a live refresh rebuilds a row only when it changed, so a
  // button is never replaced under the pointer for nothing.
  function eventShown(ev) {
    return [ev.status, ev.attempts, ev.last_error || "", ev.received_at].join("|");
  }

  function fillEventRow(tr, ev) {
    if (tr.dataset.shown === eventShown(ev)) { return; }
    tr.dataset.shown = eventShown(ev);
    tr.textContent = "";
    tr.dataset.svixId = ev.svix_id;
    tr.dataset.status = ev.status;
    cellTime(tr, ev.received_at);
    cell(tr, ev.event_type, "mono nowrap type");
    cell(tr, ev.svix_id, "mono");
    cell(tr, null, "status").appendChild(badge(ev.status));
    cell(tr, ev.attempts, "attempts");
    cell(tr, ev.last_error || "", "error-text");
    var why = ev.status === "rejected" ? "a rejected delivery has no event to plan"
      : ev.status === "ignored" ? "this event type causes no jobs" : null;
    cell(tr, null).appendChild(button("replay", "Replay", function (e, b) { e.stopPropagation(); replay(tr, b); }, why));
  }

  function eventRow(ev) {
    var tr = document.createElement("tr");
    fillEventRow(tr, ev);
    tr.addEventListener("click", function () { toggleDetail(tr); });
    return tr;
  }

  function rowsById(tbody) {
    var rows = {};
    Array.prototype.forEach.call(tbody.rows, function (r) { if (r.dataset.svixId) { rows[r.dataset.svixId] = r; } });
    return rows;
  }

  // `append`: the next page; `live`: the first page again, merged (new events on top, known
  // ones updated in place, an open detail kept).
  function loadEvents(append, live) {
    var q;
    try { q = filterQuery(); } catch (e) { say("filter-error", e.message); return Promise.resolve(); }
    say("filter-error", null);
    if (append && nextCursor) { q.set("cursor", nextCursor); }
    return api("GET", "/events?" + q.toString()).then(function (body) {
      var tbody = $("events").tBodies[0];
      if (live) {
        var known = rowsById(tbody);
        var top = tbody.firstChild;
        body.events.forEach(function (ev) {
          var tr = known[ev.svix_id];
          if (tr) { fillEventRow(tr, ev); } else { tbody.insertBefore(eventRow(ev), top); }
        });
      } else {
        if (!append) { tbody.textContent = ""; detailFor = null; nextCursor = null; }
        body.events.forEach(function (ev) { tbody.appendChild(eventRow(ev)); });
        nextCursor = body.next_cursor;
      }
      $("events-more").hidden = !nextCursor;
      $("events-empty").hidden = tbody.rows.length > 0;
    }).catch(function (err) {
      if (err.code === "invalid_query") { say("filter-error", err.message); return; }
      throw err;
    });
  }

  function closeDetail() {
    var open = $("event-detail");
    if (open) { open.parentNode.removeChild(open); }
    if (detailFor) { detailFor.classList.remove("selected"); }
    detailFor = null;
  }

  // The event's detail in a row below it: its facts, its jobs, the payload.
  function toggleDetail(tr) {
    var same = detailFor === tr;
    closeDetail();
    if (same) { return Promise.resolve(); }
    detailFor = tr;
    tr.classList.add("selected");
    var row = document.createElement("tr");
    row.id = "event-detail";
    row.className = "detail";
    var td = cell(row, null);
    td.colSpan = tr.cells.length;
    tr.parentNode.insertBefore(row, tr.nextSibling);
    return api("GET", "/events/" + encodeURIComponent(tr.dataset.svixId)).then(function (ev) {
      td.appendChild(el("h3", "Event " + ev.svix_id));
      var subject = eventSubject(ev);
      if (subject && subject.indexOf("user_") === 0) {
        var link = el("a", "Open user " + subject);
        link.href = "#user=" + encodeURIComponent(subject);
        link.className = "user-link";
        td.appendChild(link);
      }
      td.appendChild(el("h3", "Jobs (" + ev.jobs.length + ")"));
      var table = el("table");
      table.id = "event-jobs";
      var tbody = table.appendChild(el("tbody"));
      ev.jobs.forEach(function (job) { tbody.appendChild(jobRow(job, function () { return loadJobs(); })); });
      if (!ev.jobs.length) { emptyRow(tbody, "This event caused no jobs.", 7); }
      td.appendChild(table);
      var details = el("details");
      details.open = true;
      details.appendChild(el("summary", "Payload"));
      var pre = details.appendChild(el("pre", JSON.stringify(ev.payload, null, 2)));
      pre.id = "event-payload";
      td.appendChild(details);
    }).catch(failed);
  }

  // The Clerk id an event is about, as the server's webhook_event_subject reads it.
  function eventSubject(ev) {
    var d = (ev.payload && ev.payload.data) || {};
    var t = ev.event_type || "";
    if (t.indexOf("user.") === 0 || t.indexOf("organization.") === 0) { return d.id; }
    if (t.indexOf("organizationMembership.") === 0) { return d.public_user_data && d.public_user_data.user_id; }
    return d.user_id;
  }

  // Re-reads one event until its jobs have run (or a minute has passed).
  function follow(tr, deadline) {
    return api("GET", "/events/" + encodeURIComponent(tr.dataset.svixId)).then(function (ev) {
      fillEventRow(tr, ev);
      if (ev.status === "queued" && Date.now() < deadline) {
        return new Promise(function (r) { setTimeout(r, 1000); }).then(function () { return follow(tr, deadline); });
      }
    });
  }

  function replay(tr, b) {
    b.disabled = true;
    var id = tr.dataset.svixId;
    api("POST", "/events/" + encodeURIComponent(id) + "/replay").then(function (body) {
      flash("Replayed " + id + ": " + body.job_ids.length + " job(s) queued.", true);
      tr.querySelector("td.status").textContent = "";
      tr.querySelector("td.status").appendChild(badge("queued"));
      tr.dataset.shown = ""; // edited by hand: the next refresh rebuilds the row
      return follow(tr, Date.now() + 60000);
    }).catch(function (err) { b.disabled = false; failed(err); });
  }

  // ---- search ---------------------------------------------------------------------------
  function search(q) {
    $("search-view").hidden = false;
    $("search-term").textContent = q;
    if (!q) {
      say("search-error", "Type an email address (or its start), a Clerk user or organization id, a svix id or a job id.");
      $("search-results").hidden = true;
      return Promise.resolve();
    }
    return api("GET", "/search?q=" + encodeURIComponent(q)).then(function (body) {
      say("search-error", null);
      $("search-results").hidden = false;
      var users = $("search-users").tBodies[0];
      users.textContent = "";
      body.users.forEach(function (u) {
        var tr = document.createElement("tr");
        cell(tr, u.email || "(no address)", "mono");
        cell(tr, u.clerk_user_id || "(not linked)", "mono");
        cell(tr, u.role, "nowrap");
        cellTime(tr, u.created_at);
        cell(tr, null).appendChild(badge(u.deleted_at ? "deleted" : "live"));
        if (u.clerk_user_id) {
          tr.dataset.clerkUserId = u.clerk_user_id;
          tr.addEventListener("click", function () { openUser(u.clerk_user_id); });
        }
        users.appendChild(tr);
      });
      if (!body.users.length) { emptyRow(users, "No users match.", 5); }
      var events = $("search-events").tBodies[0];
      events.textContent = "";
      body.events.forEach(function (ev) { events.appendChild(eventRow(ev)); });
      if (!body.events.length) { emptyRow(events, "No events match.", 7); }
      var jobs = $("search-jobs").tBodies[0];
      jobs.textContent = "";
      body.jobs.forEach(function (job) { jobs.appendChild(jobRow(job, function () { return search(q); })); });
      if (!body.jobs.length) { emptyRow(jobs, "No jobs match.", 7); }
    }).catch(function (err) {
      if (err.code === "invalid_query") { say("search-error", err.message); $("search-results").hidden = true; return; }
      failed(err);
    });
  }

  // ---- a user's page --------------------------------------------------------------------
  function openUser(id) {
    if (window.location.hash !== "#user=" + encodeURIComponent(id)) {
      window.location.hash = "user=" + encodeURIComponent(id);
    } else {
      loadUser(id);
    }
  }

  function fact(dl, name, value) {
    dl.appendChild(el("dt", name));
    var dd = dl.appendChild(el("dd", typeof value === "string" || value === null ? value || "—" : null));
    if (value && typeof value !== "string") { dd.appendChild(value); }
  }

  function entryText(e) {
    if (e.kind === "event") { return [e.event_type, badge(e.status), "svix " + e.svix_id, e.last_error]; }
    if (e.kind === "job") {
      var j = e.job;
      return [j.queue, badge(j.dead ? "dead" : j.state), "attempt " + j.attempts + "/" + j.max_attempts, j.last_error];
    }
    if (e.kind === "audit") { return [e.action, "by " + e.actor, JSON.stringify(e.details)]; }
    return [e.activity, e.client_ip ? "from " + e.client_ip : null, e.user_agent];
  }

  function loadUser(id) {
    $("user-view").hidden = false;
    $("user-id").textContent = id;
    return api("GET", "/users/" + encodeURIComponent(id)).then(function (body) {
      var u = body.user;
      var facts = $("user-facts");
      facts.textContent = "";
      fact(facts, "Email", u.email ? u.email + (u.email_verified ? " (verified)" : " (not verified)") : null);
      fact(facts, "Name", [u.first_name, u.last_name].filter(Boolean).join(" ") || null);
      fact(facts, "Role", u.role);
      fact(facts, "Our id", u.id);
      fact(facts, "Created", time(u.created_at));
      fact(facts, "Status", u.deleted_at ? badge("deleted") : badge("live"));
      var ms = $("user-memberships").tBodies[0];
      ms.textContent = "";
      body.memberships.forEach(function (m) {
        var tr = document.createElement("tr");
        cell(tr, (m.name || m.clerk_org_id) + (m.name ? " (" + m.clerk_org_id + ")" : ""), "mono");
        cell(tr, m.role, "nowrap");
        cellTime(tr, m.since);
        ms.appendChild(tr);
      });
      if (!body.memberships.length) { emptyRow(ms, "No memberships.", 3); }
      var ol = $("timeline");
      ol.textContent = "";
      body.timeline.forEach(function (e) {
        var li = el("li");
        li.dataset.kind = e.kind;
        li.appendChild(time(e.at));
        li.appendChild(el("span", e.kind, "kind"));
        var what = el("span", null, "what");
        entryText(e).forEach(function (part, i) {
          if (part === null || part === undefined || part === "") { return; }
          if (i > 0) { what.appendChild(document.createTextNode(" · ")); }
          what.appendChild(typeof part === "string" ? el("span", part, i === 0 ? "mono nowrap" : (i === 3 ? "error-text" : null)) : part);
        });
        li.appendChild(what);
        ol.appendChild(li);
      });
      $("timeline-empty").hidden = body.timeline.length > 0;
      $("user-view").scrollIntoView();
    }).catch(function (err) {
      if (err.code === "not_found") {
        $("user-facts").textContent = "";
        $("timeline").textContent = "";
        say("timeline-empty", "No user " + id + " in the database.");
        return;
      }
      failed(err);
    });
  }

  function route() {
    var m = /^#user=(.+)$/.exec(window.location.hash);
    if (m) { return loadUser(decodeURIComponent(m[1])); }
    $("user-view").hidden = true;
    return Promise.resolve();
  }

  // ---- trends: inline SVG ---------------------------------------------------------------
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  // Draws `series` ([{name, color, values}]) over the buckets as lines; null values break a
  // line. Each bucket has a hover title with every value.
  function chart(svg, buckets, series, unit) {
    svg.textContent = "";
    var W = 600, H = 160, L = 44, B = 18, T = 8;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) { max = v; } }); });
    var top = max > 0 ? max : 1;
    var n = Math.max(buckets.length - 1, 1);
    var x = function (i) { return L + (W - L - 4) * i / n; };
    var y = function (v) { return T + (H - T - B) * (1 - v / top); };
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - 4, y2: H - B, stroke: "#d0d7de" }));
    var label = function (text, attrs) { var t = svgEl("text", attrs); t.textContent = text; svg.appendChild(t); };
    label(Math.round(top) + (unit || ""), { x: L - 4, y: T + 8, "text-anchor": "end", "font-size": 10, fill: "#57606a" });
    label("0", { x: L - 4, y: H - B, "text-anchor": "end", "font-size": 10, fill: "#57606a" });
    if (buckets.length) {
      label(new Date(buckets[0].at).toLocaleString(), { x: L, y: H - 4, "font-size": 10, fill: "#57606a" });
      label("now", { x: W - 4, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#57606a" });
    }
    series.forEach(function (s) {
      var runs = [[]];
      s.values.forEach(function (v, i) {
        if (v === null) { runs.push([]); return; }
        runs[runs.length - 1].push(x(i).toFixed(1) + "," + y(v).toFixed(1));
      });
      runs.filter(function (r) { return r.length; }).forEach(function (r) {
        svg.appendChild(svgEl("polyline", { points: r.join(" "), fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name }));
      });
      // A dot on every non-zero value, so a lone bucket shows too.
      s.values.forEach(function (v, i) {
        if (v) { svg.appendChild(svgEl("circle", { cx: x(i), cy: y(v), r: 3, fill: s.color })); }
      });
      svg.dataset[s.name] = s.values.reduce(function (a, v) { return a + (v || 0); }, 0);
    });
    buckets.forEach(function (b, i) {
      var hit = svgEl("rect", { x: x(i) - (W - L) / n / 2, y: T, width: (W - L) / n, height: H - T - B, fill: "transparent", "class": "bucket" });
      var title = svgEl("title", {});
      title.textContent = new Date(b.at).toLocaleString() + "\n" + series.map(function (s) {
        var v = s.values[i];
        return s.name + ": " + (v === null ? "—" : Math.round(v) + (unit || ""));
      }).join("\n");
      hit.appendChild(title);
      svg.appendChild(hit);
    });
    svg.dataset.buckets = buckets.length;
  }

  function loadStats() {
    return api("GET", "/stats?window=" + encodeURIComponent($("stats-window").value)).then(function (body) {
      var b = body.buckets;
      var pick = function (k) { return b.map(function (x) { return x[k]; }); };
      chart($("chart-volume").querySelector("svg"), b, [
        { name: "received", color: "#0969da", values: pick("received") },
        { name: "processed", color: "#1a7f37", values: pick("processed") },
        { name: "failed", color: "#cf222e", values: pick("failed") },
        { name: "retried", color: "#9a6700", values: pick("retried") }
      ]);
      chart($("chart-latency").querySelector("svg"), b, [
        { name: "p50", color: "#0969da", values: pick("p50_ms") },
        { name: "p95", color: "#8250df", values: pick("p95_ms") }
      ], " ms");
    });
  }

  // ---- reconciliation -------------------------------------------------------------------
  function loadReconcile() {
    return api("GET", "/reconcile").then(function (body) {
      var run = $("reconcile-run");
      var why = body.configured ? null
        : "Not configured: set CLERK_SECRET_KEY on the api and the workers to reconcile with Clerk.";
      run.disabled = !body.configured;
      run.title = why || "";
      say("reconcile-why", why);
      var tbody = $("reconcile-runs").tBodies[0];
      tbody.textContent = "";
      body.runs.forEach(function (r) {
        var tr = document.createElement("tr");
        if (r.job_id) { tr.dataset.jobId = r.job_id; }
        cellTime(tr, r.at); cell(tr, r.actor, "mono");
        if (r.error) {
          // A run that stopped before changing anything, e.g. instance_mismatch.
          cell(tr, r.error.code + ": " + r.error.message, "error-text").colSpan = 5;
        } else {
          cell(tr, r.scanned); cell(tr, r.created); cell(tr, r.updated); cell(tr, r.deleted);
          cell(tr, r.held_deletions ? r.held_deletions + " waiting"
            : (r.confirmed_deletions ? r.confirmed_deletions + " confirmed" : "0"), "held");
        }
        var actions = cell(tr, null);
        if (r.held_deletions > 0 && r.job_id) {
          actions.appendChild(button("confirm", "Confirm " + r.held_deletions + " deletion(s)", function (e, b) {
            confirmDeletions(r.job_id, b);
          }));
        }
        tbody.appendChild(tr);
      });
      var current = body.current;
      $("reconcile-status").textContent = current
        ? "Run " + current.job_id + " is " + current.state + " (attempt " + current.attempts + "/" + current.max_attempts + ")."
        : (body.runs.length ? "" : "No run recorded yet.");
    });
  }

  // Applies the deletions a run held back (more than RECONCILE_MAX_DELETIONS).
  function confirmDeletions(jobId, b) {
    b.disabled = true;
    api("POST", "/reconcile/" + encodeURIComponent(jobId) + "/confirm").then(function (body) {
      flash("Confirmed " + body.confirmed + " deletion(s) of run " + jobId + ".", true);
      return Promise.all([loadReconcile(), loadQueues()]);
    }).catch(function (err) { b.disabled = false; failed(err); });
  }

  // Its outcome is shown beside the button, where the operator is looking.
  function runReconcile() {
    var b = $("reconcile-run");
    b.disabled = true;
    say("reconcile-error", null);
    api("POST", "/reconcile").then(function (body) {
      flash(body.already_queued ? "A reconcile run is already queued: " + body.job_id : "Reconcile queued: " + body.job_id, true);
    }).catch(function (err) {
      if (err instanceof AuthError) { failed(err); return; }
      say("reconcile-error", err.message || String(err));
    }).then(loadReconcile).catch(failed);
  }

  // ---- wiring ---------------------------------------------------------------------------
  function loadAll() {
    return loadQueues()
      .then(function () {
        showConsole();
        return Promise.all([loadEvents(false), loadJobs(), loadReconcile(), loadStats(), route()]);
      })
      .catch(failed);
  }

  function visible() { return !$("console").hidden && document.visibilityState === "visible"; }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    window.sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    loadAll();
  });
  $("sign-out").addEventListener("click", function () {
    window.sessionStorage.removeItem(TOKEN_KEY);
    showLogin(null);
  });
  $("search-form").addEventListener("submit", function (e) {
    e.preventDefault();
    search($("search-q").value.trim());
  });
  document.querySelectorAll("button.close").forEach(function (b) {
    b.addEventListener("click", function () {
      $(b.dataset.close).hidden = true;
      if (b.dataset.close === "user-view" && window.location.hash) { window.location.hash = ""; }
    });
  });
  window.addEventListener("hashchange", function () { route().catch(failed); });
  $("event-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    closeDetail();
    loadEvents(false).catch(failed);
  });
  $("events-more").addEventListener("click", function () { loadEvents(true).catch(failed); });
  $("jobs-state").addEventListener("change", function () { loadJobs().catch(failed); });
  $("stats-window").addEventListener("change", function () { loadStats().catch(failed); });
  $("refresh").addEventListener("click", loadAll);
  $("reconcile-run").addEventListener("click", runReconcile);
  // Live: queue depths and new events every 3 s; jobs and trends every 15 s; times every 15 s.
  setInterval(function () {
    if (visible()) { loadQueues().catch(function () {}); loadEvents(false, true).catch(function () {}); }
  }, 3000);
  setInterval(function () {
    if (visible()) { loadJobs().catch(function () {}); loadStats().catch(function () {}); }
    retime();
  }, 15000);
  loadAll();
})();
