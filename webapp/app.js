// The Mini App: the customer's live card, the cashier's till and the owner's dashboard (in a
// chain, also a branch manager's, for their branches). Every API call carries Telegram's
// signed initData; the server decides the role and which branches the reader may pick.
"use strict";

const tg = window.Telegram && window.Telegram.WebApp;
const state = { me: null, texts: {}, tab: null, qrTimer: null, till: {},
  dash: { days: 7, branch: null, asked: 0 } };

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
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function t(key, values = {}) {
  let text = state.texts[key] || key;
  for (const [name, value] of Object.entries(values)) text = text.replace(`{${name}}`, value);
  return text;
}

// The bot's own formatted texts (the till's quote and receipt): Telegram's HTML subset only.
function safeHtml(source) {
  const allowed = new Set(["B", "STRONG", "I", "EM", "U", "S", "CODE", "PRE", "A", "BR"]);
  const doc = new DOMParser().parseFromString(`<div>${source}</div>`, "text/html");
  const copy = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.textContent);
    if (node.nodeType !== Node.ELEMENT_NODE) return document.createTextNode("");
    const children = [...node.childNodes].map(copy);
    if (!allowed.has(node.tagName)) {
      const span = document.createElement("span");
      span.append(...children);
      return span;
    }
    const out = document.createElement(node.tagName.toLowerCase());
    const href = node.getAttribute("href");
    if (node.tagName === "A" && href && /^https?:\/\//.test(href)) {
      out.href = href;
      out.target = "_blank";
      out.rel = "noopener";
    }
    out.append(...children);
    return out;
  };
  return el("div", { class: "bot-text" }, [...doc.body.firstChild.childNodes].map(copy));
}

async function api(path, options = {}) {
  const headers = { Authorization: `tma ${tg ? tg.initData : ""}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`api/${path}`, {
      method: options.body !== undefined ? "POST" : "GET",
      headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, t("offline"));
  }
  if (options.blob && response.ok) return response.blob();
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) {
    const fallback = { 401: t("unauthorized"), 403: t("forbidden") }[response.status];
    throw new ApiError(response.status, data.message || fallback || t("offline"));
  }
  return data;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, 3000);
}

function show(...nodes) {
  clearTimeout(state.qrTimer);
  document.getElementById("view").replaceChildren(...nodes.filter((node) => node));
}

function fail(error) {
  show(el("p", { class: "error", role: "alert", text: error.message }));
}

// ------------------------------------------------------------------ theme

function applyTheme() {
  const params = (tg && tg.themeParams) || {};
  const names = ["bg_color", "text_color", "hint_color", "link_color", "button_color",
    "button_text_color", "secondary_bg_color"];
  for (const name of names) {
    if (params[name]) document.documentElement.style.setProperty(`--tg-${name.replace(/_/g, "-")}`, params[name]);
  }
}

// ------------------------------------------------------------------ customer: the live card

async function showCard() {
  let card;
  try { card = await api("card"); } catch (error) { if (state.tab === "card") fail(error); return; }
  if (state.tab !== "card") return; // another tab was opened meanwhile
  const qrBox = el("div", { class: "qr", "aria-live": "polite" });
  const countdown = el("div", { class: "countdown" }, el("span"));
  const offers = card.offers.length
    ? el("section", {}, el("h3", { text: t("offers") }),
      el("ul", {}, card.offers.map((o) => el("li", { class: "offer", text: t("offer_until", { pct: o.pct, date: o.until }) }))))
    : null;
  const recent = el("section", {}, el("h3", { text: t("recent") }),
    card.recent.length
      ? el("ul", { class: "recent" }, card.recent.map((p) => el("li", { class: p.voided ? "voided" : "" },
        t("purchase_line", { when: p.when, amount: p.amount, saved: p.saved }),
        p.shop ? ` · 📍 ${p.shop}` : "", p.voided ? ` ${t("cancelled")}` : "")))
      : el("p", { class: "muted", text: t("no_purchases") }));
  const progress = card.next_tier
    ? el("div", { class: "tier" },
      el("div", { class: "bar" }, el("span", { style: `width:${Math.round(card.next_tier.progress * 100)}%` })),
      el("p", { class: "muted", text: t("next_tier", { amount: card.next_tier.remaining, pct: card.next_tier.pct }) }))
    : el("p", { class: "muted", text: t("top_tier") });
  const home = tg && tg.addToHomeScreen && tg.isVersionAtLeast && tg.isVersionAtLeast("8.0")
    ? el("button", { class: "secondary", type: "button", text: t("home_screen"), onclick: () => tg.addToHomeScreen() })
    : null;
  show(
    el("section", { class: "card" },
      el("div", { class: "card-head" },
        el("div", {}, el("div", { class: "muted", text: t("card_number") }), el("div", { class: "number", id: "card-number", text: card.number })),
        el("div", { class: "pct" }, el("b", { text: card.tier }), el("div", { class: "muted", text: t("discount") }))),
      qrBox, countdown,
      el("p", { class: "hint", text: t("live_hint", { sec: state.me.rotate_sec }) }),
      el("p", { class: "hint", text: t("brightness") })),
    el("section", { class: "saved" }, el("span", { class: "muted", text: t("saved") }), el("b", { id: "saved", text: card.saved })),
    progress, offers, recent, home);
  refreshQr(qrBox, countdown);
}

async function refreshQr(box, countdown) {
  let qr;
  try { qr = await api("card/qr"); } catch (error) { box.replaceChildren(el("p", { class: "error", text: error.message })); return; }
  if (!box.isConnected) return;
  box.innerHTML = qr.svg; // our own server's SVG (qrcode), not user data
  box.dataset.payload = qr.payload;
  box.dataset.step = qr.step;
  const bar = countdown.firstChild;
  bar.style.transition = "none";
  bar.style.width = "100%";
  requestAnimationFrame(() => {
    bar.style.transition = `width ${qr.expires_in}s linear`;
    bar.style.width = "0%";
  });
  state.qrTimer = setTimeout(() => refreshQr(box, countdown), Math.max(1, qr.expires_in) * 1000 + 250);
}

// ------------------------------------------------------------------ cashier: the till

function showTill() {
  state.till = { card: null, draft: null, amount: "" };
  const input = el("input", { id: "till-input", class: "input", inputmode: "text", autocomplete: "off",
    placeholder: t("number_placeholder") });
  const find = async () => {
    const text = input.value.trim();
    if (text) await identify(text);
  };
  input.addEventListener("keydown", (event) => { if (event.key === "Enter") find(); });
  const scan = tg && tg.showScanQrPopup
    ? el("button", { type: "button", id: "scan", class: "primary", text: `📷 ${t("scan")}`, onclick: () => {
      tg.showScanQrPopup({ text: t("scan_hint") }, (text) => { identify(text); return true; });
    } })
    : null;
  show(
    el("section", { class: "till" }, scan,
      el("div", { class: "row" }, input, el("button", { type: "button", class: "secondary", text: t("find"), onclick: find }))),
    el("section", { id: "till-step" }));
  input.focus();
}

function tillStep(...nodes) {
  const step = document.getElementById("till-step");
  if (step) step.replaceChildren(...nodes);
}

async function identify(text) {
  try {
    const card = await api("till/identify", { body: { text } });
    state.till = { card, draft: null, amount: "" };
    showKeypad();
  } catch (error) {
    tillStep(el("p", { class: "error", role: "alert", text: error.message }));
  }
}

function showKeypad() {
  const display = el("div", { class: "amount", id: "amount", text: state.till.amount || "0" });
  const press = (key) => {
    let amount = state.till.amount;
    if (key === "⌫") amount = amount.slice(0, -1);
    else if (key === "," ) { if (!amount.includes(",")) amount = (amount || "0") + ","; }
    else if (amount.length < 12) amount = amount === "0" ? key : amount + key;
    state.till.amount = amount;
    display.textContent = amount || "0";
  };
  const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", ",", "0", "⌫"];
  tillStep(
    safeHtml(state.till.card.html),
    el("h3", { text: t("amount") }), display,
    el("div", { class: "keypad" }, keys.map((key) => el("button", { type: "button", class: "key", "data-key": key, text: key, onclick: () => press(key) }))),
    el("button", { type: "button", id: "quote", class: "primary", text: t("quote"), onclick: quote }));
}

async function quote() {
  if (!state.till.amount) return;
  try {
    const draft = await api("till/quote", { body: { card_id: state.till.card.card_id, amount: state.till.amount } });
    state.till.draft = draft;
    const confirm = el("button", { type: "button", id: "confirm", class: "primary", text: t("confirm") });
    confirm.addEventListener("click", () => confirmSale(confirm));
    tillStep(safeHtml(draft.html),
      el("div", { class: "row" }, confirm,
        el("button", { type: "button", class: "secondary", text: t("cancel"), onclick: cancelSale })));
  } catch (error) {
    toast(error.message);
  }
}

async function confirmSale(button) {
  button.disabled = true; // a double tap sends one request; the server records once anyway
  try {
    const receipt = await api("till/confirm", { body: { draft_id: state.till.draft.draft_id } });
    toast(receipt.note);
    const voidButton = receipt.voided ? null : el("button", { type: "button", id: "void", class: "secondary", text: t("void"),
      onclick: async () => {
        try {
          const voided = await api("till/void", { body: { purchase_id: receipt.purchase_id } });
          toast(voided.note);
          tillStep(safeHtml(voided.html), next());
        } catch (error) { toast(error.message); }
      } });
    tillStep(el("div", { id: "receipt" }, safeHtml(receipt.html)), el("div", { class: "row" }, voidButton, next()));
  } catch (error) {
    button.disabled = false;
    toast(error.message);
  }
}

async function cancelSale() {
  try { await api("till/cancel", { body: { draft_id: state.till.draft.draft_id } }); } catch (error) { /* expired anyway */ }
  showTill();
}

function next() {
  return el("button", { type: "button", class: "primary", text: t("next_customer"), onclick: showTill });
}

// ------------------------------------------------------------------ owner: the dashboard

// `branch`: null asks for the server's default (the whole chain for an owner, a manager's
// first branch); the period chips keep the branch shown, the branch switch keeps the period.
async function showDashboard(days = state.dash.days, branch = state.dash.branch) {
  const asked = ++state.dash.asked;
  let data;
  const query = `dashboard?days=${days}` + (branch === null ? "" : `&branch=${branch}`);
  try { data = await api(query); } catch (error) {
    if (asked !== state.dash.asked) return;
    if (error.status === 400 || error.status === 403) state.dash.branch = null; // next time: the default
    if (state.tab === "dashboard") fail(error);
    return;
  }
  if (state.tab !== "dashboard" || asked !== state.dash.asked) return; // another tab or choice meanwhile
  const shown = data.branches && data.branches.length ? (data.branch === null ? 0 : data.branch) : null;
  state.dash = { days, branch: shown, asked };
  const periods = el("div", { class: "periods" }, [7, 30, 90].map((d) => el("button", {
    type: "button", class: d === days ? "period active" : "period", text: t(`period_${d}`), onclick: () => showDashboard(d) })));
  const branches = shown === null ? null : el("select", { id: "branch", class: "input branch", "aria-label": t("branch"),
    onchange: (event) => showDashboard(days, Number(event.target.value)) },
  data.branches.map((b) => el("option", { value: String(b.id), selected: b.id === shown,
    text: b.closed ? t("closed_branch", { name: b.name }) : b.name })));
  const tiles = el("div", { class: "tiles" }, data.tiles.map((tile) => el("div", { class: "tile", "data-key": tile.key },
    el("div", { class: "muted", text: tile.label }),
    el("b", { class: "value", text: tile.shown }),
    tile.change_pct === null ? null
      : el("div", { class: tile.change_pct >= 0 ? "change up" : "change down",
        title: t("vs_previous"), text: `${tile.change_pct >= 0 ? "▲" : "▼"} ${Math.abs(tile.change_pct)} %` }))));
  const nps = el("div", { class: "tile", "data-key": "nps" }, el("div", { class: "muted", text: data.nps.label }),
    el("b", { class: "value", text: data.nps.score === null ? "—" : String(data.nps.score) }));
  tiles.append(nps);
  const exportButton = state.me.role !== "owner" ? null : el("button", { type: "button", id: "export", class: "secondary", text: t("export"), onclick: async () => {
    try {
      const blob = await api("export", { blob: true });
      const link = el("a", { href: URL.createObjectURL(blob), download: "loyalty-export.xlsx" });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (error) { toast(error.message); }
  } });
  show(branches, el("p", { class: "muted", text: data.period.shown }), periods, tiles,
    el("section", {}, el("h3", { text: data.labels.weeks }), chart(data.weeks, data.labels)),
    el("section", {}, el("h3", { text: data.labels.nps_trend }), npsChart(data.weeks)),
    el("section", {}, el("h3", { text: data.labels.rfm }), rfm(data.rfm)),
    exportButton);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// Revenue as bars, active cards as a line, one point per week.
function chart(weeks, labels) {
  const width = 340, height = 150, pad = 18;
  const maxRevenue = Math.max(1, ...weeks.map((w) => w.revenue));
  const maxCards = Math.max(1, ...weeks.map((w) => w.active_cards));
  const step = (width - pad) / Math.max(1, weeks.length);
  const bars = weeks.map((w, i) => {
    const h = (w.revenue / maxRevenue) * (height - pad);
    const bar = svg("rect", { x: pad / 2 + i * step + 2, y: height - pad - h, width: step - 4, height: h, class: "bar-revenue" });
    bar.append(svg("title", {}, `${w.label}: ${w.revenue_shown}`));
    return bar;
  });
  const points = weeks.map((w, i) => `${pad / 2 + i * step + step / 2},${height - pad - (w.active_cards / maxCards) * (height - pad)}`).join(" ");
  const line = svg("polyline", { points, class: "line-cards" });
  return el("figure", { class: "chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": labels.weeks }, ...bars, line),
    el("figcaption", {}, el("span", { class: "key-revenue", text: labels.revenue }), " ", el("span", { class: "key-cards", text: labels.active_cards })));
}

function npsChart(weeks) {
  const width = 340, height = 80;
  const known = weeks.map((w, i) => [i, w.nps]).filter(([, v]) => v !== null);
  const step = width / Math.max(1, weeks.length);
  const y = (v) => height / 2 - (v / 100) * (height / 2 - 4);
  const points = known.map(([i, v]) => `${i * step + step / 2},${y(v)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" },
    svg("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2, class: "axis" }),
    svg("polyline", { points, class: "line-nps" }));
}

function rfm(segments) {
  const most = Math.max(1, ...segments.map((s) => s.cards));
  return el("ul", { class: "rfm" }, segments.map((s) => el("li", { "data-key": s.key },
    el("span", { class: "label", text: s.label }),
    el("span", { class: "bar" }, el("span", { style: `width:${Math.round((s.cards / most) * 100)}%` })),
    el("b", { text: String(s.cards) }))));
}

// ------------------------------------------------------------------ start

const VIEWS = { card: showCard, till: showTill, dashboard: showDashboard };

function tabsFor(role) {
  if (role === "owner" || role === "manager") return ["dashboard", "till", "card"];
  if (role === "cashier") return ["till", "card"];
  return ["card"];
}

function open(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  VIEWS[tab]();
}

async function start() {
  applyTheme();
  if (tg) {
    tg.ready();
    tg.expand && tg.expand();
    tg.onEvent && tg.onEvent("themeChanged", applyTheme);
  }
  try {
    state.me = await api("me");
  } catch (error) {
    fail(error);
    return;
  }
  state.texts = state.me.texts;
  document.documentElement.lang = state.me.language;
  const tabs = tabsFor(state.me.role);
  const nav = document.getElementById("tabs");
  if (tabs.length > 1) {
    nav.replaceChildren(...tabs.map((tab) => el("button", { type: "button", "data-tab": tab, text: t(`tab_${tab}`), onclick: () => open(tab) })));
    nav.hidden = false;
  }
  const wanted = new URLSearchParams(location.search).get("view");
  open(tabs.includes(wanted) ? wanted : tabs[0]);
}

start();
