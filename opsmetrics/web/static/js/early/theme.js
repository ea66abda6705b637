// A classic script in <head> (not a module, not inline: the CSP allows no inline script).
// Apply the stored theme before first paint (no flash).
(function () {
  try {
    var t = localStorage.getItem("opsmetrics-theme");
    if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage blocked: follow the system */ }
  /* The first number formatter loads the locale's data (tens of milliseconds): make it
     while the page still waits for its modules, not while it draws. */
  setTimeout(function () { new Intl.NumberFormat().format(0); }, 0);
})();
