import "@fontsource/noto-sans/400.css";
import "@fontsource/noto-sans/600.css";
import "@fontsource/noto-sans-arabic/400.css";
import "@fontsource/noto-sans-arabic/600.css";
import "./app.css";
import { mount } from "svelte";
import App from "./App.svelte";
import { applyLocale } from "./lib/i18n.svelte";

applyLocale();
mount(App, { target: document.getElementById("app")! });
