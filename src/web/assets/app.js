// The page's live behaviour. The server renders everything (the page works without this
// script); this swaps in the HTML fragments pushed by /events (or polled from /page.json),
// filters the records table as you type, and keeps the theme choice.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var root = document.documentElement;
  var filter = $('filter');
  var tbody = $('records-body');
  var live = $('live');
  var POLL_MS = 2000;

  // ---- filter -------------------------------------------------------------------------
  function terms() {
    return filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function applyFilter() {
    var want = terms();
    var rows = tbody.rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].getAttribute('data-search') || '';
      var ok = want.every(function (w) { return text.indexOf(w) !== -1; });
      rows[i].hidden = !ok;
      if (ok) shown++;
    }
    $('record-count').textContent = want.length ? shown + ' of ' + rows.length : String(rows.length);
    $('records-empty').hidden = shown > 0;
  }

  filter.addEventListener('input', function () {
    applyFilter();
    var url = new URL(window.location.href);
    if (filter.value) url.searchParams.set('q', filter.value);
    else url.searchParams.delete('q');
    window.history.replaceState(null, '', url);
  });
  $('filter-form').addEventListener('submit', function (e) { e.preventDefault(); });

  // ---- sorting (kept across live updates) ----------------------------------------------
  var sortCol = -1;
  var sortDir = 1;
  var heads = document.querySelectorAll('#records thead th');
  function sortRows() {
    if (sortCol < 0) return;
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[sortCol].textContent;
      var y = b.cells[sortCol].textContent;
      return sortDir * x.localeCompare(y, undefined, { numeric: true, sensitivity: 'base' });
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    th.classList.add('sortable');
    th.tabIndex = 0;
    th.setAttribute('aria-sort', 'none');
    function activate() {
      if (sortCol === i) sortDir = -sortDir;
      else { sortCol = i; sortDir = 1; }
      Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
      th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      sortRows();
    }
    th.addEventListener('click', activate);
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(); }
    });
  });

  // ---- live updates -------------------------------------------------------------------
  function setLive(state, text) {
    live.setAttribute('data-state', state);
    live.textContent = text;
  }

  function apply(p) {
    if (typeof p.records === 'string') {
      tbody.innerHTML = p.records;
      sortRows();
      applyFilter();
    }
    $('components').innerHTML = p.components;
    $('cluster-body').innerHTML = p.cluster;
    $('member-count').textContent = String(p.members);
    $('queries').innerHTML = p.queries;
    $('updated').textContent = p.updated;
    var overall = $('overall');
    overall.textContent = p.healthy ? 'healthy' : 'unhealthy';
    overall.className = 'badge ' + (p.healthy ? 'ok' : 'bad');
    document.body.setAttribute('data-generation', String(p.generation));
  }

  var polling = null;
  function poll() {
    fetch('/page.json', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (p) { apply(p); setLive('polling', 'live (polling)'); })
      .catch(function () { setLive('offline', 'offline'); });
  }
  function startPolling() {
    if (polling) return;
    poll();
    polling = window.setInterval(poll, POLL_MS);
  }

  function startEvents() {
    if (!window.EventSource) { startPolling(); return; }
    var es = new EventSource('/events');
    es.addEventListener('page', function (e) {
      try { apply(JSON.parse(e.data)); setLive('live', 'live'); } catch (err) { /* keep the last view */ }
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) { es.close(); startPolling(); }
      else setLive('offline', 'reconnecting…');
    };
  }

  // ---- theme --------------------------------------------------------------------------
  var dark = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  var toggle = $('theme-toggle');
  function effectiveTheme() {
    var t = root.getAttribute('data-theme');
    if (t === 'dark' || t === 'light') return t;
    return dark && dark.matches ? 'dark' : 'light';
  }
  function showToggle() {
    var next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    toggle.textContent = next === 'dark' ? '\u263E Dark' : '\u2600 Light';
    toggle.setAttribute('aria-label', 'Switch to the ' + next + ' theme');
    toggle.setAttribute('data-current', effectiveTheme());
  }
  // The choice is kept only while it differs from the system's: toggling back to the
  // system's theme means "follow the system" again.
  toggle.addEventListener('click', function () {
    var next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    var system = dark && dark.matches ? 'dark' : 'light';
    try {
      if (next === system) window.localStorage.removeItem('joyride-theme');
      else window.localStorage.setItem('joyride-theme', next);
    } catch (e) { /* not remembered */ }
    if (next === system) root.removeAttribute('data-theme');
    else root.setAttribute('data-theme', next);
    showToggle();
  });
  if (dark && dark.addEventListener) dark.addEventListener('change', showToggle);

  showToggle();
  applyFilter();
  startEvents();
})();
