"use strict";
(function () {
  // Sorting: a click (or Enter) on a header with data-sort orders the rows by that column:
  // numbers by the cell's data-v, else by its text: a size as the page writes it ("38.6MiB",
  // "-2.0MiB": sorted as shown), or a plain number ("1,234", "0.163s"); cells with none of
  // these ("—") last. Text columns by the cell's text. (Reading the figures from the text
  // spares the page a copy of each: 200 kB at 5,000 tests.)
  var UNITS = {"": 1, "Ki": 1024, "Mi": 1048576, "Gi": 1073741824, "Ti": 1099511627776, "Pi": 1125899906842624};
  function numberIn(cell) {
    if (cell.hasAttribute("data-v")) { return parseFloat(cell.dataset.v); }
    var text = cell.textContent.replace(/,/g, "");
    var size = /^([+-]?[\d.]+)(Ki|Mi|Gi|Ti|Pi)?B$/.exec(text);
    var value = size ? parseFloat(size[1]) * UNITS[size[2] || ""] : parseFloat(text);
    return isFinite(value) ? value : null;
  }
  function sortBy(table, th, column) {
    var numeric = th.dataset.sort === "num";
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : numeric;
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row, index) {
      var cell = row.cells[column];
      var key = numeric ? numberIn(cell) : cell.textContent.trim();
      return [key, index, row];
    });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {
        return a[0] === b[0] ? a[1] - b[1] : a[0] === null ? 1 : -1;
      }
      var order = numeric ? a[0] - b[0] : a[0].localeCompare(b[0]);
      return (descending ? -order : order) || a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (item) { fragment.appendChild(item[2]); });
    body.appendChild(fragment);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      if (!th.dataset.sort) { return; }
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, column); });
      th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sortBy(table, th, column); } });
    });
  });

  // Row N of the tests' table, in the page's first order, is "tN": bar N's row, and the
  // target of the links to it (set here rather than written N times into the page).
  var table = document.getElementById("tests");
  Array.prototype.forEach.call(table.tBodies[0].rows, function (row, index) { row.id = "t" + index; });
  if (location.hash) {
    var target = document.getElementById(location.hash.slice(1));
    if (target) { target.scrollIntoView(); }
  }

  // Filtering: rows whose first cell holds the text (any case) and whose class is the kind chosen.
  var text = document.getElementById("filter");
  var kind = document.getElementById("kind");
  var shown = document.getElementById("shown");
  function filter() {
    var wanted = text.value.trim().toLowerCase();
    var chosen = kind.value;
    var count = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var visible = (!wanted || row.cells[0].textContent.toLowerCase().indexOf(wanted) >= 0) &&
        (!chosen || row.classList.contains(chosen));
      row.hidden = !visible;
      count += visible ? 1 : 0;
    });
    shown.textContent = count + " of " + table.tBodies[0].rows.length + " shown";
  }
  text.addEventListener("input", filter);
  kind.addEventListener("change", filter);
  filter();

  // The chart: bar N is test N of the table's first order. A bar's title names its test
  // (made when first pointed at); a click shows its row.
  var chart = document.getElementById("chart");
  var bars = Array.prototype.slice.call(chart.querySelectorAll(".bars path"));
  var main = parseInt(table.dataset.main, 10);
  chart.addEventListener("mouseover", function (event) {
    var index = bars.indexOf(event.target);
    if (index >= 0 && !event.target.firstChild) {
      var cells = document.getElementById("t" + index).cells;
      var title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = cells[0].textContent.trim() + ": " + cells[main].textContent;
      event.target.appendChild(title);
    }
  });
  chart.addEventListener("click", function (event) {
    var index = bars.indexOf(event.target);
    if (index >= 0) { location.hash = "t" + index; }
  });

  // The log scale: each bar and limit mark carries its log height (data-l); the linear
  // drawing is the page's own, kept to switch back.
  var log = document.getElementById("log");
  if (log) {
    var height = parseFloat(chart.dataset.height);
    var marks = Array.prototype.slice.call(chart.querySelectorAll("[data-l]"));
    var linear = marks.map(function (mark) { return mark.getAttribute("d"); });
    log.addEventListener("change", function () {
      chart.classList.toggle("log", log.checked);
      marks.forEach(function (mark, index) {
        if (!log.checked) {
          mark.setAttribute("d", linear[index]);
          return;
        }
        // "M x base V top" for a bar, "M left y h width" for a limit mark.
        var parts = linear[index].match(/^M([\d.]+) ([\d.]+)([Vh])([\d.]+)$/);
        var top = (height - parseFloat(mark.dataset.l)).toFixed(1);
        mark.setAttribute("d", parts[3] === "V" ? "M" + parts[1] + " " + parts[2] + "V" + top : "M" + parts[1] + " " + top + "h" + parts[4]);
      });
    });
  }
})();
