/* Script-tag embed for the question-answering chat.
 *
 *   <script src="ORIGIN/static/widget.js" data-rag-origin="ORIGIN" async></script>
 *
 * Adds a floating button that opens ORIGIN/?embed=1 in an iframe panel. Optional attributes:
 *   data-rag-origin    the chat server (default: the origin of this script's src)
 *   data-rag-title     the button's label (default "Ask the documents")
 *   data-rag-position  "left" to sit in the bottom-left corner
 * Everything lives in a shadow root, so the host page's CSS neither leaks in nor out.
 */
(() => {
  "use strict";

  const script =
    document.currentScript ||
    Array.from(document.querySelectorAll("script[src]")).find((s) =>
      /\/static\/widget\.js(?:[?#]|$)/.test(s.getAttribute("src") || ""),
    );
  if (!script) return;
  if (window.__ragChatWidget) return; // loaded twice: keep the first
  window.__ragChatWidget = true;

  let origin;
  try {
    const configured = script.dataset.ragOrigin;
    origin = new URL(configured || script.src, document.baseURI).origin;
  } catch {
    return;
  }
  const title = script.dataset.ragTitle || "Ask the documents";
  const left = (script.dataset.ragPosition || "").toLowerCase() === "left";

  const CSS = `
    :host { all: initial; }
    .launcher {
      position: fixed; bottom: 20px; ${left ? "left" : "right"}: 20px; z-index: 2147483000;
      display: inline-flex; align-items: center; gap: 8px;
      height: 52px; padding: 0 18px 0 14px; border: 0; border-radius: 26px;
      background: #2457c5; color: #fff; cursor: pointer;
      font: 600 15px/1 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
      box-shadow: 0 6px 24px rgb(16 24 40 / 28%);
    }
    .launcher:hover { background: #1d4aa8; }
    .launcher:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
    .launcher svg { width: 22px; height: 22px; flex: none; }
    .panel {
      position: fixed; bottom: 84px; ${left ? "left" : "right"}: 20px; z-index: 2147483000;
      width: min(400px, calc(100vw - 24px)); height: min(620px, calc(100vh - 108px));
      border-radius: 16px; overflow: hidden; background: #fff;
      box-shadow: 0 12px 48px rgb(16 24 40 / 32%);
      display: flex; flex-direction: column;
    }
    .panel[hidden] { display: none; }
    .bar {
      display: flex; align-items: center; justify-content: space-between;
      padding: 8px 8px 8px 14px; background: #2457c5; color: #fff;
      font: 600 14px/1.2 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    }
    .close {
      border: 0; background: transparent; color: inherit; cursor: pointer;
      width: 32px; height: 32px; border-radius: 8px; font-size: 20px; line-height: 1;
    }
    .close:hover { background: rgb(255 255 255 / 15%); }
    .close:focus-visible { outline: 2px solid #fff; }
    iframe { flex: 1; width: 100%; border: 0; background: #fff; }
    @media (prefers-color-scheme: dark) {
      .panel, iframe { background: #0f1115; }
    }
    @media (max-width: 480px) {
      .panel { inset: 0; width: 100vw; height: 100vh; border-radius: 0; bottom: 0; }
    }
  `;

  function mount() {
    const host = document.createElement("div");
    host.setAttribute("data-rag-chat-widget", "");
    const root = host.attachShadow({ mode: "open" });

    // Constructable sheets are not blocked by a host page's style-src CSP; <style> is the fallback.
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch {
      const style = document.createElement("style");
      style.textContent = CSS;
      root.append(style);
    }

    const svgNS = "http://www.w3.org/2000/svg";
    const icon = document.createElementNS(svgNS, "svg");
    icon.setAttribute("viewBox", "0 0 24 24");
    icon.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(svgNS, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute(
      "d",
      "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6a1.5 " +
        "1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z",
    );
    icon.append(path);

    const panelId = "rag-chat-panel";
    const launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", panelId);
    const label = document.createElement("span");
    label.textContent = title;
    launcher.append(icon, label);

    const panel = document.createElement("div");
    panel.className = "panel";
    panel.id = panelId;
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", title);

    const bar = document.createElement("div");
    bar.className = "bar";
    const barTitle = document.createElement("span");
    barTitle.textContent = title;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", "Close the chat");
    close.textContent = "×";
    bar.append(barTitle, close);
    panel.append(bar);

    let frame = null;
    const open = () => {
      if (!frame) {
        // Created on first open, so a page that never opens the chat loads nothing more.
        frame = document.createElement("iframe");
        frame.src = `${origin}/?embed=1`;
        frame.title = title;
        frame.setAttribute("allow", "clipboard-write");
        panel.append(frame);
      }
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      frame.focus();
    };
    const hide = () => {
      panel.hidden = true;
      launcher.setAttribute("aria-expanded", "false");
      launcher.focus();
    };
    launcher.addEventListener("click", () => (panel.hidden ? open() : hide()));
    close.addEventListener("click", hide);
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !panel.hidden) hide();
    });

    root.append(panel, launcher);
    document.body.append(host);
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
