/* Chat UI for the extractive QA service: plain JS, fetch + ReadableStream, no dependencies.
 *
 * Talks to the same origin:
 *   POST /v1/chat/completions (stream: true)          -> OpenAI-style Server-Sent Events
 *   GET  /documents/{doc_id}/spans/{start}-{end}      -> the cited span with its context
 * With ?collection=<name> it asks that collection: the chat's model is
 * "rag-extractive:<name>" and spans come from /collections/<name>/documents/....
 * Every string from the server is inserted as text (textContent / text nodes), never as HTML.
 */
(() => {
  "use strict";

  const params = new URLSearchParams(window.location.search);
  const EMBED = ["1", "true", "yes"].includes((params.get("embed") || "").toLowerCase());
  // Set before the first paint (this script is not deferred) so the embed layout never flashes.
  if (EMBED) document.documentElement.classList.add("embed");

  const COLLECTION = params.get("collection") || "";
  // The chat model of the default collection; a collection's comes from the server
  // (GET /collections/{name}: its "model"), since the operator may rename the model id.
  const MODEL = "rag-extractive";
  let collectionModel = null;
  const DOCUMENTS = COLLECTION ? `/collections/${encodeURIComponent(COLLECTION)}/documents` : "/documents";
  const KEY_STORAGE = "rag.apiKey";
  const CONTEXT_CHARS = 300;
  const MARKER_RE = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

  /* ------------------------------------------------------------------ helpers */

  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  /** doc ids may contain "/": encode each path segment, keep the slashes. */
  function encodeDocId(docId) {
    return String(docId).split("/").map(encodeURIComponent).join("/");
  }

  function truncate(text, max) {
    const clean = String(text || "").replace(/\s+/g, " ").trim();
    return clean.length > max ? `${clean.slice(0, max - 1).trimEnd()}…` : clean;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "ApiError";
      this.status = status;
    }
  }

  /** The human-readable message of a non-2xx response ({"detail": ...} or OpenAI's {"error": ...}). */
  async function errorMessage(res) {
    let body = null;
    try {
      const raw = await res.text();
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    const detail = body && (body.detail ?? body.error?.message ?? body.error ?? body.message);
    if (typeof detail === "string" && detail.trim()) return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail.map((d) => (typeof d === "string" ? d : d?.msg || JSON.stringify(d))).join("; ");
    }
    if (detail && typeof detail === "object") return JSON.stringify(detail);
    return `The server answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}.`;
  }

  /* ------------------------------------------------------------------ API key */

  const keyStore = {
    memory: "",
    get() {
      try {
        return window.localStorage.getItem(KEY_STORAGE) || this.memory;
      } catch {
        return this.memory; // storage blocked (e.g. third-party iframe): keep it for this page only
      }
    },
    set(value) {
      this.memory = value;
      try {
        window.localStorage.setItem(KEY_STORAGE, value);
      } catch {
        /* memory only */
      }
    },
    clear() {
      this.memory = "";
      try {
        window.localStorage.removeItem(KEY_STORAGE);
      } catch {
        /* nothing stored */
      }
    },
  };

  let ui = null; // filled in by initChat
  let keyWaiters = [];

  function authHeaders(headers = {}) {
    const key = keyStore.get();
    return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
  }

  function showKeyForm(hint) {
    if (!ui) return;
    ui.authForm.hidden = false;
    ui.authHint.textContent = hint;
    ui.forgetKey.hidden = !keyStore.get();
    ui.apiKey.focus();
  }

  /** Resolves once the user saves a key; rejects if `signal` aborts first. */
  function waitForKey(hint, signal) {
    showKeyForm(hint);
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      keyWaiters.push(waiter);
      signal?.addEventListener(
        "abort",
        () => {
          keyWaiters = keyWaiters.filter((w) => w !== waiter);
          reject(new DOMException("Aborted", "AbortError"));
        },
        { once: true },
      );
    });
  }

  /**
   * fetch with the saved Bearer key. On 401: ask for a key, then retry once.
   * `onWaitingForKey` lets the caller say so in the UI while the user types.
   */
  /** The model to ask: the default collection's, or the ?collection= one's (asked once). */
  async function chatModel(signal, onWaitingForKey) {
    if (!COLLECTION) return MODEL;
    if (collectionModel) return collectionModel;
    const res = await apiFetch(
      `/collections/${encodeURIComponent(COLLECTION)}`,
      { headers: { Accept: "application/json" }, signal },
      onWaitingForKey,
    );
    if (!res.ok) throw new ApiError(await errorMessage(res), res.status);
    collectionModel = String((await res.json()).model);
    return collectionModel;
  }

  async function apiFetch(url, init = {}, onWaitingForKey = null) {
    const attempt = () => fetch(url, { ...init, headers: authHeaders(init.headers) });
    const res = await attempt();
    if (res.status !== 401) return res;
    const hadKey = Boolean(keyStore.get());
    const detail = await errorMessage(res);
    onWaitingForKey?.();
    await waitForKey(
      hadKey
        ? `The saved API key was not accepted (${detail}). Enter another one.`
        : "This server needs an API key. It is kept in this browser only.",
      init.signal,
    );
    const retry = await attempt();
    if (retry.status === 401) {
      showKeyForm("That API key was not accepted either. Check it and ask again.");
    }
    return retry;
  }

  /* ------------------------------------------------------------------ SSE */

  /** The `data:` payload of one SSE event block, or null for comments / empty events. */
  function eventData(block) {
    const data = [];
    for (const line of block.split(/\r\n|\r|\n/)) {
      if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
    return data.length ? data.join("\n") : null;
  }

  /**
   * Read an OpenAI-style chat.completion.chunk stream. Calls onText for each content delta.
   * Returns { text, citations, rag, finishReason }.
   */
  async function readCompletionStream(res, onText) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const result = { text: "", citations: null, rag: null, finishReason: null };
    let buffer = "";
    let sawDone = false;

    const handle = (data) => {
      if (data.trim() === "[DONE]") {
        sawDone = true;
        return;
      }
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        return; // not JSON: ignore rather than break the answer
      }
      if (chunk.error) {
        const msg = typeof chunk.error === "string" ? chunk.error : chunk.error.message;
        throw new ApiError(msg || "The server reported an error while answering.");
      }
      const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
      const piece = choice?.delta?.content;
      if (typeof piece === "string" && piece) {
        result.text += piece;
        onText(piece);
      }
      const citations = chunk.citations ?? choice?.citations ?? choice?.delta?.citations;
      if (Array.isArray(citations)) result.citations = citations;
      const rag = chunk.rag_answer ?? choice?.rag_answer;
      if (rag && typeof rag === "object") result.rag = rag;
      if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    };

    while (!sawDone) {
      const { value, done } = await reader.read();
      if (done) {
        buffer += decoder.decode();
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      let match;
      while (!sawDone && (match = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        const block = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        const data = eventData(block);
        if (data !== null) handle(data);
      }
    }
    if (sawDone) {
      reader.cancel().catch(() => {});
    } else if (buffer.trim()) {
      const data = eventData(buffer); // a last event without its blank line
      if (data !== null) handle(data);
    }
    if (!sawDone && !result.finishReason) {
      throw new ApiError("The connection closed before the answer was complete.");
    }
    return result;
  }

  /** A non-streamed chat.completion body, for servers that ignore `stream`. */
  function readCompletionJson(body) {
    const choice = Array.isArray(body?.choices) ? body.choices[0] : null;
    return {
      text: String(choice?.message?.content ?? ""),
      citations: body?.citations ?? choice?.citations ?? choice?.message?.citations ?? null,
      rag: body?.rag_answer ?? choice?.rag_answer ?? null,
      finishReason: choice?.finish_reason ?? "stop",
    };
  }

  /* ------------------------------------------------------------------ rendering */

  function citationData(c, fallbackIndex) {
    return {
      index: Number.isFinite(Number(c?.index)) ? Number(c.index) : fallbackIndex,
      docId: String(c?.doc_id ?? ""),
      title: String(c?.title || c?.doc_id || "Untitled source"),
      start: Number(c?.start),
      end: Number(c?.end),
      quote: String(c?.quote ?? ""),
      pages: Array.isArray(c?.pages) ? c.pages.map(Number).filter(Number.isFinite) : [],
    };
  }

  /** "p. 3" or "pp. 3–4" for a citation of a paged document (a PDF); "" otherwise. */
  function pageLabel(pages) {
    if (!pages || !pages.length) return "";
    const first = pages[0];
    const last = pages[pages.length - 1];
    return first === last ? `p. ${first}` : `pp. ${first}–${last}`;
  }

  function citationAttrs(c) {
    return {
      "data-index": c.index,
      "data-doc-id": c.docId,
      "data-start": c.start,
      "data-end": c.end,
    };
  }

  function markerButton(c) {
    return el("button", {
      type: "button",
      class: "citation citation-marker",
      ...citationAttrs(c),
      "aria-label": `Source ${c.index}: ${c.title}`,
      title: truncate(`${c.title}: ${c.quote}`, 160),
      text: String(c.index),
    });
  }

  /** Answer text with each [n] (or [n, m]) that names a citation turned into buttons. */
  function renderAnswerText(container, text, citations) {
    const byIndex = new Map(citations.map((c) => [c.index, c]));
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(MARKER_RE)) {
      const indices = match[1].split(",").map((s) => Number(s.trim()));
      if (!indices.every((i) => byIndex.has(i))) continue;
      frag.append(document.createTextNode(text.slice(last, match.index)));
      for (const i of indices) frag.append(markerButton(byIndex.get(i)));
      last = match.index + match[0].length;
    }
    frag.append(document.createTextNode(text.slice(last)));
    container.replaceChildren(frag);
  }

  function renderSourcesList(citations) {
    const list = el("ol", { class: "sources", "aria-label": "Sources" });
    for (const c of citations) {
      const button = el(
        "button",
        {
          type: "button",
          class: "citation source-item",
          ...citationAttrs(c),
          "aria-label": `Open source ${c.index}: ${c.title}`,
        },
        el("span", { class: "source-num", text: `${c.index}.`, "aria-hidden": "true" }),
        el(
          "span",
          { class: "source-text" },
          el("span", {
            class: "source-title",
            text: pageLabel(c.pages) ? `${c.title} · ${pageLabel(c.pages)}` : c.title,
          }),
          el(
            "span",
            { class: "source-quote" },
            "“",
            el("mark", { class: "cited" }, withAnswer(c.quote, c.start, c.answer, 180)),
            "”",
          ),
        ),
      );
      list.append(el("li", {}, button));
    }
    return list;
  }

  function metaLine(rag, citationCount) {
    const parts = [];
    let tip = null;
    if (rag && rag.answered === false) {
      parts.push("No answer found in the documents");
      if (rag.no_answer_reason) tip = String(rag.no_answer_reason);
    }
    const conf = Number(rag?.confidence);
    const abstained = rag?.answered === false;
    if (!abstained && rag?.confidence !== null && rag?.confidence !== undefined && Number.isFinite(conf)) {
      parts.push(`Confidence ${Math.round(Math.max(0, Math.min(1, conf)) * 100)}%`);
    }
    if (citationCount) parts.push(citationCount === 1 ? "1 source" : `${citationCount} sources`);
    if (!parts.length) return null;
    return el("p", { class: "meta", text: parts.join(" · "), title: tip });
  }

  /* ------------------------------------------------------------------ chat */

  const history = []; // finished turns, as OpenAI messages
  const citationsById = new WeakMap(); // button -> citation data
  let controller = null;

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollToBottom(force = false) {
    if (force || nearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function addUserMessage(text) {
    ui.emptyState.hidden = true;
    const node = el(
      "div",
      { class: "message user" },
      el("span", { class: "visually-hidden", text: "You said:" }),
      el("div", { class: "bubble", text }),
    );
    ui.messages.append(node);
    scrollToBottom(true);
  }

  function addAssistantMessage() {
    const answer = el("div", { class: "answer" });
    const bubble = el(
      "div",
      { class: "bubble" },
      el("span", { class: "visually-hidden", text: "Answer:" }),
      answer,
    );
    const node = el("div", { class: "message assistant", "aria-busy": "true" }, bubble);
    node.dataset.state = "streaming";
    const textNode = document.createTextNode("");
    answer.append(textNode);
    ui.messages.append(node);
    scrollToBottom(true);
    return {
      node,
      bubble,
      answer,
      append(piece) {
        const stick = nearBottom();
        textNode.appendData(piece);
        if (stick) scrollToBottom(true);
      },
      status(text) {
        if (textNode.data) return;
        if (text) answer.replaceChildren(el("span", { class: "status", text }), textNode);
        else answer.replaceChildren(textNode);
      },
    };
  }

  /** The answer's span [start, end) when it lies inside citation ``c`` (same document). */
  function answerIn(c, rag) {
    if (!rag || rag.answered !== true) return null;
    const start = Number(rag.start);
    const end = Number(rag.end);
    if (String(rag.doc_id ?? "") !== c.docId || !Number.isFinite(start) || !Number.isFinite(end)) {
      return null;
    }
    return c.start <= start && start < end && end <= c.end ? { start, end } : null;
  }

  /** The UTF-16 index in ``text`` of its ``n``-th code point: the server's offsets count
   * code points (Python), JS strings index UTF-16 units (an emoji or 𝑥 is two). */
  function unitIndex(text, n) {
    let i = 0;
    for (let k = 0; k < n && i < text.length; k++) i += text.codePointAt(i) > 0xffff ? 2 : 1;
    return i;
  }

  /** ``text`` (document offset ``offset``) with the answer's [start, end) in it strongly
   * marked, as a fragment; ``clip`` shortens the text around the answer, never the answer. */
  function withAnswer(text, offset, answer, clip = Infinity) {
    const frag = document.createDocumentFragment();
    if (!answer) {
      frag.append(document.createTextNode(Number.isFinite(clip) ? truncate(text, clip) : text));
      return frag;
    }
    const a = unitIndex(text, answer.start - offset);
    const b = unitIndex(text, answer.end - offset);
    let pre = text.slice(0, a);
    const span = text.slice(a, b);
    let post = text.slice(b);
    if (Number.isFinite(clip)) {
      const half = Math.max(20, Math.floor((clip - span.length) / 2));
      if (pre.length > half) pre = `…${pre.slice(pre.length - half).trimStart()}`;
      if (post.length > half) post = `${post.slice(0, half).trimEnd()}…`;
    }
    frag.append(
      document.createTextNode(pre),
      el("strong", { class: "answer-span", text: span }),
      document.createTextNode(post),
    );
    return frag;
  }

  /** What "Copy with citation" puts on the clipboard for citation ``c``. */
  function citationText(c) {
    const where = [c.title, pageLabel(c.pages)].filter(Boolean).join(", ");
    const source = `${where} (${c.docId}, characters ${c.start}–${c.end})`;
    const q = c.quote;
    const answer = c.answer
      ? q.slice(unitIndex(q, c.answer.start - c.start), unitIndex(q, c.answer.end - c.start))
      : "";
    return answer
      ? `“${answer}” — from “${c.quote}” — ${source}`
      : `“${c.quote}” — ${source}`;
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // No clipboard API (an insecure origin) or no permission: the old way.
      const area = el("textarea", { class: "visually-hidden", readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      return ok;
    }
  }

  function finishMessage(msg, result) {
    const stick = nearBottom();
    const citations = (result.citations || []).map((c, i) => {
      const data = citationData(c, i + 1);
      data.answer = answerIn(data, result.rag);
      return data;
    });
    if (result.rag?.answered === true && Number.isFinite(Number(result.rag.start))) {
      msg.node.dataset.answerDocId = String(result.rag.doc_id ?? "");
      msg.node.dataset.answerStart = String(Number(result.rag.start));
      msg.node.dataset.answerEnd = String(Number(result.rag.end));
    }
    if (!result.text.trim() && !citations.length) {
      result.text = "No answer came back for this question.";
    }
    renderAnswerText(msg.answer, result.text, citations);
    if (citations.length) msg.bubble.after(renderSourcesList(citations));
    const meta = metaLine(result.rag, citations.length);
    if (meta) msg.node.append(meta);
    for (const button of msg.node.querySelectorAll(".citation")) {
      citationsById.set(button, citations.find((c) => c.index === Number(button.dataset.index)));
    }
    if (result.rag && typeof result.rag.answered === "boolean") {
      msg.node.dataset.answered = String(result.rag.answered);
    }
    msg.node.dataset.state = "done";
    msg.node.removeAttribute("aria-busy");
    if (stick) scrollToBottom(true);
  }

  function failMessage(msg, message, partial = "") {
    msg.answer.replaceChildren();
    if (partial) msg.answer.append(document.createTextNode(`${partial}\n\n`));
    msg.answer.append(el("span", { class: "error-text", role: "alert", text: message }));
    msg.node.dataset.state = "error";
    msg.node.removeAttribute("aria-busy");
    scrollToBottom();
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.stop.hidden = !busy;
    ui.app.classList.toggle("busy", busy);
  }

  async function ask(question) {
    addUserMessage(question);
    const msg = addAssistantMessage();
    const messages = [...history, { role: "user", content: question }];
    controller = new AbortController();
    const { signal } = controller;
    setBusy(true);
    let streamed = "";
    try {
      const model = await chatModel(signal, () => msg.status("Waiting for an API key…"));
      const res = await apiFetch(
        "/v1/chat/completions",
        {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ model, stream: true, messages, citations_in_text: false }),
          signal,
        },
        () => msg.status("Waiting for an API key…"),
      );
      if (!res.ok) throw new ApiError(await errorMessage(res), res.status);
      msg.status("");
      const type = res.headers.get("content-type") || "";
      let result;
      if (type.includes("text/event-stream") && res.body) {
        result = await readCompletionStream(res, (piece) => {
          streamed += piece;
          msg.append(piece);
        });
      } else {
        result = readCompletionJson(await res.json());
      }
      finishMessage(msg, result);
      history.push({ role: "user", content: question }, { role: "assistant", content: result.text });
    } catch (err) {
      if (err?.name === "AbortError") {
        failMessage(msg, "Stopped.", streamed);
      } else if (err instanceof ApiError) {
        failMessage(msg, err.message, streamed);
      } else {
        failMessage(
          msg,
          `Could not reach the server (${err?.message || err}). Check the connection and try again.`,
          streamed,
        );
      }
    } finally {
      if (controller?.signal === signal) controller = null;
      setBusy(false);
    }
  }

  /* ------------------------------------------------------------------ source panel */

  let sourceController = null;
  let sourceTrigger = null;
  let sourceCitation = null; // the citation the panel shows

  function closeSource() {
    sourceController?.abort();
    ui.panel.hidden = true;
    for (const b of document.querySelectorAll(".citation.active")) b.classList.remove("active");
    if (sourceTrigger && document.contains(sourceTrigger)) sourceTrigger.focus();
    sourceTrigger = null;
  }

  function scrollMarkIntoView(mark) {
    const body = ui.sourceBody;
    const top = mark.getBoundingClientRect().top - body.getBoundingClientRect().top + body.scrollTop;
    const target = top - Math.max(16, (body.clientHeight - mark.offsetHeight) / 3);
    body.scrollTop = Math.max(0, target);
    if (typeof mark.scrollIntoView === "function") {
      mark.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function renderSpan(before, quote, after, leadingEllipsis, trailingEllipsis, offset, answer) {
    const mark = el("mark", { class: "cited" }, withAnswer(quote, offset, answer));
    ui.sourceBody.replaceChildren(
      ...(leadingEllipsis ? [el("span", { class: "ellipsis", text: "… " })] : []),
      document.createTextNode(before),
      mark,
      document.createTextNode(after),
      ...(trailingEllipsis ? [el("span", { class: "ellipsis", text: " …" })] : []),
    );
    ui.panel.hidden = false;
    // Layout must exist before measuring; one frame is enough.
    requestAnimationFrame(() => scrollMarkIntoView(mark));
    return mark;
  }

  async function openSource(c, trigger) {
    if (!c) return;
    sourceController?.abort();
    sourceController = new AbortController();
    const { signal } = sourceController;
    for (const b of document.querySelectorAll(".citation.active")) b.classList.remove("active");
    for (const b of document.querySelectorAll(".citation")) {
      if (citationsById.get(b) === c) b.classList.add("active");
    }
    sourceTrigger = trigger;
    sourceCitation = c;
    ui.sourceCopied.textContent = "";
    ui.panel.hidden = false;
    ui.panel.setAttribute("aria-busy", "true");
    ui.sourceKicker.textContent = `Source ${c.index}`;
    ui.sourceTitle.textContent = c.title;
    const where = pageLabel(c.pages);
    ui.sourceMeta.textContent =
      `${c.docId}${where ? ` · ${where}` : ""} · characters ${c.start}–${c.end}`;
    ui.sourceBody.replaceChildren(el("p", { class: "loading", text: "Loading the source…" }));
    ui.sourceTitle.focus({ preventScroll: true });

    const url =
      `${DOCUMENTS}/${encodeDocId(c.docId)}/spans/${c.start}-${c.end}` +
      `?context=${CONTEXT_CHARS}`;
    try {
      const res = await apiFetch(url, { headers: { Accept: "application/json" }, signal });
      if (!res.ok) throw new ApiError(await errorMessage(res), res.status);
      const span = await res.json();
      if (signal.aborted) return;
      if (span.title) ui.sourceTitle.textContent = String(span.title);
      const start = Number(span.start ?? c.start);
      const end = Number(span.end ?? c.end);
      const ctxStart = Number(span.context_start ?? start);
      const ctxEnd = Number(span.context_end ?? end);
      const docLength = Number(span.doc_length ?? span.length ?? NaN);
      const trailing = Number.isFinite(docLength)
        ? ctxEnd < docLength
        : ctxEnd - end >= CONTEXT_CHARS;
      renderSpan(
        String(span.before ?? ""),
        String(span.quote ?? c.quote),
        String(span.after ?? ""),
        ctxStart > 0,
        trailing,
        start,
        c.answer,
      );
    } catch (err) {
      if (err?.name === "AbortError" || signal.aborted) return;
      const message =
        err instanceof ApiError ? err.message : `Could not load the source (${err?.message || err}).`;
      // Still show the quote the answer carried, so the citation stays readable.
      renderSpan("", c.quote, "", false, false, c.start, c.answer);
      const notice = `${message.replace(/[.!?\s]*$/, ".")} Showing the quoted passage only.`;
      ui.sourceBody.prepend(el("p", { class: "error-text", role: "alert", text: notice }));
    } finally {
      if (!signal.aborted) ui.panel.removeAttribute("aria-busy");
    }
  }

  /* ------------------------------------------------------------------ wiring */

  function autosize() {
    const q = ui.question;
    q.style.height = "auto";
    q.style.height = `${Math.min(q.scrollHeight + 2, 192)}px`;
  }

  function newChat() {
    controller?.abort();
    history.length = 0;
    closeSource();
    for (const node of [...ui.messages.children]) {
      if (node !== ui.emptyState) node.remove();
    }
    ui.emptyState.hidden = false;
    ui.question.value = "";
    autosize();
    ui.question.focus();
  }

  function initChat() {
    ui = {
      app: $("#app"),
      messages: $("#messages"),
      emptyState: $("#empty-state"),
      composer: $("#composer"),
      question: $("#question"),
      send: $("#send"),
      stop: $("#stop"),
      newChat: $("#new-chat"),
      authForm: $("#auth-form"),
      apiKey: $("#api-key"),
      authHint: $("#auth-hint"),
      forgetKey: $("#forget-key"),
      panel: $("#source-panel"),
      sourceKicker: $("#source-kicker"),
      sourceTitle: $("#source-title"),
      sourceMeta: $("#source-meta"),
      sourceBody: $("#source-body"),
      sourceClose: $("#source-close"),
      sourceCopy: $("#source-copy"),
      sourceCopied: $("#source-copied"),
    };

    ui.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const question = ui.question.value.trim();
      if (!question || ui.send.disabled) {
        ui.question.focus();
        return;
      }
      ui.question.value = "";
      autosize();
      ask(question);
    });

    ui.question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        ui.composer.requestSubmit();
      }
    });
    ui.question.addEventListener("input", autosize);

    ui.stop.addEventListener("click", () => {
      controller?.abort();
      ui.question.focus();
    });
    ui.newChat?.addEventListener("click", newChat);

    ui.authForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = ui.apiKey.value.trim();
      if (!key) {
        ui.apiKey.focus();
        return;
      }
      keyStore.set(key);
      ui.apiKey.value = "";
      ui.authForm.hidden = true;
      const waiters = keyWaiters;
      keyWaiters = [];
      for (const w of waiters) w.resolve(key);
      ui.question.focus();
    });
    ui.forgetKey.addEventListener("click", () => {
      keyStore.clear();
      ui.forgetKey.hidden = true;
      ui.authHint.textContent = "Key forgotten. Enter a key to use with this server.";
      ui.apiKey.focus();
    });

    // One listener for every citation, inline or in a sources list.
    ui.messages.addEventListener("click", (event) => {
      const button = event.target.closest(".citation");
      if (!button || !ui.messages.contains(button)) return;
      event.preventDefault();
      openSource(citationsById.get(button), button);
    });

    ui.sourceClose.addEventListener("click", closeSource);
    ui.sourceCopy.addEventListener("click", async () => {
      if (!sourceCitation) return;
      const ok = await copyText(citationText(sourceCitation));
      ui.sourceCopied.textContent = ok ? "Copied" : "Could not copy";
    });

    // Arrow keys move between citation buttons (Enter opens one); with the source panel
    // open, "[" and "]" open the previous and next citation.
    const citationButtons = () => [...ui.messages.querySelectorAll(".citation")];
    ui.messages.addEventListener("keydown", (event) => {
      const button = event.target.closest?.(".citation");
      if (!button) return;
      const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
      if (!step) return;
      const all = citationButtons();
      const next = all[all.indexOf(button) + step];
      if (next) {
        event.preventDefault();
        next.focus();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (ui.panel.hidden || (event.key !== "[" && event.key !== "]")) return;
      if (event.target.closest?.("textarea, input")) return;
      // Each citation once (it has a marker in the text and an entry in the sources).
      const order = [];
      for (const b of citationButtons()) {
        const c = citationsById.get(b);
        if (c && !order.some((o) => o.c === c)) order.push({ c, b });
      }
      const at = order.findIndex((o) => o.c === sourceCitation);
      const next = order[at + (event.key === "]" ? 1 : -1)];
      if (at >= 0 && next) {
        event.preventDefault();
        openSource(next.c, next.b);
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !ui.panel.hidden) {
        event.preventDefault();
        closeSource();
      }
    });

    const preset = params.get("q");
    if (preset) ui.question.value = preset;
    autosize();
    if (!EMBED) ui.question.focus({ preventScroll: true });
  }

  /* ------------------------------------------------------------------ /embed page */

  function initEmbedDocs() {
    const origin = window.location.origin;
    const iframeSnippet =
      `<iframe src="${origin}/?embed=1" title="Ask the documents"\n` +
      `        width="400" height="600" loading="lazy"\n` +
      `        style="border:1px solid #d8dde4;border-radius:12px"></iframe>`;
    const scriptSnippet = `<script src="${origin}/static/widget.js" data-rag-origin="${origin}" async></script>`;
    const fill = (id, text) => {
      const node = document.getElementById(id);
      if (node) node.textContent = text;
    };
    fill("iframe-snippet", iframeSnippet);
    fill("script-snippet", scriptSnippet);
    for (const node of document.querySelectorAll("[data-origin]")) node.textContent = origin;
    const demo = document.getElementById("demo-frame");
    if (demo && !demo.getAttribute("src")) demo.setAttribute("src", `${origin}/?embed=1`);

    for (const button of document.querySelectorAll(".copy-button[data-copy]")) {
      button.addEventListener("click", async () => {
        const target = document.getElementById(button.dataset.copy);
        const text = target?.textContent || "";
        let ok = false;
        try {
          await navigator.clipboard.writeText(text);
          ok = true;
        } catch {
          const range = document.createRange();
          range.selectNodeContents(target);
          const sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          ok = document.execCommand?.("copy") ?? false;
        }
        button.textContent = ok ? "Copied" : "Select + copy";
        setTimeout(() => {
          button.textContent = "Copy";
        }, 1600);
      });
    }

    const tryWidget = document.getElementById("try-widget");
    tryWidget?.addEventListener("click", () => {
      if (!document.querySelector("script[data-rag-demo]")) {
        const script = document.createElement("script");
        script.src = `${origin}/static/widget.js`;
        script.dataset.ragOrigin = origin;
        script.dataset.ragDemo = "1";
        script.async = true;
        document.body.append(script);
      }
      tryWidget.disabled = true;
      tryWidget.textContent = "The button is in the bottom-right corner";
    });
  }

  function init() {
    if (document.getElementById("messages")) initChat();
    if (document.body.dataset.page === "embed-docs") initEmbedDocs();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init, { once: true });
  } else {
    init();
  }
})();
