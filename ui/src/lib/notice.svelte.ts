// Short messages after an action, and failures explained from their error code.

import { Failure } from "./api";
import { t } from "./i18n.svelte";

export const notice = $state<{ text: string; kind: "info" | "error"; at: number }>({ text: "", kind: "info", at: 0 });

let timer: ReturnType<typeof setTimeout> | undefined;

/** Shows `text` for a few seconds (errors stay until closed or replaced). */
export function tell(text: string): void {
  notice.text = text;
  notice.kind = "info";
  notice.at = Date.now();
  clearTimeout(timer);
  timer = setTimeout(() => {
    if (notice.kind === "info") notice.text = "";
  }, 4000);
}

/** What to tell people about a failure: the code decides the wording, the message the detail. */
export function explain(error: unknown): string {
  const failure = error instanceof Failure ? error : null;
  const message = failure?.message ?? String(error);
  switch (failure?.code) {
    case "invalid":
      return failure.problems.length ? t("error.invalid") : message;
    case "busy":
      return t("error.busy");
    case "io":
      return t("error.io", { message });
    case "not_found":
      return t("error.not_found", { message });
    case "conflict":
      return t("error.conflict", { message });
    case "keyring_unavailable":
    case "key_missing":
      return t("error.keyring", { message });
    case "offline":
      return t("error.offline", { message });
    default:
      return t("error.other", { message });
  }
}

export function fail(error: unknown): void {
  notice.text = explain(error);
  notice.kind = "error";
  notice.at = Date.now();
}
