// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

/// @title IJuryCourt
/// @notice What DonorRegistry calls on the court that decides outvote slashes.
interface IJuryCourt {
    /// @notice An outvote the registry has validated, to be slashed after a dispute window.
    /// @param jobId the job (EIP-712 digest of its spec in the registry domain)
    /// @param accusedOperator operator key that signed the outvoted receipt
    /// @param accusedDonor staking wallet of that operator
    /// @param amount ATP to slash from the accused, fixed at the slash share in force now
    /// @param deadline end of the dispute window (now + the registry's disputeWindow)
    /// @param outvoteBps that share, applied to the accusers' stakes should a jury clear the accused
    /// @param reporter who submitted the evidence
    /// @param reporterRewardBps share of an undisputed slash paid to the reporter (0 by default)
    /// @param accusedResult CellTypes.resultOf the accused receipt
    /// @param quorumResult CellTypes.resultOf the quorum's receipts
    /// @param quorumDonors staking wallets of the quorum's operators, in evidence order
    struct Accusation {
        bytes32 jobId;
        address accusedOperator;
        address accusedDonor;
        uint96 amount;
        uint64 deadline;
        uint16 outvoteBps;
        address reporter;
        uint16 reporterRewardBps;
        bytes32 accusedResult;
        bytes32 quorumResult;
        address[] quorumDonors;
    }

    /// @notice Opens a pending outvote slash; only the registry. Returns the case id. The job spec
    /// and the receipts are in the calldata of the registry's slashOutvoted call.
    function openCase(Accusation calldata accusation) external returns (uint256);

    /// @notice The registry reports a donor's new jury weight (its bonded stake while active, else 0).
    function onWeightChanged(address donor, uint256 weight) external;

    /// @notice Open cases in which `donor` is the accused, an accuser or a drawn juror; while it is
    /// not zero the donor cannot withdraw, so no party leaves with stake a case may still slash.
    function openCasesOf(address donor) external view returns (uint256);
}
