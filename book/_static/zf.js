/* The book's own script (_config.yml html_js_files): every image of a chapter opens at full size,
 * and has alt text in words.
 *
 * - Each image in a cell's output is wrapped in a link to its own file (a data: image, as in the
 *   sheets and galleries, to a blob: copy of it, which a browser opens where it refuses data:
 *   links), so a click shows it at full resolution in a new tab.
 * - An image whose alt text is missing or a file path (myst-nb writes the path) takes the text of
 *   the numbered caption that follows it (zfcore.plots.caption: div.zf-caption), else the text
 *   of the section it is in.
 * - On a chapter, zf.css drops the right-hand "on this page" sidebar on wide screens; the article
 *   header's list button then opens it as the theme's drawer (the theme binds only the first such
 *   button of the page, which is hidden there).
 * Nothing is loaded from anywhere.
 */
(function () {
  "use strict";

  function dataUrlToBlobUrl(src) {
    var comma = src.indexOf(",");
    var meta = src.slice(5, comma);                     // "image/png;base64"
    var type = meta.split(";")[0] || "application/octet-stream";
    var body = src.slice(comma + 1);
    var bytes;
    if (/;base64$/.test(meta)) {
      var bin = atob(body);
      bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    } else {
      bytes = new TextEncoder().encode(decodeURIComponent(body));
    }
    return URL.createObjectURL(new Blob([bytes], { type: type }));
  }

  function looksLikePath(alt, src) {
    if (!alt || !alt.trim()) return true;
    alt = alt.trim();
    return alt === src || /\.(png|jpe?g|gif|svg|webp)$/i.test(alt) || /^(\.\.\/|\/|_images\/|data:)/.test(alt);
  }

  function words(el) {
    return (el.textContent || "").replace(/\s+/g, " ").replace(/\s*#\s*$/, "").trim();
  }

  function sectionTitle(img) {
    var s = img.closest("section");
    var h = s && s.querySelector("h1, h2, h3, h4");
    return h ? words(h).replace(/[#¶]$/, "").trim() : document.title;
  }

  function outputImages() {
    return Array.prototype.slice.call(document.querySelectorAll(".bd-article .cell_output img"));
  }

  /* The alt text: the caption after the image, before any later caption takes over. */
  function altTexts(images) {
    var captions = Array.prototype.slice.call(document.querySelectorAll(".bd-article .zf-caption"));
    var out = new Map();
    images.forEach(function (img) {
      for (var i = 0; i < captions.length; i++) {
        if (img.compareDocumentPosition(captions[i]) & Node.DOCUMENT_POSITION_FOLLOWING) {
          out.set(img, words(captions[i]));
          return;
        }
      }
    });
    return out;
  }

  function linkToFull(img) {
    if (img.closest("a")) return;
    var src = img.getAttribute("src") || "";
    if (!src) return;
    var href = src.indexOf("data:") === 0 ? dataUrlToBlobUrl(src) : img.src;
    var a = document.createElement("a");
    a.className = "zf-full";
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    var size = function () {
      a.title = "Open at full size" + (img.naturalWidth ? " (" + img.naturalWidth + " x " + img.naturalHeight + " px)" : "");
    };
    if (img.complete) size(); else img.addEventListener("load", size);
    img.parentNode.insertBefore(a, img);
    a.appendChild(img);
  }

  function pageContentsButton() {
    var buttons = document.querySelectorAll(".secondary-toggle");
    var bound = buttons[0];
    Array.prototype.forEach.call(buttons, function (b) {
      if (b === bound || !b.closest(".bd-header-article")) return;
      b.addEventListener("click", function (e) {
        if (getComputedStyle(bound).display !== "none") return;        // the theme's own button shows
        e.preventDefault();
        e.stopPropagation();
        bound.click();
      });
    });
  }

  function run() {
    pageContentsButton();
    var images = outputImages();
    var alts = altTexts(images);
    images.forEach(function (img) {
      var src = img.getAttribute("src") || "";
      if (looksLikePath(img.getAttribute("alt"), src)) {
        var text = alts.get(img);
        img.setAttribute("alt", text || ("A figure of the section \u201c" + sectionTitle(img) + "\u201d"));
      }
      linkToFull(img);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
