// The editor with the core mocked at its one client module (src/lib/api.ts).
import { describe, expect, it, vi, beforeEach, afterEach } from "vitest";
import { render, screen, fireEvent, waitFor, cleanup } from "@testing-library/svelte";

const calls: { command: string; args: unknown }[] = [];
vi.mock("../../src/lib/api", async () => {
  const actual = await vi.importActual<typeof import("../../src/lib/api")>("../../src/lib/api");
  const totals = (gross: string) => ({
    currency: "SAR",
    lines_net: "100.00",
    discount: "0.00",
    net: "100.00",
    vat: "15.00",
    gross,
    paid: "0.00",
    due: gross,
    vat_sar: null,
    breakdown: [{ code: "S", rate: "15", taxable: "100.00", vat: "15.00" }],
    lines: [{ line: "l1", net: "100.00", discount: "0.00", vat: "15.00", gross: "115.00" }],
  });
  return {
    ...actual,
    onSync: () => () => {},
    api: {
      listCustomers: async () => [{ id: "c1", name: "Nour Bakery", vat_number: null, email: "", phone: "", city: "", deleted: false }],
      listItems: async () => [],
      previewDraft: async (draft: { lines: { unit_price: string }[] }) => {
        calls.push({ command: "preview_draft", args: draft });
        const bad = draft.lines.find((l) => l.unit_price === "5.555");
        return bad
          ? { totals: totals("115.00"), problems: [{ field: "lines[1].unit_price", message: "5.555 has more decimal places than SAR allows" }] }
          : { totals: totals("115.00"), problems: [] };
      },
      createInvoice: async () => {
        throw new actual.Failure({
          code: "invalid",
          message: "line 1 needs a description",
          problems: [{ field: "lines[1].description", message: "line 1 needs a description" }],
        });
      },
    },
  };
});

import InvoiceEditor from "../../src/screens/InvoiceEditor.svelte";
import { locale } from "../../src/lib/i18n.svelte";

describe("invoice editor", () => {
  afterEach(cleanup);
  beforeEach(() => {
    calls.length = 0;
    locale.language = "en";
    locale.digits = "latn";
  });

  it("shows the core's live totals and puts each problem beside its input", async () => {
    render(InvoiceEditor, { id: null });
    const price = await screen.findByLabelText("Unit price 1");
    await fireEvent.input(price, { target: { value: "5.555" } });
    await waitFor(() => expect(screen.getByText("5.555 has more decimal places than SAR allows")).toBeTruthy());
    expect(price.getAttribute("aria-invalid")).toBe("true");
    expect(screen.getByTestId("total-gross").textContent).toBe("SAR 115.00");
    expect(calls.length).toBeGreaterThan(0);
  });

  it("shows a refused save's problems beside the fields", async () => {
    render(InvoiceEditor, { id: null });
    await screen.findByLabelText("Description 1");
    await fireEvent.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(screen.getByText("line 1 needs a description")).toBeTruthy());
    expect(screen.getByLabelText("Description 1").getAttribute("aria-invalid")).toBe("true");
  });
});
