// Runs in <head> before the page paints: applies a remembered theme choice (no flash of
// the other theme) and marks that scripts run (the theme button shows only then).
(function () {
  'use strict';
  var root = document.documentElement;
  root.classList.add('js');
  try {
    var t = window.localStorage.getItem('joyride-theme');
    if (t === 'dark' || t === 'light') root.setAttribute('data-theme', t);
  } catch (e) { /* storage disabled: follow the system */ }
})();
