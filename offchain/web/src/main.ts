// The Cell console: a wallet bar and four pages (donor, buyer, jobs, explorer), talking to
// this node's API (same origin) and to the chain through the wallet and the node's RPC.
import { h, render, type ComponentChild } from "preact";
import { useEffect, useState } from "preact/hooks";
import { getJson, saveToken, takeTokenFromLocation } from "./api.ts";
import { BuyerPage } from "./pages/buyer.ts";
import { DonorPage } from "./pages/donor.ts";
import { ExplorerPage } from "./pages/explorer.ts";
import { JobsPage } from "./pages/jobs.ts";
import { ChainRef, Section, Show, TextInput, useLoad } from "./ui.ts";
import { errorText } from "./view.ts";
import {
  connect,
  discoverWallets,
  injectedWallet,
  type ConsoleConfig,
  type Connection,
  type DiscoveredWallet,
  watchWallet,
} from "./wallet.ts";

const PAGES = ["donor", "buyer", "jobs", "explorer"] as const;
type Page = (typeof PAGES)[number];
const PAGE_TITLES: Record<Page, string> = {
  donor: "Donor",
  buyer: "Buyer",
  jobs: "Jobs",
  explorer: "Explorer",
};

function pageFromHash(): Page {
  const name = window.location.hash.replace(/^#\/?/, "");
  return (PAGES as readonly string[]).includes(name) ? (name as Page) : "donor";
}

function App(props: { hasToken: boolean }): ComponentChild {
  const [hasToken, setHasToken] = useState(props.hasToken);
  const [page, setPage] = useState<Page>(pageFromHash);
  useEffect(() => {
    const onHash = () => setPage(pageFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const [config] = useLoad(() => getJson<ConsoleConfig>("/console/config"), [hasToken]);
  if (!hasToken) return h(TokenForm, { onSaved: () => setHasToken(true) });
  return h(Show<ConsoleConfig>, {
    loaded: config,
    what: "The console's configuration",
    render: (value) => h(Shell, { config: value, page }),
  });
}

function TokenForm(props: { onSaved: () => void }): ComponentChild {
  const [token, setToken] = useState("");
  return h(Section, {
    title: "API token",
    children: [
      h(
        "p",
        null,
        "Open the console with the link `npm start` prints, or paste the token from the node's data directory (api-token).",
      ),
      h(TextInput, { value: token, onInput: setToken, testId: "api-token" }),
      h(
        "button",
        {
          onClick: () => {
            saveToken(token);
            props.onSaved();
          },
        },
        "Use token",
      ),
    ],
  });
}

function Shell(props: { config: ConsoleConfig; page: Page }): ComponentChild {
  const { config, page } = props;
  const [connection, setConnection] = useState<Connection | undefined>();
  useEffect(
    () => connection && watchWallet(connection.provider, () => setConnection(undefined)),
    [connection],
  );
  return h(
    "div",
    { class: "shell" },
    h(
      "header",
      null,
      h("h1", null, "Cell"),
      h(
        "nav",
        null,
        PAGES.map((name) =>
          h(
            "a",
            {
              key: name,
              href: `#/${name}`,
              class: name === page ? "active" : "",
              "data-testid": `nav-${name}`,
            },
            PAGE_TITLES[name],
          ),
        ),
      ),
      h(WalletBar, { config, connection, onConnected: setConnection }),
    ),
    h("main", { "data-testid": `page-${page}` }, pageBody(page, config, connection)),
  );
}

function pageBody(page: Page, config: ConsoleConfig, connection: Connection | undefined): ComponentChild {
  if (page === "jobs") return h(JobsPage, { chainId: config.chainId });
  if (page === "explorer") return h(ExplorerPage, { config });
  if (!connection) return h("p", { class: "muted" }, "Connect a wallet to stake or to open channels.");
  return page === "donor" ? h(DonorPage, { config, connection }) : h(BuyerPage, { config, connection });
}

function WalletBar(props: {
  config: ConsoleConfig;
  connection: Connection | undefined;
  onConnected: (connection: Connection) => void;
}): ComponentChild {
  const [wallets, setWallets] = useState<DiscoveredWallet[]>([]);
  const [failure, setFailure] = useState<string | undefined>();
  useEffect(() => discoverWallets(setWallets), []);
  if (props.connection)
    return h(
      "div",
      { class: "wallet", "data-testid": "connected-account" },
      h(ChainRef, { chainId: props.config.chainId, kind: "address", value: props.connection.account }),
    );
  const fallback = injectedWallet();
  const choices = wallets.length > 0 ? wallets : fallback ? [fallback] : [];
  const onConnect = (wallet: DiscoveredWallet) =>
    connect(wallet, props.config).then(props.onConnected, (error: unknown) => setFailure(errorText(error)));
  return h(
    "div",
    { class: "wallet" },
    choices.length === 0 && h("span", { class: "muted" }, "No wallet found in this browser."),
    choices.map((wallet) =>
      h(
        "button",
        { key: wallet.info.uuid, onClick: () => void onConnect(wallet), "data-testid": "connect-wallet" },
        wallet.info.icon && h("img", { src: wallet.info.icon, alt: "", width: 16, height: 16 }),
        ` Connect ${wallet.info.name}`,
      ),
    ),
    failure && h("span", { class: "error", "data-testid": "wallet-error" }, failure),
  );
}

const root = document.getElementById("app");
if (root) render(h(App, { hasToken: takeTokenFromLocation() !== undefined }), root);
