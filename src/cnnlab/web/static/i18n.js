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

// Placeholders: {name} is the value (a number in the language's format: 105,898 / 105 898), {name:word}
// the plural form of "word" that agrees with it (the dictionary's "plural.word": [one, few, many] in
// Polish, [one, other] in English), chosen by Intl.PluralRules: 1 mapa, 2-4 mapy, 5-21 map, 22 mapy.
export function t(key, vars = {}) {
  const s = DICTS[lang][key] ?? EN[key];
  if (s === undefined) return key;
  if (typeof s === "function") return s(vars);
  return s.replace(/\{(\w+)(?::(\w+))?\}/g, (m, k, word) => {
    const v = vars[k];
    if (v === undefined) return m;
    if (word) return plural(Number(v), DICTS[lang][`plural.${word}`] ?? EN[`plural.${word}`] ?? [word]);
    return typeof v === "number" && Number.isInteger(v) ? num(v) : String(v);
  });
}

const formats = new Map();
function numberFormat(options) {
  const key = `${lang}|${JSON.stringify(options)}`;
  if (!formats.has(key)) formats.set(key, new Intl.NumberFormat(lang === "pl" ? "pl-PL" : "en-US", options));
  return formats.get(key);
}

// A number as the reader's language writes it: 105,898 and 0.25 in English, 105 898 and 0,25 in Polish.
export function num(v, digits = null) {
  if (!Number.isFinite(v)) return String(v);
  // digits grouped from 10 000 on (CLDR's "min2", Polish usage): 4096 and test image #1712 stay whole
  const opts = digits === null ? { maximumFractionDigits: 20, useGrouping: "min2" } : { minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: "min2" };
  return numberFormat(opts).format(v);
}

// A probability (0..1) as a percentage: 35.9% / 35,9%.
export function pct(p, digits = 1) {
  return `${numberFormat({ minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: false }).format(100 * p)}%`;
}

export function getLang() {
  return lang;
}

// The form of a word that agrees with n, by the language's plural rules (Intl.PluralRules): forms are
// [one, few, many] (Polish: 1 kanał, 2-4 kanały, 5-21 kanałów, 22 kanały) or [one, other] (English).
const rules = new Map();
export function plural(n, forms) {
  if (!rules.has(lang)) rules.set(lang, new Intl.PluralRules(lang === "pl" ? "pl-PL" : "en-US"));
  const cat = rules.get(lang).select(n);
  if (forms.length < 2) return forms[0];
  if (cat === "one") return forms[0];
  if (cat === "few") return forms[1];
  if (cat === "many") return forms[2] ?? forms[1];
  return lang === "pl" ? forms[1] : forms[forms.length - 1]; // "other": English plurals; Polish fractions (2,5 mapy)
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
