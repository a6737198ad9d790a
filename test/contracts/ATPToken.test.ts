import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { keccak256, parseEther, toHex } from "viem";
import { deployCell } from "../support/contracts/deploy.ts";
import { signPermit } from "../support/contracts/fixture.ts";

describe("ATPToken", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;
  const cell = () => deployCell(connection);

  it("lets the minter mint and emits Transfer from zero", async () => {
    const { viem, token, reporter } = await networkHelpers.loadFixture(cell);
    const before = await token.read.balanceOf([reporter.account.address]);
    await viem.assertions.emit(token.write.mint([reporter.account.address, 5n]), token, "Transfer");
    assert.equal(await token.read.balanceOf([reporter.account.address]), before + 5n);
  });

  it("refuses minting without MINTER_ROLE, and minting above the cap", async () => {
    const { viem, token, reporter, deployer } = await networkHelpers.loadFixture(cell);
    await viem.assertions.revertWithCustomError(
      token.write.mint([reporter.account.address, 1n], { account: reporter.account }),
      token,
      "AccessControlUnauthorizedAccount",
    );
    const room = (await token.read.MAX_SUPPLY()) - (await token.read.totalSupply());
    await viem.assertions.revertWithCustomError(
      token.write.mint([deployer.account.address, room + 1n]),
      token,
      "ERC20ExceededCap",
    );
    await token.write.mint([deployer.account.address, room]);
  });

  it("grants MINTER_ROLE through the admin (a faucet account)", async () => {
    const { token, reporter } = await networkHelpers.loadFixture(cell);
    const role = keccak256(toHex("MINTER_ROLE"));
    assert.equal(await token.read.MINTER_ROLE(), role);
    await token.write.grantRole([role, reporter.account.address]);
    await token.write.mint([reporter.account.address, 1n], { account: reporter.account });
  });

  it("accepts an EIP-2612 permit signed off-chain", async () => {
    const { token, buyer, payee, chainId } = await networkHelpers.loadFixture(cell);
    const value = parseEther("3");
    const deadline = 2n ** 40n;
    const permit = await signPermit(buyer, {
      chainId,
      token: token.address,
      spender: payee.account.address,
      value,
      nonce: 0n,
      deadline,
    });
    await token.write.permit([
      buyer.account.address,
      payee.account.address,
      value,
      deadline,
      permit.v,
      permit.r,
      permit.s,
    ]);
    assert.equal(await token.read.allowance([buyer.account.address, payee.account.address]), value);
  });
});
