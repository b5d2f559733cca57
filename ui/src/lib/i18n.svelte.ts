// Language, direction and digits. Arabic switches the whole layout to right-to-left (the CSS
// uses logical properties only); digits are Arabic-Indic or Latin as the user prefers, in
// either language. Amounts arrive from the core as decimal strings and are formatted as text,
// never through a float.

import { en, type Messages } from "./messages/en";
import { ar } from "./messages/ar";

export type Language = "en" | "ar";
export type Digits = "latn" | "arab";

const catalogues: Record<Language, Messages> = { en, ar };

function stored<T extends string>(key: string, fallback: T, allowed: readonly T[]): T {
  try {
    const value = globalThis.localStorage?.getItem(key) as T | null;
    return value && allowed.includes(value) ? value : fallback;
  } catch {
    return fallback;
  }
}

export const locale = $state({
  language: stored<Language>("daftar.language", "en", ["en", "ar"]),
  digits: stored<Digits>("daftar.digits", "latn", ["latn", "arab"]),
});

/** Applies the language to the document (direction, lang) and remembers both choices. */
export function applyLocale(): void {
  if (typeof document !== "undefined") {
    document.documentElement.lang = locale.language;
    document.documentElement.dir = locale.language === "ar" ? "rtl" : "ltr";
  }
  try {
    globalThis.localStorage?.setItem("daftar.language", locale.language);
    globalThis.localStorage?.setItem("daftar.digits", locale.digits);
  } catch {
    // Private mode: the choice lasts for this session.
  }
}

export function setLanguage(language: Language): void {
  locale.language = language;
  applyLocale();
}

export function setDigits(digits: Digits): void {
  locale.digits = digits;
  applyLocale();
}

export type MessageKey = keyof Messages;

/** The message `key` in the current language, with `{name}` placeholders filled. */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  const template = catalogues[locale.language][key] ?? en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name: string) =>
    name in params ? digits(String(params[name])) : `{${name}}`,
  );
}

const ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩";

/** Replaces Latin digits with Arabic-Indic ones when the user prefers those. */
export function digits(text: string): string {
  if (locale.digits !== "arab") return text;
  return text.replace(/[0-9]/g, (d) => ARABIC_INDIC[Number(d)]);
}

/** An amount such as "-12345.50" as "-12,345.50" (or "١٢٬٣٤٥٫٥٠"), optionally with currency. */
export function money(amount: string | null | undefined, currency?: string): string {
  if (amount === null || amount === undefined || amount === "") return "";
  const negative = amount.startsWith("-");
  const [whole, fraction] = amount.replace("-", "").split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  let text = (negative ? "-" : "") + grouped + (fraction !== undefined ? "." + fraction : "");
  if (locale.digits === "arab") {
    text = digits(text.replace(/,/g, "٬").replace(".", "٫"));
  }
  if (!currency) return text;
  const unit = locale.language === "ar" && currency === "SAR" ? "ر.س" : currency;
  return locale.language === "ar" ? `${text} ${unit}` : `${unit} ${text}`;
}

/** A date or timestamp ("2026-11-24" or RFC 3339) for the locale, in the chosen digits. */
export function date(value: string | null | undefined, withTime = false): string {
  if (!value) return "";
  const parsed = new Date(value.length === 10 ? `${value}T00:00:00` : value);
  if (Number.isNaN(parsed.getTime())) return value;
  const tag = `${locale.language === "ar" ? "ar-SA" : "en-GB"}-u-nu-${locale.digits}-ca-gregory`;
  return new Intl.DateTimeFormat(tag, {
    year: "numeric",
    month: "short",
    day: "numeric",
    ...(withTime ? { hour: "2-digit", minute: "2-digit" } : {}),
  }).format(parsed);
}
