// The reference setup page: provisions the signed-in user through POST /v1/sync and follows
// the urgent job with long polls until it succeeds (then redirects) or fails.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("setup-config").textContent);
  var MAX_ATTEMPTS = 10;
  // Words for the person signing up: what is wrong on the server side is for the operator
  // (the server logs it), not for them.
  var UNAVAILABLE = "Account setup is not available right now. Please try again later, or contact support if this goes on.";
  var $ = function (id) { return document.getElementById(id); };

  function show(section) {
    $("working").hidden = section !== "working";
    $("failed").hidden = section !== "failed";
  }

  function attemptText(n, max) {
    return "Attempt " + Math.max(1, Math.min(n, max)) + "/" + max;
  }

  function fail(message, jobId, attempts, max) {
    $("failed-message").textContent = message;
    $("failed-attempt").textContent = attempts ? attemptText(attempts, max || MAX_ATTEMPTS) : "";
    $("reference-line").hidden = !jobId;
    $("reference").textContent = jobId || "";
    show("failed");
  }

  // Clerk's JS when the page runs inside the app; a ?token= parameter in the demo.
  function getToken() {
    if (window.Clerk && window.Clerk.session) {
      return window.Clerk.session.getToken();
    }
    return Promise.resolve(new URLSearchParams(window.location.search).get("token"));
  }

  function api(method, path, token) {
    return fetch(path, {
      method: method,
      headers: token ? { "Authorization": "Bearer " + token } : {},
      credentials: "same-origin",
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (body) {
        return { status: resp.status, body: body, retryAfter: resp.headers.get("retry-after") };
      });
    });
  }

  function done() {
    window.location.assign(config.redirect_url);
  }

  function follow(token, jobId) {
    return api("GET", "/v1/jobs/" + encodeURIComponent(jobId) + "?wait_ms=10000", token).then(function (r) {
      if (r.status === 429) {
        // Too many long-polls open (other tabs of this user): wait as told, then follow again.
        var ms = (parseInt(r.retryAfter, 10) || 2) * 1000;
        return new Promise(function (done) { setTimeout(done, ms); }).then(function () {
          return follow(token, jobId);
        });
      }
      if (r.status !== 200) {
        return fail(messageOf(r.body, "The status of your account setup is unavailable."), jobId);
      }
      var job = r.body;
      var max = job.max_attempts || MAX_ATTEMPTS;
      if (job.state === "succeeded") return done();
      if (job.state === "failed") {
        return fail("Setting up your account failed after " + job.attempts + " attempts.", jobId, job.attempts, max);
      }
      // Queued or running: the current attempt; retrying: the next one.
      var current = job.state === "retrying" ? job.attempts + 1 : Math.max(job.attempts, 1);
      $("attempt").textContent = attemptText(current, max);
      return follow(token, jobId);
    });
  }

  // The server's message, unless it is about the deployment's configuration.
  function messageOf(body, fallback) {
    var error = body && body.error;
    if (error && error.code === "not_configured") return UNAVAILABLE;
    return (error && error.message) || fallback;
  }

  function start() {
    if (config.available === false) return fail(UNAVAILABLE);
    show("working");
    $("attempt").textContent = attemptText(1, MAX_ATTEMPTS);
    return getToken().then(function (token) {
      if (!token) return fail("You are not signed in.");
      return api("POST", "/v1/sync", token).then(function (r) {
        if (r.status === 200 && r.body.status === "ready") return done();
        if (r.status === 202) return follow(token, r.body.job_id);
        return fail(messageOf(r.body, "Setting up your account could not start."));
      });
    }).catch(function () {
      fail("The server could not be reached.");
    });
  }

  $("retry").addEventListener("click", start);
  $("home").setAttribute("href", config.home_url);
  start();
})();
