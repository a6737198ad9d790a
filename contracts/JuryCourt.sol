// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {DonorRegistry} from "./DonorRegistry.sol";
import {IJuryCourt} from "./interfaces/IJuryCourt.sol";
import {CellTypes} from "./libraries/CellTypes.sol";
import {SortitionSumTree} from "./libraries/SortitionSumTree.sol";

/// @title JuryCourt
/// @notice Decides outvote slashes optimistically. DonorRegistry validates an outvote and opens a
/// case here; the slash waits for the registry's dispute window. Undisputed, `finalizeOutvote`
/// slashes the accused for the treasury (less the registry's outvote reward to the reporter, 0 by
/// default), so by default an accusation alone never pays anyone.
/// Disputed (with a bond), a jury of up to `jurySize` donors is drawn stake-weighted from the
/// active donors, excluding the accused and the accusers, with randomness fixed only after the
/// dispute (the hash of a block `drawDelay` blocks later). Jurors re-execute the deterministic
/// job and submit their signed receipts. If a strict majority of the submitted receipts agrees
/// with the accused, the accusers are slashed and the disputer gets the bond back plus a reward;
/// otherwise the accused is slashed and the bond goes to the jurors who voted the quorum's result.
/// Jurors that stay silent or vote against the decided result lose `silentJurorBps` of their stake.
/// @dev A separate contract because the registry alone nears the 24,576-byte limit. The registry
/// pushes every jury weight change (`onWeightChanged`) and slashes for the court (`courtSlash`);
/// the court keeps the sortition sum tree of weights and the cases. Why no liar gains: docs/contracts.md.
/// Randomness limits: the proposer (on an L2, the sequencer) of block disputeBlock + drawDelay can
/// choose to publish it or not and so pick between two juries; blockhash reaches back only 256 blocks,
/// so a draw not made in time re-targets a later block instead of using a zero hash.
contract JuryCourt is IJuryCourt, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SortitionSumTree for SortitionSumTree.Tree;

    uint16 internal constant BPS = 10_000;
    uint256 internal constant TREE_ARITY = 4;
    /// @notice Most accusers a case holds; resolving a case slashes each, so this bounds its gas.
    uint256 public constant MAX_QUORUM = 32;
    /// @notice Largest jury; resolving a case visits every juror.
    uint256 public constant MAX_JURY = 15;
    /// @notice Draws tried per jury seat before a draw gives up on filling it.
    uint256 public constant DRAW_ATTEMPTS_PER_SEAT = 16;

    /// @notice Court settings; a case copies them when it opens, so a change never reaches a case
    /// already open.
    /// @param voteWindow seconds after the draw in which jurors submit receipts
    /// @param drawDelay blocks between the dispute and the block whose hash seeds the draw
    /// @param jurySize jurors drawn (odd, at most MAX_JURY)
    /// @param jurorRewardBps share of the losing side's slashed stake shared by coherent jurors
    /// @param winnerRewardBps share paid to a disputer whose dispute clears the accused
    /// @param silentJurorBps share of a silent or incoherent juror's stake slashed
    /// @param disputeBond ATP a disputer deposits
    struct Params {
        uint32 voteWindow;
        uint16 drawDelay;
        uint8 jurySize;
        uint16 jurorRewardBps;
        uint16 winnerRewardBps;
        uint16 silentJurorBps;
        uint96 disputeBond;
    }

    enum Stage {
        None,
        Open,
        Disputed,
        Drawn,
        Closed
    }

    enum Outcome {
        Pending,
        Undisputed,
        AccusedCleared,
        AccusedConvicted,
        Void
    }

    /// @dev None until a drawn juror votes (membership is the case's juror list, not this map).
    enum Vote {
        None,
        Accused,
        Quorum,
        Other
    }

    struct Case {
        address accusedDonor;
        uint64 deadline;
        Stage stage;
        Outcome outcome;
        uint8 votesCast;
        address accusedOperator;
        uint96 amount;
        bytes32 jobId;
        bytes32 accusedResult;
        bytes32 quorumResult;
        address disputer;
        uint64 disputeBlock;
        uint16 outvoteBps;
        uint64 voteDeadline;
        address reporter;
        uint16 reporterRewardBps;
        Params terms;
        address[] quorumDonors;
        address[] jurors;
    }

    struct Tally {
        uint256 forAccused;
        uint256 forQuorum;
        uint256 cast;
    }

    DonorRegistry public immutable registry;
    IERC20 public immutable token;
    Params internal _params;
    Params internal _pendingParams;
    uint256 public pendingParamsAt;

    /// @dev One leaf per donor with jury weight; the registry frees a leaf when the weight drops to 0.
    SortitionSumTree.Tree internal _jurors;
    /// @dev At most one case per (job, accused operator): the registry marks the pair before opening.
    mapping(uint256 caseId => Case) internal _cases;
    /// @dev Entries only for the drawn jurors of a case that voted (at most MAX_JURY per case).
    mapping(uint256 caseId => mapping(address donor => Vote)) public votes;
    /// @inheritdoc IJuryCourt
    mapping(address donor => uint256) public openCasesOf;
    uint256 public caseCount;

    event CaseOpened(
        uint256 indexed caseId,
        address indexed accusedOperator,
        bytes32 indexed jobId,
        address accusedDonor,
        uint256 amount,
        uint64 deadline,
        address[] quorumDonors
    );
    event Disputed(uint256 indexed caseId, address indexed disputer, uint256 bond, uint256 drawBlock);
    event DrawRetargeted(uint256 indexed caseId, uint256 drawBlock);
    event JurorsDrawn(uint256 indexed caseId, address[] jurors, uint64 voteDeadline);
    event VoteCast(uint256 indexed caseId, address indexed juror, Vote vote);
    event OutvoteFinalized(uint256 indexed caseId, address indexed accusedDonor, uint256 slashed);
    event DisputeResolved(
        uint256 indexed caseId,
        Outcome outcome,
        uint256 forAccused,
        uint256 forQuorum,
        uint256 cast,
        uint256 slashed,
        uint256 jurorPenalties
    );
    event JurorPaid(uint256 indexed caseId, address indexed juror, uint256 amount);
    event ParamsProposed(Params params, uint256 applicableAt);
    event ParamsUpdated(Params params);

    error OnlyRegistry();
    error InvalidParams();
    error NoPendingParams();
    error ParamsTimelocked(uint256 applicableAt);
    error QuorumTooLarge(uint256 count);
    error DuplicateDonor(address donor);
    error WrongStage(uint256 caseId, Stage stage);
    error DisputeWindowOpen(uint256 deadline);
    error DisputeWindowClosed(uint256 deadline);
    error DrawTooEarly(uint256 drawableAtBlock);
    error VoteWindowClosed(uint256 voteDeadline);
    error VoteWindowOpen(uint256 voteDeadline);
    error WrongJob(bytes32 jobId);
    error InvalidSignature(address executor);
    error NotAJuror(uint256 caseId, address donor);
    error AlreadyVoted(uint256 caseId, address donor);

    /// @param registry_ the DonorRegistry whose outvotes this court decides
    /// @param owner_ may propose parameter changes (two-step ownership)
    /// @param params_ initial parameters (see Params)
    constructor(DonorRegistry registry_, address owner_, Params memory params_) Ownable(owner_) {
        registry = registry_;
        token = registry_.token();
        _validate(params_);
        _params = params_;
        _jurors.init(TREE_ARITY);
        emit ParamsUpdated(params_);
    }

    modifier onlyRegistry() {
        if (msg.sender != address(registry)) revert OnlyRegistry();
        _;
    }

    // ---------------------------------------------------------------- registry hooks

    /// @inheritdoc IJuryCourt
    function openCase(Accusation calldata accusation) external onlyRegistry returns (uint256 caseId) {
        uint256 k = accusation.quorumDonors.length;
        if (k > MAX_QUORUM) revert QuorumTooLarge(k);
        caseId = ++caseCount;
        Case storage c = _cases[caseId];
        uint64 deadline = accusation.deadline;
        c.accusedDonor = accusation.accusedDonor;
        c.deadline = deadline;
        c.stage = Stage.Open;
        c.accusedOperator = accusation.accusedOperator;
        c.amount = accusation.amount;
        c.jobId = accusation.jobId;
        c.accusedResult = accusation.accusedResult;
        c.quorumResult = accusation.quorumResult;
        c.outvoteBps = accusation.outvoteBps;
        c.reporter = accusation.reporter;
        c.reporterRewardBps = accusation.reporterRewardBps;
        c.terms = _params;
        ++openCasesOf[accusation.accusedDonor];
        for (uint256 i = 0; i < k; ++i) {
            address donor = accusation.quorumDonors[i];
            if (donor == accusation.accusedDonor) revert DuplicateDonor(donor);
            for (uint256 j = 0; j < i; ++j)
                if (accusation.quorumDonors[j] == donor) revert DuplicateDonor(donor);
            c.quorumDonors.push(donor);
            ++openCasesOf[donor];
        }
        emit CaseOpened(
            caseId,
            accusation.accusedOperator,
            accusation.jobId,
            accusation.accusedDonor,
            accusation.amount,
            deadline,
            accusation.quorumDonors
        );
    }

    /// @inheritdoc IJuryCourt
    function onWeightChanged(address donor, uint256 weight) external onlyRegistry {
        _jurors.set(_idOf(donor), weight);
    }

    /// @notice Copies a donor's jury weight from the registry; anyone may call (repairs a weight the
    /// registry could not push, e.g. for donors registered before this court was set).
    /// @param donor the staking wallet
    function syncWeight(address donor) external {
        _jurors.set(_idOf(donor), registry.juryWeightOf(donor));
    }

    // ---------------------------------------------------------------- case life

    /// @notice Slashes the accused of an undisputed case once its dispute window has passed.
    /// The reporter gets the registry's outvoteRewardBps of it as it stood when the case opened
    /// (0 by default), the treasury the rest. Anyone may call.
    /// @param caseId the case
    function finalizeOutvote(uint256 caseId) external nonReentrant {
        Case storage c = _caseAt(caseId, Stage.Open);
        if (block.timestamp <= c.deadline) revert DisputeWindowOpen(c.deadline);
        _close(c, Outcome.Undisputed);
        uint256 slashed = registry.courtSlash(c.accusedDonor, c.amount, BPS);
        uint256 reward = (slashed * c.reporterRewardBps) / BPS;
        emit OutvoteFinalized(caseId, c.accusedDonor, slashed);
        _pay(c.reporter, reward);
        _pay(_treasury(), slashed - reward);
    }

    /// @notice Disputes a case before its deadline, depositing the dispute bond (needs an allowance).
    /// Anyone may dispute; typically the accused. The jury is drawn from a block not yet known.
    /// @param caseId the case
    function dispute(uint256 caseId) external nonReentrant {
        Case storage c = _caseAt(caseId, Stage.Open);
        if (block.timestamp > c.deadline) revert DisputeWindowClosed(c.deadline);
        c.stage = Stage.Disputed;
        c.disputer = msg.sender;
        c.disputeBlock = uint64(block.number);
        uint256 bond = c.terms.disputeBond;
        emit Disputed(caseId, msg.sender, bond, block.number + c.terms.drawDelay + 1);
        token.safeTransferFrom(msg.sender, address(this), bond);
    }

    /// @notice Draws the jury once block disputeBlock + drawDelay is mined, seeded by its hash:
    /// up to jurySize distinct donors, each drawn with probability proportional to its bonded stake
    /// among the active donors that are neither the accused nor an accuser. When that block is
    /// older than 256 blocks its hash is gone, and the draw re-targets a block drawDelay ahead.
    /// When nobody can be drawn the dispute is void: the bond goes back and nobody is slashed.
    /// @param caseId the case
    function drawJury(uint256 caseId) external nonReentrant {
        Case storage c = _caseAt(caseId, Stage.Disputed);
        uint256 target = uint256(c.disputeBlock) + c.terms.drawDelay;
        if (block.number <= target) revert DrawTooEarly(target + 1);
        bytes32 hash = blockhash(target);
        if (hash == bytes32(0)) {
            c.disputeBlock = uint64(block.number);
            emit DrawRetargeted(caseId, block.number + c.terms.drawDelay + 1);
            return;
        }
        address[] memory jurors = _drawJurors(c, keccak256(abi.encode(hash, caseId)));
        if (jurors.length == 0) {
            _void(caseId, c);
            return;
        }
        c.stage = Stage.Drawn;
        c.voteDeadline = uint64(block.timestamp) + c.terms.voteWindow;
        for (uint256 i = 0; i < jurors.length; ++i) {
            c.jurors.push(jurors[i]);
            ++openCasesOf[jurors[i]];
        }
        emit JurorsDrawn(caseId, jurors, c.voteDeadline);
    }

    /// @notice Records a drawn juror's vote: its receipt for the case's job, signed by its
    /// operator key. Anyone may submit it (e.g. a relay); the signature decides whose vote it is.
    /// @param caseId the case
    /// @param receipt the juror's receipt from re-executing the job
    /// @param signature the receipt's EIP-712 signature by `receipt.executor`
    function vote(uint256 caseId, CellTypes.Receipt calldata receipt, bytes calldata signature) external {
        Case storage c = _caseAt(caseId, Stage.Drawn);
        if (block.timestamp > c.voteDeadline) revert VoteWindowClosed(c.voteDeadline);
        if (receipt.jobId != c.jobId) revert WrongJob(receipt.jobId);
        if (!registry.verifyReceipt(receipt, signature)) revert InvalidSignature(receipt.executor);
        address juror = registry.donorOf(receipt.executor);
        if (!_isJuror(c, juror)) revert NotAJuror(caseId, juror);
        if (votes[caseId][juror] != Vote.None) revert AlreadyVoted(caseId, juror);
        bytes32 result = CellTypes.resultOf(receipt);
        Vote cast =
            result == c.accusedResult
                ? Vote.Accused
                : result == c.quorumResult
                    ? Vote.Quorum
                    : Vote.Other;
        votes[caseId][juror] = cast;
        ++c.votesCast;
        emit VoteCast(caseId, juror, cast);
    }

    /// @notice Decides a drawn case after its vote window, or as soon as every juror has voted.
    /// A strict majority of submitted receipts agreeing with the accused clears it: the accusers
    /// are slashed `outvoteBps` of their stake, the disputer gets the bond back plus
    /// `winnerRewardBps` of that. Otherwise the accused is slashed the case amount and the bond is
    /// forfeited to the jurors. Coherent jurors (voting the decided result) share
    /// `jurorRewardBps` of the losers' slash (and a forfeited bond); the other jurors lose
    /// `silentJurorBps` of their stake to the treasury, which also receives the rest.
    /// @param caseId the case
    function resolveDispute(uint256 caseId) external nonReentrant {
        Case storage c = _caseAt(caseId, Stage.Drawn);
        if (block.timestamp <= c.voteDeadline && c.votesCast < c.jurors.length)
            revert VoteWindowOpen(c.voteDeadline);
        Tally memory tally = _tally(caseId, c);
        bool cleared = tally.forAccused * 2 > tally.cast;
        _close(c, cleared ? Outcome.AccusedCleared : Outcome.AccusedConvicted);
        uint256 slashed = cleared ? _slashAccusers(c) : registry.courtSlash(c.accusedDonor, c.amount, BPS);
        Vote coherent = cleared ? Vote.Accused : Vote.Quorum;
        (uint256 penalties, uint256 coherentCount) = _penalizeJurors(caseId, c, coherent);
        emit DisputeResolved(
            caseId,
            c.outcome,
            tally.forAccused,
            tally.forQuorum,
            tally.cast,
            slashed,
            penalties
        );
        _payOut(caseId, c, cleared, slashed, penalties, coherentCount);
    }

    // ---------------------------------------------------------------- views

    /// @notice A case as stored (terms, parties, jurors, stage, outcome).
    /// @param caseId the case
    function caseOf(uint256 caseId) external view returns (Case memory) {
        return _cases[caseId];
    }

    /// @notice Current parameters.
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @notice Parameters waiting behind the timelock (see pendingParamsAt; 0 when none).
    function pendingParams() external view returns (Params memory) {
        return _pendingParams;
    }

    /// @notice A donor's weight in jury draws (its bonded stake while active, else 0).
    /// @param donor the staking wallet
    function jurorWeightOf(address donor) external view returns (uint256) {
        return _jurors.weightOf(_idOf(donor));
    }

    /// @notice Sum of all jury weights.
    function totalJurorWeight() external view returns (uint256) {
        return _jurors.total();
    }

    // ---------------------------------------------------------------- owner

    /// @notice Proposes new parameters; they can apply after the registry's paramsTimelock. Only the
    /// owner. Bounds: a vote window between 1 minute and 30 days, drawDelay 1..128 blocks, jurySize odd and at most
    /// MAX_JURY, jurorRewardBps + winnerRewardBps <= 9000, silentJurorBps <= 1000, a bond above 0.
    /// @param params_ the new parameters
    function proposeParams(Params calldata params_) external onlyOwner {
        _validate(params_);
        _pendingParams = params_;
        pendingParamsAt = block.timestamp + registry.params().paramsTimelock;
        emit ParamsProposed(params_, pendingParamsAt);
    }

    /// @notice Applies the proposed parameters once their delay has passed. Anyone may call.
    /// Cases already open keep the terms they opened with.
    function applyParams() external {
        uint256 at = pendingParamsAt;
        if (at == 0) revert NoPendingParams();
        if (block.timestamp < at) revert ParamsTimelocked(at);
        _params = _pendingParams;
        delete _pendingParams;
        pendingParamsAt = 0;
        emit ParamsUpdated(_params);
    }

    /// @notice Drops a proposed change. Only the owner.
    function cancelParams() external onlyOwner {
        if (pendingParamsAt == 0) revert NoPendingParams();
        delete _pendingParams;
        pendingParamsAt = 0;
    }

    // ---------------------------------------------------------------- internals

    function _caseAt(uint256 caseId, Stage stage) private view returns (Case storage c) {
        c = _cases[caseId];
        if (c.stage != stage) revert WrongStage(caseId, c.stage);
    }

    /// Draws by rejection: a draw that lands on a party or on a donor already drawn is redrawn
    /// with the next nonce, which yields exactly the stake-weighted draw without replacement among
    /// the eligible donors, and reads the tree without writing it. After
    /// DRAW_ATTEMPTS_PER_SEAT * jurySize draws the jury is what has been found so far (this only
    /// happens when the parties hold nearly all the stake).
    function _drawJurors(Case storage c, bytes32 seed) private view returns (address[] memory jurors) {
        uint256 size = c.terms.jurySize;
        jurors = new address[](size);
        uint256 drawn = 0;
        if (_jurors.total() != 0) {
            uint256 attempts = size * DRAW_ATTEMPTS_PER_SEAT;
            for (uint256 attempt = 0; attempt < attempts && drawn < size; ++attempt) {
                bytes32 id = _jurors.draw(uint256(keccak256(abi.encode(seed, attempt))));
                address donor = address(uint160(uint256(id)));
                if (_isParty(c, donor) || _isAmong(jurors, drawn, donor)) continue;
                jurors[drawn++] = donor;
            }
        }
        assembly ("memory-safe") {
            mstore(jurors, drawn)
        }
    }

    function _isParty(Case storage c, address donor) private view returns (bool) {
        if (donor == c.accusedDonor) return true;
        uint256 k = c.quorumDonors.length;
        for (uint256 i = 0; i < k; ++i) if (c.quorumDonors[i] == donor) return true;
        return false;
    }

    function _isJuror(Case storage c, address donor) private view returns (bool) {
        uint256 n = c.jurors.length;
        for (uint256 i = 0; i < n; ++i) if (c.jurors[i] == donor) return true;
        return false;
    }

    function _isAmong(address[] memory list, uint256 count, address donor) private pure returns (bool) {
        for (uint256 i = 0; i < count; ++i) if (list[i] == donor) return true;
        return false;
    }

    function _tally(uint256 caseId, Case storage c) private view returns (Tally memory tally) {
        uint256 n = c.jurors.length;
        for (uint256 i = 0; i < n; ++i) {
            Vote v = votes[caseId][c.jurors[i]];
            if (v == Vote.None) continue;
            ++tally.cast;
            if (v == Vote.Accused) ++tally.forAccused;
            else if (v == Vote.Quorum) ++tally.forQuorum;
        }
    }

    function _slashAccusers(Case storage c) private returns (uint256 slashed) {
        uint256 k = c.quorumDonors.length;
        for (uint256 i = 0; i < k; ++i) {
            slashed += registry.courtSlash(c.quorumDonors[i], type(uint256).max, c.outvoteBps);
        }
    }

    function _penalizeJurors(
        uint256 caseId,
        Case storage c,
        Vote coherent
    ) private returns (uint256 penalties, uint256 coherentCount) {
        uint256 n = c.jurors.length;
        uint16 bps = c.terms.silentJurorBps;
        for (uint256 i = 0; i < n; ++i) {
            address juror = c.jurors[i];
            if (votes[caseId][juror] == coherent) ++coherentCount;
            else if (bps != 0) penalties += registry.courtSlash(juror, type(uint256).max, bps);
        }
    }

    /// Pays a forfeited bond and jurorRewardBps of the slash to coherent jurors, equally; a
    /// cleared disputer its bond and winnerRewardBps of the slash; the treasury everything else.
    function _payOut(
        uint256 caseId,
        Case storage c,
        bool cleared,
        uint256 slashed,
        uint256 penalties,
        uint256 coherentCount
    ) private {
        uint256 bond = c.terms.disputeBond;
        uint256 jurorPot = (slashed * c.terms.jurorRewardBps) / BPS + (cleared ? 0 : bond);
        uint256 share = coherentCount == 0 ? 0 : jurorPot / coherentCount;
        uint256 toDisputer = cleared ? bond + (slashed * c.terms.winnerRewardBps) / BPS : 0;
        uint256 toTreasury = slashed + penalties + bond - toDisputer - share * coherentCount;
        if (share != 0) _payJurors(caseId, c, cleared ? Vote.Accused : Vote.Quorum, share);
        _pay(c.disputer, toDisputer);
        _pay(_treasury(), toTreasury);
    }

    function _payJurors(uint256 caseId, Case storage c, Vote coherent, uint256 share) private {
        uint256 n = c.jurors.length;
        for (uint256 i = 0; i < n; ++i) {
            address juror = c.jurors[i];
            if (votes[caseId][juror] != coherent) continue;
            emit JurorPaid(caseId, juror, share);
            token.safeTransfer(juror, share);
        }
    }

    function _void(uint256 caseId, Case storage c) private {
        _close(c, Outcome.Void);
        emit DisputeResolved(caseId, Outcome.Void, 0, 0, 0, 0, 0);
        _pay(c.disputer, c.terms.disputeBond);
    }

    /// Marks the case closed and releases every party's withdrawal freeze.
    function _close(Case storage c, Outcome outcome) private {
        c.stage = Stage.Closed;
        c.outcome = outcome;
        --openCasesOf[c.accusedDonor];
        uint256 k = c.quorumDonors.length;
        for (uint256 i = 0; i < k; ++i) --openCasesOf[c.quorumDonors[i]];
        uint256 n = c.jurors.length;
        for (uint256 i = 0; i < n; ++i) --openCasesOf[c.jurors[i]];
    }

    function _pay(address to, uint256 amount) private {
        if (amount != 0) token.safeTransfer(to, amount);
    }

    function _treasury() private view returns (address) {
        return registry.params().treasury;
    }

    function _idOf(address donor) private pure returns (bytes32) {
        return bytes32(uint256(uint160(donor)));
    }

    function _validate(Params memory p) private pure {
        bool bad =
            p.voteWindow < 1 minutes ||
                p.voteWindow > 30 days ||
                p.drawDelay == 0 ||
                p.drawDelay > 128 ||
                p.jurySize % 2 == 0 ||
                p.jurySize > MAX_JURY ||
                uint256(p.jurorRewardBps) + p.winnerRewardBps > 9_000 ||
                p.silentJurorBps > 1_000 ||
                p.disputeBond == 0;
        if (bad) revert InvalidParams();
    }
}
