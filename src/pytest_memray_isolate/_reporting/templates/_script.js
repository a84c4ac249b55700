"use strict";
(function () {
  // Sorting: a click (or Enter) on a header with data-sort orders the rows by that column:
  // numbers by the cell's data-v (cells without one last), text by the cell's text.
  function sortBy(table, th, column) {
    var numeric = th.dataset.sort === "num";
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : numeric;
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row, index) {
      var cell = row.cells[column];
      var key = numeric ? (cell.hasAttribute("data-v") ? parseFloat(cell.dataset.v) : null) : cell.textContent.trim();
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

  // Filtering: rows whose first cell holds the text (any case) and whose class is the kind chosen.
  var table = document.getElementById("tests");
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

  // The chart: the bars are in the table's first order, so bar N is row "tN". A bar's title
  // names its test (made when first pointed at); a click shows its row.
  var chart = document.getElementById("chart");
  var bars = Array.prototype.slice.call(chart.querySelectorAll(".bars rect"));
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

  // The log scale: each bar and limit mark carries its log height (data-l); its linear
  // one is read from the page as drawn.
  var log = document.getElementById("log");
  if (log) {
    var height = parseFloat(chart.dataset.height);
    var limits = Array.prototype.slice.call(chart.querySelectorAll(".limits rect"));
    bars.forEach(function (bar) { bar.dataset.h = bar.getAttribute("height"); });
    limits.forEach(function (mark) { mark.dataset.h = height - 1 - parseFloat(mark.getAttribute("y")); });
    log.addEventListener("change", function () {
      chart.classList.toggle("log", log.checked);
      bars.forEach(function (bar) {
        var size = parseFloat(log.checked ? bar.dataset.l : bar.dataset.h);
        bar.setAttribute("y", (height - size).toFixed(1));
        bar.setAttribute("height", size.toFixed(1));
      });
      limits.forEach(function (mark) {
        var size = parseFloat(log.checked ? mark.dataset.l : mark.dataset.h);
        mark.setAttribute("y", (height - size - 1).toFixed(1));
      });
    });
  }
})();
