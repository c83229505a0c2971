// The operator console: a thin client of /admin/api. Every value from the server goes into the
// page through textContent, never as HTML.
(function () {
  "use strict";
  var TOKEN_KEY = "authsync.adminToken";
  var $ = function (id) { return document.getElementById(id); };
  var nextCursor = null;
  var selected = null;

  function AuthError(message) { this.message = message; }

  function token() { return window.sessionStorage.getItem(TOKEN_KEY); }

  // Calls the admin API with the stored token (or the session cookie when the console runs
  // inside the app). 401/403 bring back the sign-in card.
  function api(method, path) {
    var headers = { "Accept": "application/json" };
    var t = token();
    if (t) { headers["Authorization"] = "Bearer " + t; }
    return fetch("/admin/api" + path, { method: method, headers: headers, credentials: "same-origin" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          var message = body && body.error && body.error.message;
          if (resp.status === 401) { throw new AuthError(t ? "That token was not accepted." : null); }
          if (resp.status === 403 && !(body && body.error && body.error.code === "cross_site_request")) {
            throw new AuthError("This account is not an admin.");
          }
          if (!resp.ok) { throw new Error(message || ("HTTP " + resp.status)); }
          return body;
        });
      });
  }

  function showLogin(message) {
    $("console").hidden = true;
    $("login").hidden = false;
    $("sign-out").hidden = true;
    if (message) { $("login-message").textContent = message; }
  }

  function showConsole() {
    $("login").hidden = true;
    $("console").hidden = false;
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

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (text !== null && text !== undefined) { td.textContent = String(text); }
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  // A row action; `onClick(event, button)`.
  function button(className, label, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = className;
    b.textContent = label;
    b.addEventListener("click", function (e) { onClick(e, b); });
    return b;
  }

  function badge(state) {
    var span = document.createElement("span");
    span.className = "badge badge-" + state;
    span.textContent = state;
    return span;
  }

  function when(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
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
        cell(tr, q.queue, "mono");
        cell(tr, q.pending); cell(tr, q.running); cell(tr, q.retrying); cell(tr, q.dead);
        cell(tr, age(q.oldest_pending_seconds));
        tbody.appendChild(tr);
      });
      if (!body.queues.length) {
        var tr = document.createElement("tr");
        cell(tr, "All queues are empty.", "muted").colSpan = 6;
        tbody.appendChild(tr);
      }
      $("queues-updated").textContent = "updated " + new Date().toLocaleTimeString();
    });
  }

  // ---- events ---------------------------------------------------------------------------
  function filterQuery() {
    var q = new URLSearchParams();
    var type = $("f-type").value.trim();
    var status = $("f-status").value;
    if (type) { q.set("type", type); }
    if (status) { q.set("status", status); }
    [["since", "f-since"], ["until", "f-until"]].forEach(function (p) {
      var v = $(p[1]).value;
      if (v) { q.set(p[0], new Date(v).toISOString()); }
    });
    return q;
  }

  function fillEventRow(tr, ev) {
    tr.textContent = "";
    tr.dataset.svixId = ev.svix_id;
    tr.dataset.status = ev.status;
    cell(tr, when(ev.received_at));
    cell(tr, ev.event_type, "mono");
    cell(tr, ev.svix_id, "mono");
    cell(tr, null, "status").appendChild(badge(ev.status));
    cell(tr, ev.attempts, "attempts");
    cell(tr, ev.last_error || "", "error-text");
    var actions = cell(tr, null);
    if (ev.status !== "rejected" && ev.status !== "ignored") {
      actions.appendChild(button("replay", "Replay", function (e, b) { e.stopPropagation(); replay(tr, b); }));
    }
  }

  function loadEvents(append) {
    var q = filterQuery();
    if (append && nextCursor) { q.set("cursor", nextCursor); }
    return api("GET", "/events?" + q.toString()).then(function (body) {
      var tbody = $("events").tBodies[0];
      if (!append) { tbody.textContent = ""; }
      body.events.forEach(function (ev) {
        var tr = document.createElement("tr");
        fillEventRow(tr, ev);
        tr.addEventListener("click", function () { showEvent(tr); });
        tbody.appendChild(tr);
      });
      nextCursor = body.next_cursor;
      $("events-more").hidden = !nextCursor;
      $("events-empty").hidden = tbody.rows.length > 0;
    });
  }

  function showEvent(tr) {
    if (selected) { selected.classList.remove("selected"); }
    selected = tr;
    tr.classList.add("selected");
    return api("GET", "/events/" + encodeURIComponent(tr.dataset.svixId)).then(function (ev) {
      $("detail-id").textContent = ev.svix_id;
      $("event-payload").textContent = JSON.stringify(ev.payload, null, 2);
      $("event-detail").hidden = false;
    }).catch(failed);
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

  function replay(tr, button) {
    button.disabled = true;
    var id = tr.dataset.svixId;
    api("POST", "/events/" + encodeURIComponent(id) + "/replay").then(function (body) {
      flash("Replayed " + id + ": " + body.job_ids.length + " job(s) queued.", true);
      tr.querySelector("td.status").textContent = "";
      tr.querySelector("td.status").appendChild(badge("queued"));
      return follow(tr, Date.now() + 60000);
    }).catch(function (err) { button.disabled = false; failed(err); });
  }

  // ---- dead jobs ------------------------------------------------------------------------
  function loadDeadJobs() {
    return api("GET", "/jobs?state=dead").then(function (body) {
      var tbody = $("dead-jobs").tBodies[0];
      tbody.textContent = "";
      body.jobs.forEach(function (job) {
        var tr = document.createElement("tr");
        tr.dataset.jobId = job.job_id;
        cell(tr, job.job_id, "mono");
        cell(tr, job.queue, "mono");
        cell(tr, job.attempts + "/" + job.max_attempts);
        cell(tr, job.svix_id || "", "mono");
        cell(tr, job.last_error || "", "error-text");
        cell(tr, null).appendChild(button("retry", "Retry", function (e, b) { retry(tr, b); }));
        tbody.appendChild(tr);
      });
      $("dead-empty").hidden = body.jobs.length > 0;
    });
  }

  function retry(tr, button) {
    button.disabled = true;
    var id = tr.dataset.jobId;
    api("POST", "/jobs/" + encodeURIComponent(id) + "/retry").then(function () {
      flash("Job " + id + " queued again.", true);
      tr.parentNode.removeChild(tr);
      $("dead-empty").hidden = $("dead-jobs").tBodies[0].rows.length > 0;
      return loadQueues();
    }).catch(function (err) { button.disabled = false; failed(err); });
  }

  // ---- reconciliation -------------------------------------------------------------------
  function loadReconcile() {
    return api("GET", "/reconcile").then(function (body) {
      var tbody = $("reconcile-runs").tBodies[0];
      tbody.textContent = "";
      body.runs.forEach(function (run) {
        var tr = document.createElement("tr");
        if (run.job_id) { tr.dataset.jobId = run.job_id; }
        cell(tr, when(run.at)); cell(tr, run.actor, "mono");
        if (run.error) {
          // A run that stopped before changing anything, e.g. instance_mismatch.
          cell(tr, run.error.code + ": " + run.error.message, "error-text").colSpan = 5;
        } else {
          cell(tr, run.scanned); cell(tr, run.created); cell(tr, run.updated); cell(tr, run.deleted);
          cell(tr, run.held_deletions ? run.held_deletions + " waiting"
            : (run.confirmed_deletions ? run.confirmed_deletions + " confirmed" : "0"), "held");
        }
        var actions = cell(tr, null);
        if (run.held_deletions > 0 && run.job_id) {
          actions.appendChild(button("confirm", "Confirm " + run.held_deletions + " deletion(s)", function (e, b) {
            confirmDeletions(run.job_id, b);
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
  function confirmDeletions(jobId, button) {
    button.disabled = true;
    api("POST", "/reconcile/" + encodeURIComponent(jobId) + "/confirm").then(function (body) {
      flash("Confirmed " + body.confirmed + " deletion(s) of run " + jobId + ".", true);
      return Promise.all([loadReconcile(), loadQueues()]);
    }).catch(function (err) { button.disabled = false; failed(err); });
  }

  function runReconcile() {
    var b = $("reconcile-run");
    b.disabled = true;
    api("POST", "/reconcile").then(function (body) {
      flash(body.already_queued ? "A reconcile run is already queued: " + body.job_id : "Reconcile queued: " + body.job_id, true);
      return loadReconcile();
    }).catch(failed).then(function () { b.disabled = false; });
  }

  // ---- wiring ---------------------------------------------------------------------------
  function loadAll() {
    return loadQueues()
      .then(function () { showConsole(); return Promise.all([loadEvents(false), loadDeadJobs(), loadReconcile()]); })
      .catch(failed);
  }

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
  $("event-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    nextCursor = null;
    $("event-detail").hidden = true;
    loadEvents(false).catch(failed);
  });
  $("events-more").addEventListener("click", function () { loadEvents(true).catch(failed); });
  $("refresh").addEventListener("click", loadAll);
  $("reconcile-run").addEventListener("click", runReconcile);
  setInterval(function () {
    if (!$("console").hidden && document.visibilityState === "visible") { loadQueues().catch(function () {}); }
  }, 5000);
  loadAll();
})();
