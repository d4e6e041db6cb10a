/**
 * The dashboard page: one self-contained HTML document (inline CSS and
 * script, no fetch of anything but the admin API), so it works from the
 * compiled binary with no network. The script draws each application's
 * graph as bound (columns by call depth from the ingress), then updates each
 * node from the server-sent snapshots. Scale and userConfig go through the
 * same PATCH as curl; a refusal shows its message on the node.
 *
 * The admin token, when the server has one, is given once as
 * `http://127.0.0.1:8265/#token=…` (a fragment never leaves the browser) or
 * typed into the form the page shows on a 401; it is kept in
 * sessionStorage (this tab only) and sent as `Authorization: Bearer`.
 */

const STYLE = String.raw`
:root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --mute: #6b7383; --line: #c9cfd9; --ok: #1f9d55; --warn: #c98a00; --bad: #cc3340; --accent: #3759d7; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--ink); }
header.top { display: flex; gap: 16px; align-items: center; padding: 10px 20px; background: #1d2330; color: #fff; }
header.top h1 { font-size: 16px; margin: 0; }
#conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #555; }
#conn[data-state=live] { background: var(--ok); }
#conn[data-state=closed] { background: var(--bad); }
#login { padding: 12px 20px; background: #fff3cd; }
section.app { margin: 16px 20px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; overflow: auto; }
section.app h2 { margin: 0 0 6px; font-size: 15px; display: flex; gap: 10px; align-items: center; }
.badge { font-size: 11px; padding: 1px 7px; border-radius: 9px; background: #e3e7ee; color: var(--ink); font-weight: 600; }
.badge[data-status=RUNNING], .badge[data-status=HEALTHY] { background: #d7f2e2; color: var(--ok); }
.badge[data-status=UNHEALTHY], .badge[data-status=DEPLOY_FAILED] { background: #f8d9dc; color: var(--bad); }
.badge[data-status=DEPLOYING], .badge[data-status=UPDATING] { background: #fbefcf; color: var(--warn); }
.app-msg { color: var(--bad); white-space: pre-wrap; }
.canvas { position: relative; }
svg.edges { position: absolute; left: 0; top: 0; pointer-events: none; overflow: visible; }
svg.edges path { fill: none; stroke: #7d8697; stroke-width: 1.6; }
svg.edges path[data-kind=handle] { stroke: var(--accent); stroke-width: 2.2; }
svg.edges path[data-kind=data] { stroke-dasharray: 5 4; stroke: #a3abb8; }
svg.edges text { font-size: 11px; fill: var(--mute); }
.node { position: absolute; width: 250px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.node[data-ingress=true] { border: 2px solid var(--accent); }
.node .title { display: flex; gap: 6px; align-items: center; font-weight: 600; }
.node .title .name { font-size: 14px; }
.node .kind { color: var(--mute); font-weight: 400; font-size: 11px; }
.node .title .badge { margin-left: auto; }
.replicas { margin: 4px 0; min-height: 16px; color: var(--mute); font-size: 12px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 3px; vertical-align: -1px; background: #aaa; }
.dot[data-state=RUNNING] { background: var(--ok); }
.dot[data-state=STARTING], .dot[data-state=UPDATING] { background: var(--warn); }
.dot[data-state=STOPPING] { background: #bbb; }
dl.stats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 2px 8px; margin: 4px 0; }
dl.stats div { display: flex; flex-direction: column; }
dl.stats dt { color: var(--mute); font-size: 10px; text-transform: uppercase; }
dl.stats dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap; }
.controls { display: flex; gap: 6px; align-items: center; margin-top: 4px; }
.controls button { font: inherit; padding: 1px 9px; border: 1px solid var(--line); background: #f1f3f7; border-radius: 5px; cursor: pointer; }
.controls button:disabled { opacity: .5; cursor: default; }
.controls [data-role=target] { min-width: 56px; text-align: center; }
.msg { font-size: 12px; min-height: 0; white-space: pre-wrap; word-break: break-word; }
.msg.error { color: var(--bad); }
#editor { position: fixed; right: 20px; top: 60px; width: 420px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; box-shadow: 0 6px 24px rgba(0,0,0,.18); }
#editor textarea { width: 100%; height: 200px; font: 12px ui-monospace, monospace; }
#editor h3 { margin: 0 0 8px; font-size: 14px; }
`;

const SCRIPT = String.raw`
(function () {
  "use strict";
  var KEY = "serve-bin-admin-token";
  var token = sessionStorage.getItem(KEY) || "";
  var frag = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (frag) {
    token = decodeURIComponent(frag[1]);
    sessionStorage.setItem(KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  var appsEl = document.getElementById("apps");
  var views = {};
  var latest = null;
  var editing = null;

  function authed(extra) {
    var h = extra || {};
    if (token) h.authorization = "Bearer " + token;
    return h;
  }
  function make(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function setConn(state, text) {
    var c = document.getElementById("conn");
    c.setAttribute("data-state", state);
    c.textContent = text;
  }
  function ms(s) {
    if (s === null || s === undefined) return "–";
    var v = s * 1000;
    return (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
  }

  // ------------------------------------------------------------ stream
  function connect() {
    setConn("connecting", "connecting…");
    fetch("/api/dashboard/events", { headers: authed({ accept: "text/event-stream" }) })
      .then(function (res) {
        if (res.status === 401) {
          showLogin("This server needs its admin token. It stays in this browser tab only.");
          setConn("closed", "token needed");
          return;
        }
        if (!res.ok) throw new Error("HTTP " + res.status);
        setConn("live", "live");
        var reader = res.body.getReader();
        var dec = new TextDecoder();
        var buf = "";
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) throw new Error("the server closed the stream");
            buf += dec.decode(r.value, { stream: true });
            var i;
            while ((i = buf.indexOf("\n\n")) >= 0) {
              var data = buf.slice(0, i).split("\n").filter(function (l) { return l.indexOf("data:") === 0; })
                .map(function (l) { return l.slice(5).replace(/^ /, ""); }).join("\n");
              buf = buf.slice(i + 2);
              if (data) render(JSON.parse(data));
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (e) {
        setConn("closed", "reconnecting: " + e.message);
        setTimeout(connect, 1000);
      });
  }
  function showLogin(text) {
    var f = document.getElementById("login");
    f.hidden = false;
    document.getElementById("login-msg").textContent = text;
  }
  document.getElementById("login").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem(KEY, token);
    document.getElementById("login").hidden = true;
    connect();
  });

  // ------------------------------------------------------------ drawing
  function layout(graph) {
    var depth = {};
    depth[graph.ingress] = 0;
    for (var pass = 0, changed = true; changed && pass < graph.nodes.length + 1; pass++) {
      changed = false;
      graph.edges.forEach(function (e) {
        if (e.kind === "data" || depth[e.from] === undefined) return;
        var d = depth[e.from] + 1;
        if (depth[e.to] === undefined || depth[e.to] < d) { depth[e.to] = d; changed = true; }
      });
    }
    var cols = [];
    var pos = {};
    graph.nodes.forEach(function (n) {
      var d = depth[n.name] === undefined ? 0 : depth[n.name];
      cols[d] = cols[d] || [];
      pos[n.name] = { x: 10 + d * 330, y: 10 + cols[d].length * 200, col: d };
      cols[d].push(n.name);
    });
    var rows = Math.max.apply(null, cols.map(function (c) { return c ? c.length : 0; }));
    return { pos: pos, width: cols.length * 330, height: rows * 200 };
  }

  function buildApp(app) {
    var v = views[app.name];
    if (!v) {
      var sec = make("section", { class: "app", "data-app": app.name });
      var h = make("h2");
      h.appendChild(make("span", {}, app.name));
      h.appendChild(make("span", { class: "badge", "data-role": "app-status" }));
      h.appendChild(make("code", {}, app.routePrefix));
      sec.appendChild(h);
      sec.appendChild(make("div", { class: "app-msg", "data-role": "app-message" }));
      var canvas = make("div", { class: "canvas" });
      sec.appendChild(canvas);
      appsEl.appendChild(sec);
      v = views[app.name] = { sec: sec, canvas: canvas, sig: "", nodes: {} };
    }
    var sig = JSON.stringify(app.graph);
    if (sig === v.sig) return v;
    v.sig = sig;
    v.canvas.textContent = "";
    v.nodes = {};
    if (!app.graph) return v;
    var l = layout(app.graph);
    v.canvas.style.width = l.width + "px";
    v.canvas.style.height = l.height + "px";
    var s = svg("svg", { class: "edges", width: l.width, height: l.height });
    var defs = svg("defs");
    var marker = svg("marker", { id: "arrow-" + app.name, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", style: "fill:#7d8697;stroke:none" }));
    defs.appendChild(marker);
    s.appendChild(defs);
    app.graph.edges.forEach(function (e) {
      var a = l.pos[e.from], b = l.pos[e.to];
      if (!a || !b) return;
      var d, lx, ly;
      if (a.col === b.col) {
        var x = a.x + 250, y1 = a.y + 60, y2 = b.y + 60;
        d = "M " + x + " " + y1 + " C " + (x + 50) + " " + y1 + ", " + (x + 50) + " " + y2 + ", " + x + " " + y2;
        lx = x + 40; ly = (y1 + y2) / 2;
      } else {
        var x1 = a.x + 250, ya = a.y + 60, x2 = b.x, yb = b.y + 60;
        d = "M " + x1 + " " + ya + " C " + (x1 + 40) + " " + ya + ", " + (x2 - 40) + " " + yb + ", " + x2 + " " + yb;
        lx = (x1 + x2) / 2; ly = (ya + yb) / 2 - 4;
      }
      s.appendChild(svg("path", { d: d, "data-edge": e.from + "->" + e.to, "data-kind": e.kind, "marker-end": "url(#arrow-" + app.name + ")" }));
      var label = e.kind === "handle" ? "handle" : e.label;
      if (label) {
        var t = svg("text", { x: lx, y: ly, "text-anchor": "middle" });
        t.textContent = label;
        s.appendChild(t);
      }
    });
    v.canvas.appendChild(s);
    app.graph.nodes.forEach(function (n) {
      var p = l.pos[n.name];
      var el = make("div", { class: "node", "data-deployment": n.name, "data-ingress": String(n.ingress) });
      el.style.left = p.x + "px";
      el.style.top = p.y + "px";
      var title = make("div", { class: "title" });
      title.appendChild(make("span", { class: "name" }, n.name));
      title.appendChild(make("span", { class: "kind" }, n.ingress ? "ingress" : n.kind));
      title.appendChild(make("span", { class: "badge", "data-role": "status" }));
      el.appendChild(title);
      el.appendChild(make("div", { class: "replicas", "data-role": "replicas" }));
      var dl = make("dl", { class: "stats" });
      [["req/s", "rps"], ["p50", "p50"], ["p99", "p99"], ["errors", "errors"], ["queued", "queued"], ["in flight", "ongoing"], ["total", "requests"]].forEach(function (f) {
        var cell = make("div");
        cell.appendChild(make("dt", {}, f[0]));
        cell.appendChild(make("dd", { "data-role": f[1] }, "–"));
        dl.appendChild(cell);
      });
      el.appendChild(dl);
      var c = make("div", { class: "controls" });
      var down = make("button", { "data-action": "down", title: "one replica fewer" }, "−");
      var up = make("button", { "data-action": "up", title: "one replica more" }, "+");
      var cfg = make("button", { "data-action": "config", title: "edit userConfig (applied by reconfigure())" }, "config");
      c.appendChild(down);
      c.appendChild(make("span", { "data-role": "target" }));
      c.appendChild(up);
      if (n.kind === "class") c.appendChild(cfg);
      el.appendChild(c);
      el.appendChild(make("div", { class: "msg", "data-role": "message" }));
      down.addEventListener("click", function () { scale(app.name, n.name, -1); });
      up.addEventListener("click", function () { scale(app.name, n.name, 1); });
      cfg.addEventListener("click", function () { openEditor(app.name, n.name); });
      v.canvas.appendChild(el);
      v.nodes[n.name] = el;
    });
    return v;
  }

  function role(el, r) { return el.querySelector('[data-role="' + r + '"]'); }

  function render(snap) {
    latest = snap;
    var seen = {};
    snap.apps.forEach(function (app) {
      seen[app.name] = true;
      var v = buildApp(app);
      var st = role(v.sec, "app-status");
      st.textContent = app.status;
      st.setAttribute("data-status", app.status);
      role(v.sec, "app-message").textContent = app.message || "";
      Object.keys(v.nodes).forEach(function (name) {
        var el = v.nodes[name];
        var d = app.deployments[name];
        if (!d) return;
        var running = d.replicas.filter(function (r) { return r.state === "RUNNING"; }).length;
        el.setAttribute("data-running", String(running));
        el.setAttribute("data-target", String(d.targetReplicas));
        el.setAttribute("data-requests", String(d.requests));
        var b = role(el, "status");
        b.textContent = d.status;
        b.setAttribute("data-status", d.status);
        var reps = role(el, "replicas");
        reps.textContent = "";
        d.replicas.forEach(function (r) {
          var dot = make("span", { class: "dot", "data-state": r.state, "data-replica": r.id });
          dot.title = r.id + " · " + r.state + " · pid " + r.pid + (r.restarts ? " · restarts " + r.restarts : "") + (r.rssBytes ? " · " + Math.round(r.rssBytes / 1048576) + " MiB" : "");
          reps.appendChild(dot);
        });
        reps.appendChild(document.createTextNode(running + " running / " + d.targetReplicas + (d.message ? " — " + d.message : "")));
        role(el, "rps").textContent = d.requestsPerS.toFixed(1);
        role(el, "p50").textContent = ms(d.p50S);
        role(el, "p99").textContent = ms(d.p99S);
        role(el, "errors").textContent = d.errorRate === null ? "–" : (d.errorRate * 100).toFixed(1) + "%";
        role(el, "queued").textContent = String(d.queued);
        role(el, "ongoing").textContent = String(d.ongoing);
        role(el, "requests").textContent = String(d.requests);
        role(el, "target").textContent = (d.numReplicas === "auto" ? "auto " : "") + d.targetReplicas;
        var note = role(el, "message");
        if (note.className === "msg" && note.textContent === "scaling to " + d.targetReplicas && running === d.targetReplicas) note.textContent = "";
      });
    });
    Object.keys(views).forEach(function (name) {
      if (!seen[name]) { views[name].sec.remove(); delete views[name]; }
    });
  }

  function panel(app, name) {
    var a = latest && latest.apps.filter(function (x) { return x.name === app; })[0];
    return a && a.deployments[name];
  }

  // ------------------------------------------------------------ changes, through the same PATCH as curl
  function patch(app, name, body, wait) {
    var url = "/api/applications/" + encodeURIComponent(app) + "/deployments/" + encodeURIComponent(name) + (wait ? "" : "?wait=false");
    return fetch(url, { method: "PATCH", headers: authed({ "content-type": "application/json" }), body: JSON.stringify(body) }).then(function (res) {
      return res.text().then(function (text) {
        if (res.ok) return null;
        var msg = "HTTP " + res.status;
        try { msg = JSON.parse(text).message || msg; } catch (e) { msg = text || msg; }
        return msg;
      });
    });
  }

  function scale(app, name, delta) {
    var d = panel(app, name);
    var el = views[app] && views[app].nodes[name];
    if (!d || !el) return;
    var from = typeof d.numReplicas === "number" ? d.numReplicas : d.targetReplicas;
    var to = from + delta;
    var msg = role(el, "message");
    var buttons = el.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    msg.className = "msg";
    msg.textContent = "scaling to " + to + "…";
    patch(app, name, { numReplicas: to }, false).then(function (err) {
      if (err) { msg.className = "msg error"; msg.textContent = "refused: " + err; }
      else msg.textContent = "scaling to " + to;
    }).catch(function (e) {
      msg.className = "msg error";
      msg.textContent = "failed: " + e.message;
    }).then(function () {
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  function openEditor(app, name) {
    var d = panel(app, name);
    editing = { app: app, name: name };
    document.getElementById("editor-title").textContent = "userConfig of " + app + "/" + name;
    document.getElementById("editor-text").value = JSON.stringify(d ? d.userConfig : null, null, 2);
    var m = document.getElementById("editor-msg");
    m.className = "msg";
    m.textContent = "Applied with reconfigure() on every replica, in place; refused whole if one throws.";
    document.getElementById("editor").hidden = false;
  }
  document.getElementById("editor-close").addEventListener("click", function () {
    document.getElementById("editor").hidden = true;
    editing = null;
  });
  document.getElementById("editor-apply").addEventListener("click", function () {
    if (!editing) return;
    var m = document.getElementById("editor-msg");
    var value;
    try { value = JSON.parse(document.getElementById("editor-text").value); }
    catch (e) { m.className = "msg error"; m.textContent = "not valid JSON: " + e.message; return; }
    var target = editing;
    var apply = document.getElementById("editor-apply");
    apply.disabled = true;
    m.className = "msg";
    m.textContent = "applying…";
    patch(target.app, target.name, { userConfig: value }, true).then(function (err) {
      if (err) { m.className = "msg error"; m.textContent = "refused: " + err; }
      else m.textContent = "applied to every replica of " + target.name;
    }).catch(function (e) {
      m.className = "msg error";
      m.textContent = "failed: " + e.message;
    }).then(function () { apply.disabled = false; });
  });

  connect();
})();
`;

/** The whole page, served at `GET /` on the admin port. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>serve-bin dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header class="top"><h1>serve-bin</h1><span id="conn" data-state="connecting">connecting…</span></header>
<form id="login" hidden><span id="login-msg"></span> <input id="token" type="password" autocomplete="off" placeholder="admin token"> <button>use</button></form>
<main id="apps"></main>
<div id="editor" hidden>
<h3 id="editor-title"></h3>
<textarea id="editor-text" spellcheck="false"></textarea>
<div class="controls"><button id="editor-apply">apply</button><button id="editor-close">close</button></div>
<div id="editor-msg" class="msg" data-role="config-message"></div>
</div>
<script>${SCRIPT}</script>
</body>
</html>
`;
