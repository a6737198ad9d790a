// Donor: stake with a permit, register a node (this node's operator, or a pasted proof),
// add stake, unbond, and withdraw once the unbonding delay has passed.
import { h, type ComponentChild } from "preact";
import { useEffect, useState } from "preact/hooks";
import { isAddress, isHex, type Address, type Hex } from "viem";
import { postJson } from "../api.ts";
import {
  atpBalance,
  donorState,
  registerNode,
  requestUnbond,
  stakeWithPermit,
  withdrawStake,
  type RegistrationProof,
} from "../chain.ts";
import { ActionButton, ChainRef, Field, Section, Show, TextInput, useLoad } from "../ui.ts";
import { countdown, formatAtp, parseAtpInput, shortfallText } from "../view.ts";
import type { ConsoleConfig, Connection } from "../wallet.ts";

export function DonorPage(props: { config: ConsoleConfig; connection: Connection }): ComponentChild {
  const { config, connection } = props;
  const [version, setVersion] = useState(0);
  const refresh = () => setVersion((value) => value + 1);
  const [loaded] = useLoad(
    async () => ({
      balance: await atpBalance(connection, config),
      donor: await donorState(connection, config),
    }),
    [connection.account, version],
    5_000,
  );
  return h(
    "div",
    { class: "page" },
    h(Section, {
      title: "Your stake",
      testId: "donor-status",
      children: h(Show<{ balance: bigint; donor: Awaited<ReturnType<typeof donorState>> }>, {
        loaded,
        what: "stake",
        render: ({ balance, donor }) =>
          h(
            "dl",
            null,
            h("dt", null, "ATP in wallet"),
            h("dd", { "data-testid": "atp-balance" }, formatAtp(balance)),
            h("dt", null, "Bonded"),
            h("dd", { "data-testid": "bonded" }, formatAtp(donor.bonded)),
            h("dt", null, "Unbonding"),
            h("dd", null, formatAtp(donor.unbonding)),
            h("dt", null, "Operator"),
            h(
              "dd",
              { "data-testid": "registered-operator" },
              donor.registered
                ? h(ChainRef, { chainId: config.chainId, kind: "address", value: donor.operator })
                : "not registered",
            ),
          ),
      }),
    }),
    h(StakeForm, { config, connection, onDone: refresh }),
    h(RegisterForm, { config, connection, onDone: refresh }),
    h(UnbondForm, { config, connection, onDone: refresh, version }),
  );
}

interface FormProps {
  config: ConsoleConfig;
  connection: Connection;
  onDone: () => void;
}

function StakeForm({ config, connection, onDone }: FormProps): ComponentChild {
  const [amount, setAmount] = useState("");
  const run = async () => {
    const wei = parseAtpInput(amount, "Stake");
    const shortfall = shortfallText(await atpBalance(connection, config), wei);
    if (shortfall) throw new Error(shortfall);
    const hash = await stakeWithPermit(connection, config, wei);
    onDone();
    return `Staked ${formatAtp(wei)} (transaction ${hash.slice(0, 10)}…).`;
  };
  return h(Section, {
    title: "Stake or add stake (one transaction, with a permit)",
    children: [
      h(Field, {
        label: "Amount (ATP)",
        children: h(TextInput, { value: amount, onInput: setAmount, testId: "stake-amount" }),
      }),
      h(ActionButton, { label: "Stake", run, testId: "stake" }),
    ],
  });
}

function RegisterForm({ config, connection, onDone }: FormProps): ComponentChild {
  const [pasted, setPasted] = useState("");
  const [metadata, setMetadata] = useState("");
  const register = async (proof: RegistrationProof) => {
    const hash = await registerNode(connection, config, proof, metadata);
    onDone();
    return `Registered operator ${proof.operator} (transaction ${hash.slice(0, 10)}…).`;
  };
  const fromNode = async () =>
    register(await postJson<RegistrationProof>("/registration/proof", { donor: connection.account }));
  const fromPaste = async () => register(parseProof(pasted));
  return h(Section, {
    title: "Register a node",
    children: [
      h(
        "p",
        { class: "muted" },
        `This node's operator is ${config.operator}; it signs the proof of possession for your wallet.`,
      ),
      h(Field, {
        label: "Metadata URI (optional)",
        children: h(TextInput, { value: metadata, onInput: setMetadata }),
      }),
      h(ActionButton, { label: "Register this node", run: fromNode, testId: "register-node" }),
      h(Field, {
        label:
          "Or paste another node's proof (JSON of its POST /registration/proof: operator, peerKey, signature)",
        children: h("textarea", {
          value: pasted,
          rows: 3,
          onInput: (event: Event) => setPasted((event.currentTarget as HTMLTextAreaElement).value),
        }),
      }),
      h(ActionButton, { label: "Register pasted node", run: fromPaste, testId: "register-pasted" }),
    ],
  });
}

/** A pasted registration proof, checked field by field. */
export function parseProof(text: string): RegistrationProof {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error("The pasted proof is not JSON: paste the whole answer of POST /registration/proof.");
  }
  const { operator, peerKey, signature } = value;
  if (typeof operator !== "string" || !isAddress(operator))
    throw new Error("The proof's operator is not an address.");
  if (typeof peerKey !== "string" || !isHex(peerKey) || peerKey.length !== 66)
    throw new Error("The proof's peerKey must be 32 bytes of hex.");
  if (typeof signature !== "string" || !isHex(signature) || signature.length !== 132)
    throw new Error("The proof's signature must be 65 bytes of hex.");
  return { operator: operator as Address, peerKey: peerKey as Hex, signature: signature as Hex };
}

function UnbondForm({
  config,
  connection,
  onDone,
  version,
}: FormProps & { version: number }): ComponentChild {
  const [amount, setAmount] = useState("");
  const [now, setNow] = useState(() => Math.floor(Date.now() / 1000));
  useEffect(() => {
    const timer = setInterval(() => setNow(Math.floor(Date.now() / 1000)), 1_000);
    return () => clearInterval(timer);
  }, []);
  const [loaded] = useLoad(() => donorState(connection, config), [connection.account, version], 5_000);
  const unbond = async () => {
    const hash = await requestUnbond(connection, config, parseAtpInput(amount, "Unbond"));
    onDone();
    return `Unbonding started (transaction ${hash.slice(0, 10)}…).`;
  };
  const withdraw = async () => {
    const hash = await withdrawStake(connection, config);
    onDone();
    return `Withdrawn (transaction ${hash.slice(0, 10)}…).`;
  };
  return h(Section, {
    title: "Unbond and withdraw",
    children: [
      h(Field, {
        label: "Amount to unbond (ATP)",
        children: h(TextInput, { value: amount, onInput: setAmount, testId: "unbond-amount" }),
      }),
      h(ActionButton, { label: "Unbond", run: unbond, testId: "unbond" }),
      h(Show<Awaited<ReturnType<typeof donorState>>>, {
        loaded,
        what: "unbonding",
        render: (donor) =>
          donor.unbonding === 0n
            ? h("p", { class: "muted" }, "Nothing is unbonding.")
            : h(
                "p",
                { "data-testid": "withdraw-countdown" },
                `${formatAtp(donor.unbonding)} can be withdrawn ${countdown(donor.unbondableAt, now + donor.chainClockOffset)}.`,
              ),
      }),
      h(ActionButton, { label: "Withdraw", run: withdraw, testId: "withdraw" }),
    ],
  });
}
