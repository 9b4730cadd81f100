// The index's filter box and the copy buttons. Without this script the pages still work:
// every URL is a link, and the filter box and copy buttons stay hidden.
(function () {
  "use strict";

  var announcer = document.getElementById("announce");

  function announce(message) {
    if (!announcer) return;
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = message; }, 50);
  }

  // -- copy to clipboard ---------------------------------------------------------------

  function copyWithSelection(text) {
    // For pages served over plain http, where navigator.clipboard is missing.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    document.body.removeChild(area);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return copyWithSelection(text); });
    }
    return copyWithSelection(text);
  }

  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.hidden = false;
    var label = button.textContent;
    button.addEventListener("click", function () {
      copy(button.getAttribute("data-copy")).then(function () {
        button.textContent = "已复制";
        button.classList.add("copied");
        announce("已复制：" + button.getAttribute("data-copy"));
      }, function () {
        button.textContent = "复制失败";
        announce("复制失败，请长按或右键点击链接复制地址。");
      }).then(function () {
        window.setTimeout(function () {
          button.textContent = label;
          button.classList.remove("copied");
        }, 2000);
      });
    });
  });

  // -- the filter box ------------------------------------------------------------------

  var form = document.querySelector("[data-filter]");
  if (!form) return;
  var input = form.querySelector("input");
  var status = document.getElementById("filter-status");
  var noMatch = document.querySelector("[data-no-match]");
  var entries = Array.prototype.slice.call(document.querySelectorAll("li.feed"));
  var groups = Array.prototype.slice.call(document.querySelectorAll("section.group"));
  var haystacks = entries.map(function (li) { return normalise(li.getAttribute("data-search") || ""); });

  function normalise(text) {
    return text.toLowerCase().replace(/[\s>·\/\-_]+/g, "");
  }

  function apply() {
    var query = normalise(input.value);
    var shown = 0;
    var visible = new Array(entries.length);
    // Children come after their parents in document order: walk backwards so a parent
    // stays visible when any of its sub-categories matches.
    for (var i = entries.length - 1; i >= 0; i--) {
      var li = entries[i];
      var match = !query || haystacks[i].indexOf(query) !== -1;
      if (!match) {
        var children = li.querySelectorAll("li.feed");
        for (var j = 0; j < children.length && !match; j++) match = !children[j].hidden;
      }
      li.hidden = !match;
      visible[i] = match;
    }
    for (var k = 0; k < visible.length; k++) if (visible[k]) shown++;
    groups.forEach(function (group) {
      group.hidden = !group.querySelector("li.feed:not([hidden])");
    });
    if (noMatch) noMatch.hidden = shown > 0;
    status.textContent = query ? (shown ? "显示 " + shown + " / " + entries.length + " 个订阅源" : "没有匹配的订阅源") : "";
  }

  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  input.addEventListener("input", apply);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && input.value) { input.value = ""; apply(); }
  });
  if (input.value) apply();
})();
