// Comforts only: every page works without this file.
(function () {
  // Auto-refresh keeps the scroll position and pauses while a span's details are open.
  var refresh = document.getElementById('refresh');
  if (refresh && refresh.classList.contains('on')) {
    var meta = document.querySelector('meta[http-equiv="refresh"]');
    if (meta) meta.remove();
    setInterval(function () {
      if (document.querySelector('details.span[open]') || document.hidden) return;
      sessionStorage.setItem('flowscope-scroll', String(window.scrollY));
      location.reload();
    }, 15000);
    var y = sessionStorage.getItem('flowscope-scroll');
    if (y) { window.scrollTo(0, Number(y)); sessionStorage.removeItem('flowscope-scroll'); }
  }
  // "/" focuses the search box, as in most dashboards.
  document.addEventListener('keydown', function (e) {
    if (e.key === '/' && !/input|textarea/i.test(document.activeElement.tagName)) {
      var q = document.querySelector('form.search input');
      if (q) { e.preventDefault(); q.focus(); }
    }
  });
  // Times shown in UTC on the server get the viewer's local time as a tooltip.
  document.querySelectorAll('[data-unix-nano]').forEach(function (el) {
    el.title = new Date(Number(el.dataset.unixNano) / 1e6).toString();
  });
})();
// The rule form shows only the parameters of the chosen kind.
(function () {
  document.querySelectorAll('form.rule').forEach(function (form) {
    var kind = form.querySelector('select[name="kind"]');
    if (!kind) return;
    function sync() {
      form.querySelectorAll('label.param').forEach(function (label) {
        label.hidden = label.dataset.kinds.split(' ').indexOf(kind.value) < 0;
      });
    }
    kind.addEventListener('change', sync);
    sync();
  });
})();
