// window.Telegram.WebApp for this page, when Telegram's own script is not there (no CDN: every
// asset ships with the project). It implements the few parts the page uses on top of the
// documented Mini App protocol: the launch parameters in the URL's hash (tgWebAppData is the
// signed initData), methods posted to the client (TelegramWebviewProxy on phones, postMessage
// to the parent frame on the web and desktop) and events the client sends back.
(function () {
  "use strict";
  if (window.Telegram && window.Telegram.WebApp) return; // Telegram's script, or a test's stub
  var hash = {};
  try {
    new URLSearchParams(location.hash.slice(1)).forEach(function (value, key) { hash[key] = value; });
  } catch (e) { /* no launch parameters: opened outside Telegram */ }
  var stored = {};
  try { stored = JSON.parse(sessionStorage.getItem("tgLaunch") || "{}"); } catch (e) { stored = {}; }
  for (var key in stored) if (!(key in hash)) hash[key] = stored[key];
  try { sessionStorage.setItem("tgLaunch", JSON.stringify(hash)); } catch (e) { /* private mode */ }

  var handlers = {};
  function postEvent(type, data) {
    var payload = JSON.stringify(data || {});
    if (window.TelegramWebviewProxy) window.TelegramWebviewProxy.postEvent(type, payload);
    else if (window.parent !== window) {
      window.parent.postMessage(JSON.stringify({ eventType: type, eventData: data || {} }), "*");
    }
  }
  function emit(name, data) { (handlers[name] || []).slice().forEach(function (fn) { fn(data); }); }
  function receiveEvent(type, data) {
    if (type === "qr_text_received") {
      if (scanCallback && scanCallback(data && data.data) === true) webApp.closeScanQrPopup();
      emit("qrTextReceived", data);
    } else if (type === "scan_qr_popup_closed") {
      scanCallback = null;
      emit("scanQrPopupClosed", {});
    } else if (type === "theme_changed" && data && data.theme_params) {
      webApp.themeParams = data.theme_params;
      emit("themeChanged", {});
    }
  }
  window.addEventListener("message", function (event) {
    if (event.source !== window.parent) return;
    try {
      var parsed = JSON.parse(event.data);
      if (parsed && parsed.eventType) receiveEvent(parsed.eventType, parsed.eventData);
    } catch (e) { /* not ours */ }
  });

  var initData = hash.tgWebAppData || "";
  var user = null;
  try { user = JSON.parse(new URLSearchParams(initData).get("user") || "null"); } catch (e) { user = null; }
  var theme = {};
  try { theme = JSON.parse(hash.tgWebAppThemeParams || "{}"); } catch (e) { theme = {}; }
  var scanCallback = null;
  var version = hash.tgWebAppVersion || "6.0";
  function atLeast(wanted) {
    var a = version.split("."), b = String(wanted).split(".");
    for (var i = 0; i < Math.max(a.length, b.length); i++) {
      var x = parseInt(a[i] || "0", 10), y = parseInt(b[i] || "0", 10);
      if (x !== y) return x > y;
    }
    return true;
  }
  var webApp = {
    initData: initData,
    initDataUnsafe: { user: user },
    themeParams: theme,
    platform: hash.tgWebAppPlatform || "unknown",
    version: version,
    isVersionAtLeast: atLeast,
    ready: function () { postEvent("web_app_ready"); },
    expand: function () { postEvent("web_app_expand"); },
    onEvent: function (name, fn) { (handlers[name] = handlers[name] || []).push(fn); },
    offEvent: function (name, fn) {
      handlers[name] = (handlers[name] || []).filter(function (f) { return f !== fn; });
    },
    showScanQrPopup: function (params, callback) {
      scanCallback = callback || null;
      postEvent("web_app_open_scan_qr_popup", { text: (params && params.text) || "" });
    },
    closeScanQrPopup: function () { scanCallback = null; postEvent("web_app_close_scan_qr_popup"); },
    addToHomeScreen: function () { postEvent("web_app_add_to_home_screen"); },
  };
  window.Telegram = window.Telegram || {};
  window.Telegram.WebView = { receiveEvent: receiveEvent };
  window.Telegram.WebApp = initData ? webApp : null;
})();
