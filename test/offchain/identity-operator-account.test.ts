import assert from "node:assert/strict";
import { test } from "node:test";
import { keccak256, recoverTypedDataAddress, toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { operatorAccount } from "../../offchain/src/identity/index.ts";
import { bidTypes, cellDomain } from "../../offchain/src/protocol/index.ts";

// The operator account signs through libsecp256k1; RFC 6979 makes every signature
// byte-equal to the one viem's JavaScript signer gives for the same key.

test("the operator account signs digests, messages and typed data exactly as viem's account", async () => {
  for (let i = 0; i < 10; i++) {
    const privateKey = generatePrivateKey();
    const fast = operatorAccount(privateKey);
    const reference = privateKeyToAccount(privateKey);
    assert.equal(fast.address, reference.address);

    const hash = keccak256(toHex(`digest ${i}`));
    assert.equal(await fast.sign({ hash }), await reference.sign({ hash }));

    const message = `message ${i}`;
    assert.equal(await fast.signMessage({ message }), await reference.signMessage({ message }));

    const typed = {
      domain: cellDomain(31337, "0x5fbdb2315678afecb367f642c40aa3f0e1b1c9a3"),
      types: bidTypes,
      primaryType: "Bid" as const,
      message: { jobId: hash, executor: fast.address, pricePerMegaFuel: BigInt(i), expiresAt: 99n },
    };
    const signature = await fast.signTypedData(typed);
    assert.equal(signature, await reference.signTypedData(typed));
    assert.equal(await recoverTypedDataAddress({ ...typed, signature }), fast.address);
  }
});

test("the operator account still signs transactions", async () => {
  const privateKey = generatePrivateKey();
  const transaction = {
    chainId: 31337,
    to: privateKeyToAccount(generatePrivateKey()).address,
    value: 1n,
    gas: 21_000n,
    maxFeePerGas: 2n,
    maxPriorityFeePerGas: 1n,
    nonce: 0,
  } as const;
  assert.equal(
    await operatorAccount(privateKey).signTransaction(transaction),
    await privateKeyToAccount(privateKey).signTransaction(transaction),
  );
});
