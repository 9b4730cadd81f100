// The embeddable boxes' script, in two places:
// - on another site's page, loaded as /embed/hot.js?… (or /embed/latest.js?…): it draws the box that
//   /embed/hot?… serves into a Shadow DOM just before its own <script> element, so that neither page's
//   CSS reaches the other;
// - in the box's own page (/embed/hot in an iframe): it keeps that box fresh.
// Either way the box is fetched again every data-refresh seconds while it is in view, as a conditional
// request (the browser sends If-None-Match), so an unchanged box costs a 304 and is not redrawn.
// The tabs are radio buttons and CSS: they work without this script. Its one global name is FeedsEmbed.
(function () {
  "use strict";

  var script = document.currentScript;

  function fetchBox(url) {
    return fetch(url, { cache: "no-cache", credentials: "omit" }).then(function (response) {
      if (!response.ok) throw new Error(url + " answered " + response.status);
      return response.text();
    });
  }

  function boxOf(html) {
    return new DOMParser().parseFromString(html, "text/html").querySelector(".box");
  }

  // Put `fresh` (a box parsed from its page) in `root` (a shadow root, or the box's own page), keeping
  // the tab chosen; the first time, with the page's style.
  function draw(root, fresh) {
    var old = root.querySelector(".box");
    var chosen = old && old.querySelector("input:checked");
    var box = document.importNode(fresh, true);
    if (old) {
      old.replaceWith(box);
    } else {
      fresh.ownerDocument.querySelectorAll("style").forEach(function (style) {
        root.appendChild(document.importNode(style, true));
      });
      root.appendChild(box);
    }
    var same = chosen && box.querySelector('input[value="' + chosen.value + '"]');
    if (same) same.checked = true;
  }

  // Fetch `url` again every data-refresh seconds while the page is visible, and redraw when it changed.
  function keepFresh(root, url) {
    var box = root.querySelector(".box");
    if (!box) return;
    var seconds = Number(box.getAttribute("data-refresh")) || 300;
    var shown = box.outerHTML;
    var due = Date.now() + seconds * 1000;
    function refresh() {
      if (document.visibilityState !== "visible" || Date.now() < due) return;
      due = Date.now() + seconds * 1000;
      fetchBox(url).then(function (html) {
        var fresh = boxOf(html);
        if (fresh && fresh.outerHTML !== shown) {
          shown = fresh.outerHTML;
          draw(root, fresh);
        }
      }, function () { /* keep showing the box there is; try again next time */ });
    }
    window.setInterval(refresh, Math.min(seconds, 60) * 1000);
    document.addEventListener("visibilitychange", refresh);
  }

  // Draw the box served at `url` into a Shadow DOM on `host`, and keep it fresh.
  function mount(host, url) {
    var root = host.attachShadow({ mode: "open" });
    return fetchBox(url).then(function (html) {
      var fresh = boxOf(html);
      if (fresh) {
        draw(root, fresh);
        keepFresh(root, url);
      }
      return root;
    });
  }

  if (!window.FeedsEmbed) {
    window.FeedsEmbed = { mount: mount };
  }

  if (document.documentElement.hasAttribute("data-feeds-embed")) {
    keepFresh(document, window.location.href);
  } else if (script && script.src) {
    var url = new URL(script.src);
    url.pathname = url.pathname.replace(/\.js$/, "");
    var host = document.createElement("div");
    host.className = "feeds-embed";
    script.parentNode.insertBefore(host, script);
    window.FeedsEmbed.mount(host, url.href);
  }
})();
