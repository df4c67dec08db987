// The demo page: three chats with the bot, drawn as a Telegram client draws them.
// State comes from GET /api/chats (a long poll); actions go to POST /api/chats/{role}/{action}.
"use strict";

const ROLES = ["customer", "staff", "owner"];
const LANGUAGES = ["ru", "en", "et"];
// What a request_location button shares: a few streets from the demo's shop.
const DEMO_LOCATION = { latitude: 55.7575, longitude: 37.6155 };

let texts = null;
let botUsername = "";
const panes = {}; // role -> {el, parts, shown (JSON of the last drawn chat), chat, noReply}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ------------------------------------------------------------------ server

async function api(role, action, body) {
  panes[role].chatDrawn = false; // whoever acts sees the end of their chat, as in Telegram
  const init = { method: "POST" };
  if (body instanceof FormData) init.body = body;
  else {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(`/api/chats/${role}/${action}`, init);
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {}; }
  if (!response.ok) {
    const reason = answer.error === "too_large" ? texts.too_large : (answer.error || response.status);
    toast(role, texts.error.replace("{reason}", reason), true);
    return null;
  }
  return answer;
}

async function loadTexts(language) {
  const response = await fetch(`/api/texts?lang=${encodeURIComponent(language)}`);
  texts = await response.json();
  document.documentElement.lang = texts.language;
  document.title = texts.title;
  document.getElementById("title").textContent = texts.title;
  document.getElementById("intro").textContent = texts.intro;
  const steps = document.getElementById("steps");
  steps.replaceChildren(...texts.steps.map((step) => el("li", { text: step })));
  document.getElementById("page-language").value = texts.language;
  for (const role of ROLES) {
    if (panes[role]) { panes[role].shown = ""; panes[role].drawn = null; draw(role, panes[role].chat); }
  }
}

async function poll() {
  let version = -1;
  const offline = document.getElementById("offline");
  for (;;) {
    try {
      const response = await fetch(`/api/chats?since=${version}`);
      if (!response.ok) throw new Error(String(response.status));
      const state = await response.json();
      offline.hidden = true;
      version = state.version;
      botUsername = state.bot_username || botUsername;
      for (const chat of state.chats) draw(chat.role, chat);
    } catch (e) {
      offline.textContent = texts ? texts.offline : "…";
      offline.hidden = false;
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
  }
}

// ------------------------------------------------------------------ panes

function buildPane(role) {
  const messages = el("div", { class: "messages", role: "log", "aria-live": "polite" });
  const keyboard = el("div", { class: "keyboard" });
  const replyBar = el("div", { class: "reply-bar", hidden: true });
  const input = el("textarea", { rows: 1, class: "input", "aria-label": "message" });
  const file = el("input", { type: "file", accept: "image/*", class: "file", hidden: true });
  const photo = el("button", { type: "button", class: "icon photo", text: "📎" });
  const menu = el("button", { type: "button", class: "icon menu", text: "/" });
  const send = el("button", { type: "button", class: "send", text: "➤" });
  const app = el("button", { type: "button", class: "app-button", hidden: true });
  const commands = el("div", { class: "commands", hidden: true });
  const language = el("select", { class: "language" },
    LANGUAGES.map((code) => el("option", { value: code, text: code.toUpperCase() })));
  const heading = el("h2", {});
  const who = el("div", { class: "who" });
  const languageLabel = el("label", { class: "language-label" }, language);
  const toastBox = el("div", { class: "toast", hidden: true });
  const pane = el("section", { class: `pane pane-${role}`, id: `pane-${role}`, "data-role": role },
    el("header", {}, el("div", {}, heading, who), languageLabel),
    messages, toastBox, commands, replyBar, keyboard,
    el("div", { class: "composer" }, app, photo, file, menu, input, send));
  const parts = { messages, keyboard, replyBar, input, file, photo, menu, send, commands, app,
    language, heading, who, languageLabel, toastBox };
  panes[role] = { el: pane, parts, shown: "", chat: null, noReply: null, stick: true };
  // Follow new messages while the chat was at its end when they came (images grow it as they
  // load, after it was drawn).
  messages.addEventListener("load", () => {
    if (panes[role].stick) messages.scrollTop = messages.scrollHeight;
  }, true);

  const submit = async () => {
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    const chat = panes[role].chat;
    const pending = chat && chat.force_reply;
    const replyTo = pending && panes[role].noReply !== pending.id ? pending.id : null;
    await api(role, "send", { text, reply_to: replyTo });
    input.focus();
  };
  send.addEventListener("click", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
  });
  photo.addEventListener("click", () => file.click());
  file.addEventListener("change", async () => {
    if (file.files.length) await sendPhoto(role, file.files[0]);
    file.value = "";
  });
  menu.addEventListener("click", () => { commands.hidden = !commands.hidden; });
  app.addEventListener("click", () => {
    const button = panes[role].chat && panes[role].chat.menu_button;
    if (button) openWebApp(role, button.url, button.text);
  });
  language.addEventListener("change", () => api(role, "language", { language: language.value }));
  // Drop an image (a file, or the card image dragged from another chat) to send it as a photo.
  pane.addEventListener("dragover", (event) => { event.preventDefault(); pane.classList.add("drop"); });
  pane.addEventListener("dragleave", () => pane.classList.remove("drop"));
  pane.addEventListener("drop", async (event) => {
    event.preventDefault();
    pane.classList.remove("drop");
    const files = [...event.dataTransfer.files].filter((f) => f.type.startsWith("image/"));
    if (files.length) { await sendPhoto(role, files[0]); return; }
    const url = (event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain") || "").split("\n")[0].trim();
    if (url.startsWith(location.origin + "/api/files/") || url.startsWith("/api/files/")) {
      const response = await fetch(url);
      if (response.ok) await sendPhoto(role, await response.blob());
    }
  });
  return pane;
}

async function sendPhoto(role, blob) {
  const form = new FormData();
  form.append("photo", blob, blob.name || "photo.png");
  await api(role, "photo", form);
}

function toast(role, text, alertBox) {
  const box = panes[role].parts.toastBox;
  box.textContent = text;
  box.className = alertBox ? "toast alert" : "toast";
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, alertBox ? 6000 : 2500);
}

function draw(role, chat) {
  const pane = panes[role];
  if (!pane || !chat || !texts) return;
  const json = JSON.stringify(chat);
  pane.chat = chat;
  if (json === pane.shown) return;
  pane.shown = json;
  const p = pane.parts;
  p.heading.textContent = texts.roles[role];
  p.who.textContent = texts.typing_as.replace("{name}", chat.user) + (chat.group ? ` · ${chat.title}` : "");
  p.language.value = chat.language || "ru";
  p.languageLabel.title = `${texts.app_language}: ${texts.language_hint}`;
  p.photo.title = texts.photo;
  p.menu.title = texts.menu;
  p.menu.hidden = !chat.commands.length;
  p.send.title = texts.send;
  p.app.hidden = !chat.menu_button;
  p.app.textContent = chat.menu_button ? chat.menu_button.text : "";

  const atBottom = !pane.chatDrawn
    || p.messages.scrollHeight - p.messages.scrollTop - p.messages.clientHeight < 60;
  pane.chatDrawn = true;
  pane.stick = atBottom;
  // Messages that did not change keep their nodes: no flicker, no image loaded again.
  const before = pane.drawn || new Map();
  pane.drawn = new Map();
  const nodes = chat.messages.map((m) => {
    const key = JSON.stringify(m);
    const kept = before.get(m.id);
    const node = kept && kept.key === key ? kept.node : drawMessage(role, chat, m);
    pane.drawn.set(m.id, { key, node });
    return node;
  });
  if (!nodes.length) p.messages.replaceChildren(el("div", { class: "empty", text: texts.empty_chat }));
  else p.messages.replaceChildren(...nodes);

  p.commands.replaceChildren(...chat.commands.map((c) => el("button", {
    type: "button", class: "command",
    onclick: () => { p.commands.hidden = true; api(role, "send", { text: `/${c.command}` }); },
  }, el("b", { text: `/${c.command}` }), " ", c.description)));

  const pending = chat.force_reply;
  if (pending && pane.noReply !== pending.id) {
    p.replyBar.hidden = false;
    p.replyBar.replaceChildren(el("span", { class: "reply-label", text: `${texts.replying_to}: ` }),
      el("span", { class: "reply-text", text: pending.text }),
      el("button", { type: "button", class: "icon", title: texts.cancel_reply, text: "✕",
        onclick: () => { pane.noReply = pending.id; pane.shown = ""; draw(role, chat); } }));
  } else {
    p.replyBar.hidden = true;
  }
  p.input.placeholder = (pending && pending.placeholder) || (chat.keyboard && chat.keyboard.placeholder) || texts.placeholder;

  if (chat.keyboard) {
    p.keyboard.hidden = false;
    p.keyboard.replaceChildren(...chat.keyboard.rows.map((row) => el("div", { class: "kb-row" },
      row.map((button) => el("button", {
        type: "button", class: "kb-btn", text: button.text,
        onclick: () => {
          if (button.contact) api(role, "contact", {});
          else if (button.location) api(role, "location", DEMO_LOCATION);
          else api(role, "send", { text: button.text });
        },
      })))));
  } else {
    p.keyboard.hidden = true;
    p.keyboard.replaceChildren();
  }
  // Last: the keyboard and the reply bar above change the height left for the messages.
  if (atBottom) p.messages.scrollTop = p.messages.scrollHeight;
}

function drawMessage(role, chat, m) {
  const bubble = el("div", { class: m.from_bot ? "msg in" : "msg out", "data-id": m.id });
  if (chat.group && !m.from_bot) bubble.append(el("div", { class: "sender", text: m.sender }));
  if (m.reply_to) bubble.append(el("div", { class: "quote", text: m.reply_to.text }));
  if (m.photo) {
    bubble.append(el("a", { href: m.photo, target: "_blank", class: "photo-link" },
      el("img", { src: m.photo, class: "photo", alt: "", draggable: "true" })));
  }
  if (m.document) {
    bubble.append(el("a", { href: m.document.url, download: m.document.name, class: "document" },
      el("span", { class: "doc-icon", text: "📄" }),
      el("span", {}, el("b", { text: m.document.name }), el("br"), `${formatSize(m.document.size)} · ${texts.download}`)));
  }
  if (m.contact) bubble.append(el("div", { class: "contact", text: `👤 ${m.contact.name} ${m.contact.phone}` }));
  if (m.venue) bubble.append(el("div", { class: "venue" }, el("b", { text: `📍 ${m.venue.title}` }), el("br"), m.venue.address));
  else if (m.location) bubble.append(el("div", { class: "venue", text: `📍 ${m.location.latitude.toFixed(4)}, ${m.location.longitude.toFixed(4)}` }));
  if (m.text) bubble.append(el("div", { class: "text" }, renderText(role, m.text, m.entities)));
  const time = new Date(m.date * 1000).toLocaleTimeString(texts.language, { hour: "2-digit", minute: "2-digit" });
  bubble.append(el("div", { class: "meta", text: m.edited ? `${texts.edited} ${time}` : time }));
  if (m.buttons) {
    bubble.append(el("div", { class: "inline" }, m.buttons.map((row) => el("div", { class: "inline-row" },
      row.map((button) => el("button", {
        type: "button", class: "inline-btn", text: button.text,
        onclick: () => pressInline(role, m, button),
      }))))));
  }
  return bubble;
}

async function pressInline(role, message, button) {
  if (button.callback_data) {
    const answer = await api(role, "press", { message_id: message.id, data: button.callback_data });
    if (answer && answer.text) toast(role, answer.text, answer.alert);
  } else if (button.web_app) {
    openWebApp(role, button.web_app, button.text);
  } else if (button.copy !== undefined) {
    navigator.clipboard && navigator.clipboard.writeText(button.copy);
  } else if (button.url) {
    openLink(role, button.url);
  }
}

// A link to this bot (t.me/<bot>?start=…) opens its chat with /start …, as Telegram does.
function openLink(role, url) {
  const match = botUsername && url.match(new RegExp(`^https?://t\\.me/${botUsername}\\?start=([\\w-]+)`, "i"));
  if (match && role !== "staff") { api(role, "send", { text: `/start ${match[1]}` }); return; }
  if (/^https?:\/\//.test(url)) window.open(url, "_blank", "noopener");
}

// ------------------------------------------------------------------ Mini Apps

// A Mini App opens over its chat, in a frame on this page's own address, with the launch
// parameters a Telegram client adds (the page's server signs them for the pane's person).
async function openWebApp(role, url, title) {
  const answer = await api(role, "webapp", { url });
  if (!answer) return;
  closeWebApp(role);
  const frame = el("iframe", { src: answer.src, class: "webapp-frame", title });
  const overlay = el("div", { class: "webapp", "data-role": role },
    el("header", {}, el("b", { text: title }),
      el("button", { type: "button", class: "icon", title: texts.close, text: "✕", onclick: () => closeWebApp(role) })),
    frame);
  panes[role].el.append(overlay);
  panes[role].webapp = frame;
}

function closeWebApp(role) {
  const old = panes[role].el.querySelector(".webapp");
  if (old) old.remove();
  panes[role].webapp = null;
}

// What a Mini App asks of its client: only the QR scanner needs an answer here. The demo's
// "camera" sees the customer's live card when their Mini App is open, or takes a pasted code.
window.addEventListener("message", (event) => {
  const role = ROLES.find((r) => panes[r].webapp && panes[r].webapp.contentWindow === event.source);
  if (!role) return;
  let message;
  try { message = JSON.parse(event.data); } catch (e) { return; }
  if (message.eventType === "web_app_open_scan_qr_popup") openScanner(role);
  else if (message.eventType === "web_app_close_scan_qr_popup") closeScanner(role);
});

function liveCard() {
  const frame = panes.customer.webapp;
  try {
    const qr = frame && frame.contentDocument.querySelector(".qr[data-payload]");
    return qr ? `https://t.me/${botUsername}?start=${qr.dataset.payload}` : null;
  } catch (e) { return null; }
}

function openScanner(role) {
  closeScanner(role);
  const answer = (text) => {
    closeScanner(role);
    const frame = panes[role].webapp;
    if (frame) frame.contentWindow.postMessage(JSON.stringify({ eventType: "qr_text_received", eventData: { data: text } }), "*");
  };
  const live = liveCard();
  const paste = el("input", { class: "input", placeholder: texts.scan_paste });
  paste.addEventListener("keydown", (event) => { if (event.key === "Enter" && paste.value.trim()) answer(paste.value.trim()); });
  panes[role].el.append(el("div", { class: "scanner" },
    el("header", {}, el("b", { text: texts.scanner }),
      el("button", { type: "button", class: "icon", title: texts.close, text: "✕", onclick: () => closeScanner(role, true) })),
    live ? el("button", { type: "button", class: "kb-btn scan-live", text: `📷 ${texts.scan_live}`, onclick: () => answer(live) })
      : el("p", { class: "muted", text: texts.scan_no_card }),
    paste));
}

function closeScanner(role, tellApp) {
  const old = panes[role].el.querySelector(".scanner");
  if (old) old.remove();
  const frame = panes[role].webapp;
  if (tellApp && frame) frame.contentWindow.postMessage(JSON.stringify({ eventType: "scan_qr_popup_closed", eventData: {} }), "*");
}

function formatSize(bytes) {
  if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

// Telegram's entities (offsets in UTF-16 code units, as JavaScript strings count) → nodes.
function renderText(role, text, entities) {
  const cuts = new Set([0, text.length]);
  for (const e of entities) { cuts.add(e.offset); cuts.add(Math.min(text.length, e.offset + e.length)); }
  const points = [...cuts].filter((p) => p >= 0 && p <= text.length).sort((a, b) => a - b);
  const out = document.createDocumentFragment();
  for (let i = 0; i < points.length - 1; i++) {
    const start = points[i], end = points[i + 1];
    if (start === end) continue;
    let node = document.createTextNode(text.slice(start, end));
    for (const e of entities) {
      if (e.offset <= start && e.offset + e.length >= end) node = wrap(role, node, e, text);
    }
    out.append(node);
  }
  return out;
}

function wrap(role, node, entity, text) {
  const whole = text.slice(entity.offset, entity.offset + entity.length);
  const tags = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "code" };
  if (tags[entity.type]) return el(tags[entity.type], { class: entity.type === "pre" ? "pre" : null }, node);
  if (entity.type === "spoiler") {
    return el("span", { class: "spoiler", onclick: (event) => event.currentTarget.classList.add("shown") }, node);
  }
  if (entity.type === "blockquote" || entity.type === "expandable_blockquote") return el("span", { class: "blockquote" }, node);
  if (entity.type === "text_link" || entity.type === "url") {
    const href = entity.type === "url" ? whole : entity.url;
    return el("a", { href, onclick: (event) => { event.preventDefault(); openLink(role, href); } }, node);
  }
  if (entity.type === "bot_command") {
    return el("a", { href: "#", class: "command-link", onclick: (event) => {
      event.preventDefault();
      api(role, "send", { text: whole.replace(/@\w+$/, "") });
    } }, node);
  }
  return node;
}

// ------------------------------------------------------------------ start

function pageLanguage() {
  const saved = localStorage.getItem("demo-language");
  if (LANGUAGES.includes(saved)) return saved;
  const browser = (navigator.language || "ru").slice(0, 2).toLowerCase();
  return LANGUAGES.includes(browser) ? browser : "ru";
}

document.addEventListener("DOMContentLoaded", async () => {
  const main = document.getElementById("panes");
  for (const role of ROLES) main.append(buildPane(role));
  const select = document.getElementById("page-language");
  select.addEventListener("change", () => {
    localStorage.setItem("demo-language", select.value);
    loadTexts(select.value);
  });
  await loadTexts(pageLanguage());
  poll();
});
