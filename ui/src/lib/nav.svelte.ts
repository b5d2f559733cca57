// Which screen is shown. Kept in the URL hash too, so a reload stays put.

export type Screen =
  | { name: "invoices"; trash?: boolean }
  | { name: "invoice"; id: string }
  | { name: "new-invoice" }
  | { name: "history"; id: string }
  | { name: "customers" }
  | { name: "items" }
  | { name: "trash" }
  | { name: "sync" }
  | { name: "audit" }
  | { name: "settings" };

function parse(hash: string): Screen {
  const [name, id] = hash.replace(/^#\/?/, "").split("/");
  switch (name) {
    case "invoice":
      return id ? { name: "invoice", id } : { name: "invoices" };
    case "history":
      return id ? { name: "history", id } : { name: "invoices" };
    case "new-invoice":
    case "customers":
    case "items":
    case "trash":
    case "sync":
    case "audit":
    case "settings":
      return { name } as Screen;
    default:
      return { name: "invoices" };
  }
}

export const nav = $state<{ screen: Screen }>({
  screen: typeof location === "undefined" ? { name: "invoices" } : parse(location.hash),
});

export function go(screen: Screen): void {
  nav.screen = screen;
  if (typeof history !== "undefined") {
    const id = "id" in screen ? `/${screen.id}` : "";
    history.replaceState(null, "", `#/${screen.name}${id}`);
  }
}
