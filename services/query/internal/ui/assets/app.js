// The dashboards' pages, drawn from the dashboard API with the session cookie. Routes:
//   /ui/                       the signed-in role's home
//   /ui/district               district overview (district admins)
//   /ui/schools/{id}           a school and its classes
//   /ui/classes/{id}           a class and its students
//   /ui/students/{id}          a student (internal id)
//   /ui/benchmarks             the audited cross-district benchmarks (district admins)
//   /ui/analytics              funnels, retention and activation
// Every page takes ?from=YYYY-MM-DD&to=YYYY-MM-DD (default: the 30 days up to today, UTC).
"use strict";

(function () {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");

  // ---- small DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const fmtInt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const fmt1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  const pct = (v) => (v === null || v === undefined ? "–" : fmt1.format(v * 100) + "%");
  const num = (v) => (v === null || v === undefined ? "–" : fmtInt.format(v));
  const hours = (s) => fmt1.format(s / 3600) + " h";

  // ---- range -------------------------------------------------------------------------------------
  function isoDay(d) { return d.toISOString().slice(0, 10); }
  function range() {
    const q = new URLSearchParams(location.search);
    const today = new Date();
    const to = q.get("to") || isoDay(today);
    const from = q.get("from") || isoDay(new Date(Date.parse(to + "T00:00:00Z") - 29 * 86400000));
    return { from, to };
  }
  function withRange(path) {
    const r = range();
    return path + (path.includes("?") ? "&" : "?") + "from=" + r.from + "&to=" + r.to;
  }
  function rangeForm() {
    const r = range();
    const preset = (days, label) => el("button", { type: "button", class: "link", onclick: () => {
      const to = new Date();
      go(location.pathname, { from: isoDay(new Date(to.getTime() - (days - 1) * 86400000)), to: isoDay(to) });
    } }, label);
    return el("form", { class: "range", "aria-label": "Date range", onsubmit: (ev) => {
      ev.preventDefault();
      const f = ev.target;
      go(location.pathname, { from: f.from.value, to: f.to.value });
    } },
      el("label", { for: "from" }, "From"), el("input", { id: "from", name: "from", type: "date", value: r.from, required: true }),
      el("label", { for: "to" }, "To"), el("input", { id: "to", name: "to", type: "date", value: r.to, required: true }),
      el("button", { type: "submit" }, "Show"),
      el("span", { class: "presets" }, preset(7, "Last 7 days"), preset(30, "Last 30 days"), preset(90, "Last 90 days")));
  }
  function go(path, r) {
    const q = new URLSearchParams(location.search);
    if (r) { q.set("from", r.from); q.set("to", r.to); }
    history.pushState(null, "", path + "?" + q.toString());
    route();
  }

  // ---- API ---------------------------------------------------------------------------------------
  class APIError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  async function api(path) {
    const resp = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401) { location.assign("/ui/login"); throw new APIError(401, "signed out"); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new APIError(resp.status, body.detail || resp.statusText);
    return body;
  }

  // ---- pieces ------------------------------------------------------------------------------------
  // kpi is one headline number; data-metric and data-value carry the API's raw value for tests and tools.
  function kpi(metric, label, value, text, sub) {
    return el("div", { class: "kpi", "data-metric": metric, "data-value": value === null || value === undefined ? "" : String(value) },
      el("span", { class: "kpi-label" }, label), el("span", { class: "kpi-value" }, text), sub ? el("span", { class: "kpi-sub" }, sub) : null);
  }
  function kpis(t) {
    const a = t.attendance, s = t.assessments, sub = t.submissions;
    return el("section", { class: "kpis", "aria-label": "Totals over the range" },
      t.active_students !== undefined ? kpi("active_students", "Active students", t.active_students, num(t.active_students)) : null,
      kpi("events", "Events", t.events, num(t.events)),
      kpi("attendance_rate", "Attendance rate", a.rate, pct(a.rate), num(a.marks) + " marks"),
      kpi("mean_score_pct", "Mean score", s.mean_pct, s.mean_pct === null ? "–" : fmt1.format(s.mean_pct) + "%", num(s.count) + " results"),
      kpi("late_submissions", "Late submissions", sub.late, num(sub.late), pct(sub.late_rate) + " of " + num(sub.count)),
      kpi("content_seconds", "Time on content", t.content_seconds, hours(t.content_seconds)),
      kpi("logins", "Logins", t.logins, num(t.logins)));
  }
  // trend draws one measure per day as a line chart with its data table beside it.
  function trend(id, title, days, value, format, integer) {
    const xs = days.map((d) => Date.parse(d.day + "T00:00:00Z") / 1000);
    const ys = days.map((d) => { const v = value(d); return v === null || v === undefined ? null : v; });
    const fig = el("figure", { class: "trend", id: "trend-" + id, "aria-labelledby": "cap-" + id },
      el("figcaption", { id: "cap-" + id }, title));
    const chart = el("div", { class: "chart", role: "img", "aria-label": title + ", one point per day; the table below has the values" });
    fig.append(chart);
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"), el("th", { scope: "col" }, title))),
      el("tbody", {}, days.map((d, i) => el("tr", {}, el("th", { scope: "row" }, d.day), el("td", {}, ys[i] === null ? "–" : format(ys[i]))))));
    fig.append(el("details", {}, el("summary", {}, "Data table"), table));
    requestAnimationFrame(() => {
      if (!window.uPlot || xs.length === 0) return;
      const width = Math.max(240, chart.clientWidth || 320);
      // eslint-disable-next-line no-new
      new uPlot({ width, height: 160, legend: { show: false }, cursor: { show: true },
        scales: { x: { time: true } },
        axes: [{ stroke: "#333", space: 56, incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400],
          values: (u, vals) => vals.map((v) => new Date(v * 1000).toISOString().slice(5, 10)) },
        { stroke: "#333", size: 64, incrs: integer ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000] : undefined,
          values: (u, vals) => vals.map((v) => format(v)) }],
        series: [{}, { label: title, stroke: "#1f5fa8", width: 2, fill: "rgba(31,95,168,0.08)", points: { show: xs.length < 40 } }] },
      [xs, ys], chart);
    });
    return fig;
  }
  function trends(days, active) {
    return el("section", { class: "trends", "aria-label": "Trends" },
      active ? trend("active", "Active students", days, (d) => d.active_students, num, true) : null,
      trend("attendance", "Attendance rate", days, (d) => d.attendance.rate, pct),
      trend("score", "Mean score (%)", days, (d) => d.assessments.mean_pct, (v) => fmt1.format(v)),
      trend("late", "Late submissions", days, (d) => d.submissions.late, num, true),
      trend("content", "Time on content (min)", days, (d) => d.content_seconds / 60, (v) => fmt1.format(v)),
      trend("logins", "Logins", days, (d) => d.logins, num, true));
  }
  // scores shows the spread of assessment scores as the API's deciles and quartiles.
  function scores(s) {
    const rows = [["p10", s.p10], ["p25", s.p25], ["median", s.p50], ["p75", s.p75], ["p90", s.p90]];
    return el("section", { class: "scores", "aria-labelledby": "scores-h" },
      el("h2", { id: "scores-h" }, "Assessment score distribution"),
      s.count === 0 ? el("p", {}, "No assessment results in this range.") :
        el("div", { class: "bars", role: "list" }, rows.map(([k, v]) =>
          el("div", { class: "bar", role: "listitem", "data-quantile": k, "data-value": v === null ? "" : String(v) },
            el("span", { class: "bar-label" }, k), el("span", { class: "bar-track" }, fill(v)),
            el("span", { class: "bar-value" }, v === null ? "–" : fmt1.format(v) + "%")))));
  }
  // fill is a bar's filled part, v percent wide (set through the CSSOM, which the page's policy allows).
  function fill(v) {
    const f = el("span", { class: "bar-fill" });
    f.style.width = Math.max(0, Math.min(100, v || 0)) + "%";
    return f;
  }
  function listTable(caption, items, link) {
    if (items.length === 0) return el("p", { class: "empty" }, "No " + caption.toLowerCase() + " with activity in this range.");
    return el("table", { class: "list" }, el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Active students"), el("th", { scope: "col" }, "Events"))),
      el("tbody", {}, items.map((it) => el("tr", { "data-id": it.id },
        el("th", { scope: "row" }, el("a", { href: withRange(link(it.id)) }, it.id)),
        el("td", {}, num(it.active_students)), el("td", {}, num(it.events))))));
  }
  function heading(text, level) {
    return el("div", { class: "page-head" }, el("h1", {}, text), level ? el("p", { class: "crumb" }, level) : null);
  }
  function problem(err) {
    const msg = err.status === 403 ? "You do not have access to this page with your sign-in." :
      err.status === 422 ? "Not enough districts have data for this in the range; widen the range." :
        "Something went wrong: " + err.message;
    return el("p", { class: "error", role: "alert", "data-status": String(err.status || "") }, msg);
  }

  // ---- pages -------------------------------------------------------------------------------------
  async function summaryPage(title, crumb, path, extra) {
    const s = await api(withRange(path));
    const parts = [heading(title, crumb), rangeForm(), kpis(s.totals), scores(s.totals.assessments), trends(s.days, s.totals.active_students !== undefined)];
    if (extra) parts.push(await extra());
    return parts;
  }
  const pages = {
    district: () => summaryPage("District overview", "District " + session.tenant_id, "/v1/district/summary", async () => {
      const l = await api(withRange("/v1/district/schools"));
      return el("section", { "aria-labelledby": "schools-h" }, el("h2", { id: "schools-h" }, "Schools"),
        listTable("Schools", l.items, (id) => "/ui/schools/" + encodeURIComponent(id)));
    }),
    school: (id) => summaryPage("School " + id, "District " + session.tenant_id, "/v1/schools/" + encodeURIComponent(id) + "/summary", async () => {
      const l = await api(withRange("/v1/schools/" + encodeURIComponent(id) + "/classes"));
      return el("section", { "aria-labelledby": "classes-h" }, el("h2", { id: "classes-h" }, "Classes"),
        listTable("Classes", l.items, (c) => "/ui/classes/" + encodeURIComponent(c)),
        el("p", {}, el("a", { href: withRange("/ui/analytics?school_id=" + encodeURIComponent(id)) }, "Product analytics of this school")));
    }),
    class: (id) => summaryPage("Class " + id, "District " + session.tenant_id, "/v1/classes/" + encodeURIComponent(id) + "/summary", async () => {
      const l = await api("/v1/classes/" + encodeURIComponent(id) + "/students");
      return el("section", { "aria-labelledby": "students-h" }, el("h2", { id: "students-h" }, "Students"),
        el("p", {}, el("a", { href: withRange("/ui/analytics?class_id=" + encodeURIComponent(id)) }, "Product analytics of this class")),
        l.students.length === 0 ? el("p", { class: "empty" }, "No students enrolled.") :
          el("table", { class: "list" }, el("caption", {}, "Students of the class"),
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Student"), el("th", { scope: "col" }, "District id"))),
            el("tbody", {}, l.students.map((s) => el("tr", { "data-id": s.internal_id },
              el("th", { scope: "row" }, el("a", { href: withRange("/ui/students/" + s.internal_id) }, s.family_name + ", " + s.given_name)),
              el("td", {}, s.sourced_id))))));
    }),
    student: (id) => summaryPage("Student", "District " + session.tenant_id, "/v1/students/" + encodeURIComponent(id) + "/summary"),
    benchmarks: async () => {
      const metrics = [["attendance_rate", "Attendance rate", pct], ["mean_score_pct", "Mean score", (v) => fmt1.format(v) + "%"],
        ["late_submission_rate", "Late submission rate", pct], ["content_minutes_per_student", "Content minutes per student", (v) => fmt1.format(v)],
        ["logins_per_student", "Logins per student", (v) => fmt1.format(v)]];
      const out = [heading("Benchmarks", "Your district against bands of districts; no district is named. Every view is written to the audit log."), rangeForm()];
      for (const [m, label, f] of metrics) {
        const sec = el("section", { class: "benchmark", "data-metric": m, "aria-labelledby": "b-" + m }, el("h2", { id: "b-" + m }, label));
        try {
          const b = await api(withRange("/v1/benchmarks/" + m));
          sec.append(el("p", { class: "yours", "data-value": b.your_district === null ? "" : String(b.your_district) },
            "Your district: ", el("strong", {}, b.your_district === null ? "not enough data" : f(b.your_district)),
            " · " + b.districts + " districts"));
          sec.append(el("table", { class: "list" }, el("caption", {}, label + " by band of districts"),
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Band"), el("th", { scope: "col" }, "Districts"), el("th", { scope: "col" }, "Mean"))),
            el("tbody", {}, b.bands.map((band, i) => el("tr", { class: i === b.your_band ? "mine" : "", "data-band": String(i), "data-mean": String(band.mean) },
              el("th", { scope: "row" }, band.from_pct + "–" + band.to_pct + "%" + (i === b.your_band ? " (yours)" : "")),
              el("td", {}, String(band.districts)), el("td", {}, f(band.mean)))))));
        } catch (err) {
          sec.append(problem(err));
        }
        out.push(sec);
      }
      return out;
    },
    analytics: async () => {
      const q = new URLSearchParams(location.search);
      const steps = q.get("steps") || "login,content_view,submission";
      // The scope: a class or school of the URL, else a school admin's first school; district admins may read the whole district.
      let scope = "";
      if (q.get("class_id")) scope = "&class_id=" + encodeURIComponent(q.get("class_id"));
      else if (q.get("school_id")) scope = "&school_id=" + encodeURIComponent(q.get("school_id"));
      else if (session.role === "school_admin" && session.schools && session.schools.length) scope = "&school_id=" + encodeURIComponent(session.schools[0]);
      const what = q.get("class_id") ? "class " + q.get("class_id") : q.get("school_id") ? "school " + q.get("school_id") :
        scope ? "school " + session.schools[0] : "district " + session.tenant_id;
      const out = [heading("Product analytics", "Funnels, retention and activation of " + what), rangeForm()];
      const form = el("form", { class: "range", "aria-label": "Funnel steps", onsubmit: (ev) => {
        ev.preventDefault();
        const p = new URLSearchParams(location.search); p.set("steps", ev.target.steps.value);
        history.pushState(null, "", location.pathname + "?" + p.toString()); route();
      } }, el("label", { for: "steps" }, "Funnel steps (event types or custom names, comma-separated)"),
        el("input", { id: "steps", name: "steps", value: steps, size: 48 }), el("button", { type: "submit" }, "Show"));
      out.push(form);
      const sec = (id, title, fill) => {
        const s = el("section", { "aria-labelledby": id + "-h", id }, el("h2", { id: id + "-h" }, title));
        return fill(s).then(() => s, (err) => { s.append(problem(err)); return s; });
      };
      out.push(await sec("funnel", "Funnel (within 7 days)", async (s) => {
        const f = await api(withRange("/v1/funnels?window=7d&steps=" + encodeURIComponent(steps) + scope));
        s.append(el("table", { class: "list" }, el("caption", {}, "Students reaching each step"),
          el("thead", {}, el("tr", {}, ["Step", "Students", "From previous", "From first"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, (f.steps || []).map((st) => el("tr", { "data-step": st.name },
            el("th", { scope: "row" }, st.name), el("td", {}, num(st.students)), el("td", {}, pct(st.conversion_from_previous)), el("td", {}, pct(st.conversion_from_first)))))));
      }));
      out.push(await sec("retention", "Weekly retention", async (s) => {
        const r = await api(withRange("/v1/retention?weeks=4" + scope));
        const cohorts = r.cohorts || [];
        s.append(cohorts.length === 0 ? el("p", { class: "empty" }, "No active students in this range.") :
          el("table", { class: "list" }, el("caption", {}, "Share of each week's active students active again"),
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Week"), el("th", { scope: "col" }, "Active"),
              (cohorts[0].retained || []).map((_, i) => el("th", { scope: "col" }, "W+" + (i + 1))))),
            el("tbody", {}, cohorts.map((c) => el("tr", {}, el("th", { scope: "row" }, c.week), el("td", {}, num(c.students)),
              (c.retained || []).map((x) => el("td", {}, pct(x.share))))))));
      }));
      out.push(await sec("activation", "Activation within 14 days of enrollment", async (s) => {
        const a = await api(withRange("/v1/activation?days=14" + scope));
        s.append(el("p", { "data-value": a.share === null || a.share === undefined ? "" : String(a.share) },
          num(a.activated) + " of " + num(a.enrolled) + " students enrolled in the range (" + pct(a.share) + ")"));
      }));
      return out;
    },
    home: async () => {
      switch (session.role) {
        case "district_admin": return pages.district();
        case "school_admin":
          if (session.schools && session.schools.length === 1) return pages.school(session.schools[0]);
          return [heading("Your schools"), rangeForm(), listTable("Schools", (await api(withRange("/v1/district/schools"))).items,
            (id) => "/ui/schools/" + encodeURIComponent(id))];
        case "teacher": {
          const l = await api(withRange("/v1/teacher/classes"));
          return [heading("Your classes"), rangeForm(), listTable("Classes", l.items, (id) => "/ui/classes/" + encodeURIComponent(id))];
        }
        case "parent": {
          const l = await api("/v1/parent/students");
          if (l.students.length === 1) return pages.student(l.students[0].internal_id);
          return [heading("Your children"), el("ul", { class: "children" }, l.students.map((s) =>
            el("li", {}, el("a", { href: withRange("/ui/students/" + s.internal_id) }, s.given_name + " " + s.family_name))))];
        }
        default: return [el("p", {}, "This sign-in has no dashboards.")];
      }
    },
  };

  // ---- navigation and routing --------------------------------------------------------------------
  let session = null;
  function navLinks() {
    const links = [["/ui/", "Home"]];
    if (session.role === "district_admin") links.push(["/ui/benchmarks", "Benchmarks"]);
    if (session.role === "district_admin" || session.role === "school_admin") links.push(["/ui/analytics", "Product analytics"]);
    nav.replaceChildren(el("span", { class: "brand" }, "edtech-analytics"), el("span", { class: "who" }, session.tenant_id + " · " + session.role.replace("_", " ")),
      el("ul", {}, links.map(([href, label]) => el("li", {}, el("a", { href: withRange(href), "aria-current": location.pathname === href ? "page" : false }, label)))));
  }
  async function route() {
    main.dataset.ready = "false";
    const parts = location.pathname.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    let view;
    switch (parts[0]) {
      case undefined: view = pages.home(); break;
      case "district": view = pages.district(); break;
      case "schools": view = pages.school(parts[1]); break;
      case "classes": view = pages.class(parts[1]); break;
      case "students": view = pages.student(parts[1]); break;
      case "benchmarks": view = pages.benchmarks(); break;
      case "analytics": view = pages.analytics(); break;
      default: view = Promise.resolve([el("p", { class: "error", role: "alert" }, "No such page.")]);
    }
    navLinks();
    main.setAttribute("aria-busy", "true");
    let content;
    try {
      content = await view;
    } catch (err) {
      content = [heading("Dashboards"), problem(err)];
    }
    main.replaceChildren(...[content].flat());
    main.setAttribute("aria-busy", "false");
    // Ready once the charts (drawn on the next animation frame) are on the page; renderedMs is the first
    // page's time from navigation start, which the render benchmark reads.
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    if (!main.dataset.renderedMs) main.dataset.renderedMs = String(Math.round(performance.now()));
    main.dataset.ready = "true";
    const h1 = main.querySelector("h1");
    if (h1) document.title = h1.textContent + " · edtech-analytics";
  }
  // Links within the dashboards change the page without reloading it.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a");
    if (!a || a.origin !== location.origin || !a.pathname.startsWith("/ui/") || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    ev.preventDefault();
    history.pushState(null, "", a.pathname + a.search);
    main.dataset.ready = "false";
    route().then(() => main.focus());
  });
  window.addEventListener("popstate", route);

  fetch("/ui/session", { credentials: "same-origin" }).then((r) => {
    if (r.status === 401) { location.assign("/ui/login"); return null; }
    return r.json();
  }).then((s) => {
    if (!s) return;
    session = s;
    route();
  });
})();
