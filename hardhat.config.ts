import { createRequire } from "node:module";
import hardhatToolboxViem from "@nomicfoundation/hardhat-toolbox-viem";
import { configVariable, defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);
// The npm `solc` package ships the compiler as JavaScript: compiling never downloads anything.
const solcPath = require.resolve("solc/soljson.js");
const solcVersion: string = require("solc/package.json").version;

function publicL2(chainId: number, rpcVariable: string) {
  return {
    type: "http" as const,
    chainType: "op" as const,
    chainId,
    url: configVariable(rpcVariable),
    accounts: [configVariable("CELL_DEPLOYER_PRIVATE_KEY")],
  };
}

// Every simulated network (tests, `hardhat node`, the devnet) runs the OP Stack simulation, so
// receipts carry the L1 data fee an L2 user pays (`l1GasUsed`, `l1Fee`); `hardhatMainnet` stays L1.
declare module "hardhat/types/network" {
  interface ChainTypeConfig {
    defaultChainType: "op";
  }
}

export default defineConfig({
  plugins: [hardhatToolboxViem],
  defaultChainType: "op",
  solidity: {
    version: solcVersion,
    path: solcPath,
    // ZkChannels links these Poseidon libraries; their artifacts are deployed once per chain.
    npmFilesToBuild: ["poseidon-solidity/PoseidonT3.sol", "poseidon-solidity/PoseidonT6.sol"],
    settings: {
      evmVersion: "cancun",
      optimizer: { enabled: true, runs: 10_000 },
      viaIR: false,
    },
  },
  paths: {
    sources: "./contracts",
    tests: { nodejs: "./test/contracts", solidity: "./test/contracts" },
  },
  networks: {
    hardhatMainnet: { type: "edr-simulated", chainType: "l1" },
    // The devnet (`startDevnet`): transactions sent within one second share its timestamp, so
    // the chain's clock does not run ahead of the wall clock while a burst of setup transactions
    // is mined (nodes stamp receipts with the wall clock; the registry compares them with stake times).
    devnet: { type: "edr-simulated", chainType: "op", allowBlocksWithSameTimestamp: true },
    localhost: { type: "http", chainType: "op", url: process.env.CELL_RPC_URL ?? "http://127.0.0.1:8546" },
    baseSepolia: publicL2(84532, "BASE_SEPOLIA_RPC_URL"),
    opSepolia: publicL2(11155420, "OP_SEPOLIA_RPC_URL"),
    arbitrumSepolia: { ...publicL2(421614, "ARBITRUM_SEPOLIA_RPC_URL"), chainType: "generic" as const },
  },
  verify: {
    etherscan: { apiKey: configVariable("ETHERSCAN_API_KEY") },
    blockscout: { enabled: true },
    sourcify: { enabled: true },
  },
});
