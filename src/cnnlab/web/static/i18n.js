// The page's words in English and Polish (the tutorial's language). t("key", {vars}) looks a string up in
// the current language (falling back to English) and fills {name} placeholders; elements marked
// data-i18n="key" (text) or data-i18n-attr="attr:key;attr:key" are filled when the language changes.
// The choice is remembered in localStorage; ?lang=pl in the URL wins for one visit.
import EN from "./strings_en.js";
import PL from "./strings_pl.js";

const DICTS = { en: EN, pl: PL };
export const LANGS = { en: "English", pl: "Polski" };
const KEY = "cnnlab.lang";
let lang = "en";
const listeners = [];

export function t(key, vars = {}) {
  let s = DICTS[lang][key] ?? EN[key];
  if (s === undefined) return key;
  if (typeof s === "function") return s(vars);
  return s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
}

export function getLang() {
  return lang;
}

// Polish plural forms: 1 kanał, 2-4 kanały, 5+ kanałów (12-14 too); English: 1 channel, 2 channels.
export function plural(n, forms) {
  if (lang !== "pl") return n === 1 ? forms[0] : forms[1];
  const m10 = n % 10;
  const m100 = n % 100;
  if (n === 1) return forms[0];
  if (m10 >= 2 && m10 <= 4 && (m100 < 12 || m100 > 14)) return forms[1];
  return forms[2] ?? forms[1];
}

export function applyStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  document.documentElement.lang = lang;
}

export function setLang(next, { remember = true } = {}) {
  if (!DICTS[next]) return;
  lang = next;
  if (remember) {
    try {
      localStorage.setItem(KEY, next);
    } catch {
      // storage can be off (private mode): the choice then lasts for this visit
    }
  }
  applyStatic();
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) {
  listeners.push(fn);
}

export function initLang() {
  const fromUrl = new URLSearchParams(location.search).get("lang");
  let stored = null;
  try {
    stored = localStorage.getItem(KEY);
  } catch {
    stored = null;
  }
  const browser = (navigator.language || "en").slice(0, 2);
  lang = DICTS[fromUrl] ? fromUrl : DICTS[stored] ? stored : DICTS[browser] ? browser : "en";
  applyStatic();
  return lang;
}
