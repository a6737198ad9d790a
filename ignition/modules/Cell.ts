import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

const DAY = 86_400;

/**
 * Cell's contracts. Parameters (ignition/parameters/<network>.json on public networks):
 * admin and treasury default to the deploying account; amounts are in ATP wei. The channels'
 * challenge window defaults to a day, safe on a public network; the local devnet passes 60 s
 * (ignition/parameters/devnet.json).
 */
export default buildModule("Cell", (m) => {
  const deployer = m.getAccount(0);
  const admin = m.getParameter("admin", deployer);
  const treasury = m.getParameter("treasury", deployer);

  const atpToken = m.contract("ATPToken", [admin]);
  const donorRegistry = m.contract("DonorRegistry", [
    atpToken,
    admin,
    {
      minStake: m.getParameter("minStake", 100n * 10n ** 18n),
      // unbondingDelay >= rotationDelay + disputeWindow (a hard bound): a week, three days, a day.
      unbondingDelay: m.getParameter("unbondingDelay", 7 * DAY),
      disputeWindow: m.getParameter("disputeWindow", DAY),
      rotationDelay: m.getParameter("rotationDelay", 3 * DAY),
      jailDelay: m.getParameter("jailDelay", DAY),
      paramsTimelock: m.getParameter("paramsTimelock", 2 * DAY),
      equivocationSlashBps: m.getParameter("equivocationSlashBps", 5_000),
      outvotedSlashBps: m.getParameter("outvotedSlashBps", 1_000),
      reporterRewardBps: m.getParameter("reporterRewardBps", 1_000),
      outvoteRewardBps: m.getParameter("outvoteRewardBps", 0),
      minOutvoteQuorum: m.getParameter("minOutvoteQuorum", 3),
      treasury,
    },
  ]);
  // Public-network defaults: a day to vote (the dispute window is the registry's), five jurors
  // seeded by the block 5 blocks after the dispute.
  const juryCourt = m.contract("JuryCourt", [
    donorRegistry,
    admin,
    {
      voteWindow: m.getParameter("voteWindow", 86_400),
      drawDelay: m.getParameter("drawDelay", 5),
      jurySize: m.getParameter("jurySize", 5),
      jurorRewardBps: m.getParameter("jurorRewardBps", 2_000),
      winnerRewardBps: m.getParameter("winnerRewardBps", 3_000),
      silentJurorBps: m.getParameter("silentJurorBps", 100),
      disputeBond: m.getParameter("disputeBond", 10n * 10n ** 18n),
    },
  ]);
  // setCourt is owner-only: with an `admin` other than the deployer, the admin sends it instead.
  m.call(donorRegistry, "setCourt", [juryCourt], { from: deployer });
  const challengeWindow = m.getParameter("challengeWindow", 86_400n);
  const paymentChannels = m.contract("PaymentChannels", [atpToken, challengeWindow]);

  // zk settlement: the Poseidon libraries ZkChannels links, the committed CI circuit's verifier
  // (SettleBatch(4, 2, 2); a production ceremony's verifier takes its place with its parameters).
  const poseidonT3 = m.library("PoseidonT3");
  const poseidonT6 = m.library("PoseidonT6");
  const settleVerifier = m.contract("CiSettleVerifier");
  const zkChannels = m.contract(
    "ZkChannels",
    [
      atpToken,
      settleVerifier,
      m.getParameter("zkDepth", 4),
      m.getParameter("zkQueueSlots", 2),
      m.getParameter("zkBatchSize", 2),
      challengeWindow,
    ],
    { libraries: { PoseidonT3: poseidonT3, PoseidonT6: poseidonT6 } },
  );

  return { atpToken, donorRegistry, juryCourt, paymentChannels, zkChannels };
});
