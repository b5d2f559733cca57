import { describe, expect, it } from "vitest";
import { locale, money, t, digits } from "../../src/lib/i18n.svelte";

describe("formatting", () => {
  it("groups amounts as text, never through a float", () => {
    locale.language = "en";
    locale.digits = "latn";
    expect(money("1234567.05", "SAR")).toBe("SAR 1,234,567.05");
    expect(money("-0.10")).toBe("-0.10");
    expect(money("90071992547409.93")).toBe("90,071,992,547,409.93");
  });

  it("writes Arabic-Indic digits and the riyal sign in Arabic", () => {
    locale.language = "ar";
    locale.digits = "arab";
    expect(money("1234.50", "SAR")).toBe("١٬٢٣٤٫٥٠ ر.س");
    expect(digits("A-000012")).toBe("A-٠٠٠٠١٢");
    expect(t("list.count", { n: 12 })).toBe("١٢ فاتورة");
    locale.digits = "latn";
    expect(t("list.count", { n: 12 })).toBe("12 فاتورة");
    locale.language = "en";
  });

  it("has every English message in Arabic", async () => {
    const { en } = await import("../../src/lib/messages/en");
    const { ar } = await import("../../src/lib/messages/ar");
    expect(Object.keys(ar).sort()).toEqual(Object.keys(en).sort());
  });
});
