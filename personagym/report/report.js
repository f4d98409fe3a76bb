// The report's only script: browsing the embedded questions a page at a time, sorting tables, and
// jumping from a persona to its questions. Run data is untrusted, so it only ever reaches the page
// through textContent and createElement: never innerHTML, never attributes that load or run anything.
(function () {
  "use strict";
  var PAGE = 50;
  var data = JSON.parse(document.getElementById("pg-questions").textContent);
  var items = data.items;
  var page = 0;
  var shown = [];

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(value) { return value === null ? "\u2013" : value.toFixed(2); }

  function short(text, n) { return text.length > n ? text.slice(0, n - 1) + "\u2026" : text; }

  function fill(select, names, limit) {
    names.forEach(function (name, i) {
      var option = el("option", null, limit ? short(name, limit) : name);
      option.value = String(i);
      select.appendChild(option);
    });
  }

  function number(id) {
    var value = $(id).value;
    return value === "" || isNaN(Number(value)) ? null : Number(value);
  }

  function keep(item, f) {
    if (f.run !== "" && item.r !== Number(f.run)) return false;
    if (f.task !== "" && item.t !== Number(f.task)) return false;
    if (f.persona !== "" && item.p !== Number(f.persona)) return false;
    if (f.failed && item.s !== null && item.f.length === 0) return false;
    if (f.min !== null && (item.s === null || item.s < f.min)) return false;
    if (f.max !== null && (item.s === null || item.s > f.max)) return false;
    if (f.dis !== null && (item.d === null || item.d < f.dis)) return false;
    return true;
  }

  // Missing scores sort last whichever the direction: they are failures, not low numbers.
  function byScore(sign) {
    return function (a, b) {
      var x = items[a].s, y = items[b].s;
      if (x === null || y === null) return (x === null) - (y === null) || a - b;
      return sign * (x - y) || a - b;
    };
  }

  var SORTS = {
    "order": function (a, b) { return a - b; },
    "score-asc": byScore(1),
    "score-desc": byScore(-1),
    "dis-desc": function (a, b) {
      var x = items[a].d, y = items[b].d;
      if (x === null || y === null) return (x === null) - (y === null) || a - b;
      return y - x || a - b;
    },
    "persona": function (a, b) {
      return data.personas[items[a].p].localeCompare(data.personas[items[b].p]) || a - b;
    }
  };

  function filter() {
    var f = {
      run: $("f-run").value, task: $("f-task").value, persona: $("f-persona").value,
      failed: $("f-failed").checked, min: number("f-min"), max: number("f-max"), dis: number("f-dis")
    };
    shown = [];
    for (var i = 0; i < items.length; i++) if (keep(items[i], f)) shown.push(i);
    shown.sort(SORTS[$("f-sort").value] || SORTS.order);
    page = 0;
    render();
  }

  function block(parent, title, text, cls) {
    parent.appendChild(el("h4", null, title));
    parent.appendChild(el("p", cls || "text", text));
  }

  function card(item) {
    var li = el("li", "q");
    var head = el("div", "q-head");
    head.appendChild(el("span", "q-run", data.runs[item.r]));
    head.appendChild(el("span", "q-task", data.tasks[item.t] + " #" + item.i));
    var score = el("span", "q-score" + (item.s === null ? " missing" : ""), "score " + fmt(item.s));
    score.setAttribute("data-value", item.s === null ? "null" : String(item.s));
    head.appendChild(score);
    if (item.d !== null) head.appendChild(el("span", "q-dis", "disagreement " + item.d));
    li.appendChild(head);
    li.appendChild(el("p", "q-persona", data.personas[item.p]));
    block(li, "Question", data.texts[item.q]);
    if (item.a === null) block(li, "Answer", "No answer: the agent's call failed.", "text missing");
    else block(li, "Answer", item.a);
    if (item.e.length) {
      var details = el("details", "examples");
      details.appendChild(el("summary", null, "Score examples"));
      var dl = el("dl");
      item.e.forEach(function (ref, k) {
        dl.appendChild(el("dt", null, String(k + 1)));
        dl.appendChild(el("dd", "text", ref === null ? "\u2013" : data.texts[ref]));
      });
      details.appendChild(dl);
      li.appendChild(details);
    }
    li.appendChild(el("h4", null, "Verdicts (ensemble " + fmt(item.s) + ")"));
    var verdicts = el("ul", "verdicts");
    if (!item.v.length) verdicts.appendChild(el("li", "missing", "No verdict."));
    item.v.forEach(function (v) {
      var row = el("li");
      row.appendChild(el("strong", null, data.judges[v[0]] + ": " + v[1]));
      row.appendChild(el("span", "text", " " + v[2]));
      verdicts.appendChild(row);
    });
    li.appendChild(verdicts);
    if (item.f.length) {
      li.appendChild(el("h4", null, "Failures"));
      var failures = el("ul", "failures");
      item.f.forEach(function (f) {
        var text = f[0] + " \u00b7 " + f[1] + " \u00b7 " + f[2] + (f[3] ? ": " + f[3] : "");
        failures.appendChild(el("li", "text", text));
      });
      li.appendChild(failures);
    }
    return li;
  }

  function render() {
    var list = $("q-list");
    while (list.firstChild) list.removeChild(list.firstChild);
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    var start = page * PAGE;
    shown.slice(start, start + PAGE).forEach(function (i) { list.appendChild(card(items[i])); });
    list.start = start + 1;
    $("q-count").textContent = shown.length + " of " + items.length + " questions";
    $("q-page").textContent = "page " + (page + 1) + " of " + pages;
    $("q-prev").disabled = page === 0;
    $("q-next").disabled = page >= pages - 1;
  }

  function turn(step) {
    page += step;
    render();
    $("questions").scrollIntoView();
  }

  function sortable(table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = el("button", "sort");
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        var down = th.getAttribute("aria-sort") !== "descending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function (a, b) { return compare(a.cells[col], b.cells[col]) * (down ? -1 : 1); });
        rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
      });
    });
  }

  // Cells with a number sort by its exact value (missing ones last); others by their text.
  function compare(a, b) {
    var x = a.querySelector("[data-value]"), y = b.querySelector("[data-value]");
    if (x && y) {
      var u = x.getAttribute("data-value"), v = y.getAttribute("data-value");
      if (u === "null" || v === "null") return (v === "null") - (u === "null");
      return Number(u) - Number(v);
    }
    return a.textContent.localeCompare(b.textContent);
  }

  fill($("f-run"), data.runs);
  fill($("f-task"), data.tasks);
  fill($("f-persona"), data.personas, 80);
  ["f-run", "f-task", "f-persona", "f-min", "f-max", "f-dis", "f-failed", "f-sort"].forEach(function (id) {
    $(id).addEventListener("input", filter);
  });
  $("q-filters").addEventListener("submit", function (event) { event.preventDefault(); });
  $("q-prev").addEventListener("click", function () { turn(-1); });
  $("q-next").addEventListener("click", function () { turn(1); });
  $("q-filters").hidden = false;
  document.querySelector("#questions .pager").hidden = false;
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
  Array.prototype.forEach.call(document.querySelectorAll("button.to-questions"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      $("f-run").value = button.getAttribute("data-run");
      $("f-persona").value = button.getAttribute("data-persona");
      filter();
      $("questions").scrollIntoView();
    });
  });
  filter();
})();
