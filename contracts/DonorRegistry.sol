// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJuryCourt} from "./interfaces/IJuryCourt.sol";
import {CellTypes} from "./libraries/CellTypes.sol";

/// @title DonorRegistry
/// @notice Donors stake ATP, register the operator key their node signs with (proving they hold
/// it) and their libp2p peer key, rotate both from the staking wallet, and can be slashed with
/// signed receipts: once for equivocation (two different results for one job), which also jails
/// the operator, or for being outvoted by a quorum of other donors bonded since before the job.
/// Parameters change only through `Ownable2Step`, a timelock and hard bounds. It is also the
/// EIP-712 domain ("Cell", "1") against which receipts, bids and job specs are verified.
/// @dev Per donor the amounts, the unbonding time and the bonded-since time share one storage slot.
contract DonorRegistry is EIP712, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using CellTypes for CellTypes.Receipt;

    uint16 internal constant BPS = 10_000;
    /// @notice Hard bound: no slash takes more than half of a donor's stake.
    uint16 public constant MAX_SLASH_BPS = 5_000;
    /// @notice Hard bounds of the rotation, jail and timelock delays and of the dispute window.
    uint32 public constant MIN_DELAY = 60;
    uint32 public constant MAX_DELAY = 30 days;
    /// @notice Hard bound of the unbonding delay.
    uint32 public constant MAX_UNBONDING_DELAY = 90 days;
    bytes32 public constant RECEIPT_TYPEHASH = CellTypes.RECEIPT_TYPEHASH;
    bytes32 public constant JOB_SPEC_TYPEHASH = CellTypes.JOB_SPEC_TYPEHASH;
    bytes32 public constant BID_TYPEHASH = CellTypes.BID_TYPEHASH;
    bytes32 public constant OPERATOR_REGISTRATION_TYPEHASH = CellTypes.OPERATOR_REGISTRATION_TYPEHASH;

    /// @dev Timestamps are 32-bit (good until 2106) so that the four fields fit one slot.
    /// `bondedSince` is the time from which `bonded` has stayed at least `minStake` without a
    /// break, 0 while it is below. Why not a checkpointed history (OpenZeppelin `Checkpoints`)?
    /// An outvote needs "bonded >= minStake at every moment since before the job", a minimum
    /// over an interval, which a history answers only by scanning it; and it costs a new slot
    /// (about 22,000 gas) on every stake change. One timestamp in the slot every stake change
    /// already writes answers the same question exactly, for free. It is measured against the
    /// `minStake` in force at each stake change; an outvote also requires `minStake` now.
    struct Stake {
        uint96 bonded;
        uint96 unbonding;
        uint32 unbondableAt;
        uint32 bondedSince;
    }

    /// @param operator the donor's current operator key
    /// @param nonce proofs of possession made so far (the next one signs this value)
    /// @param peerKey 32-byte Ed25519 public key of the node's libp2p identity
    /// @param metadataURI where the node describes itself
    struct Registration {
        address operator;
        uint64 nonce;
        bytes32 peerKey;
        string metadataURI;
    }

    /// @notice What the registry knows of an operator key (one slot). A key belongs to one donor
    /// forever and is never registered again, not even by that donor.
    /// @param donor the staking wallet that registered it
    /// @param accountableUntil 0 while it is its donor's current operator; once rotated away
    /// from, evidence against it is accepted until this time and refused from then on
    /// @param jailedUntil 0 unless jailed; a jailed operator is inactive and no evidence against
    /// it is accepted any more; its wallet may rotate to a new key from this time on
    struct Operator {
        address donor;
        uint32 accountableUntil;
        uint32 jailedUntil;
    }

    /// @notice Settings the owner may change, behind `paramsTimelock` and the hard bounds.
    /// @param minStake bonded amount an operator needs to be active (> 0)
    /// @param unbondingDelay seconds between an unbond request and the withdrawal
    /// (>= rotationDelay + disputeWindow, <= MAX_UNBONDING_DELAY)
    /// @param disputeWindow seconds a pending outvote slash may be disputed (<= MAX_DELAY)
    /// @param rotationDelay seconds an operator stays accountable after its wallet rotated away from it
    /// @param jailDelay seconds after a jailing before the wallet may rotate to a new key
    /// @param paramsTimelock seconds between proposeParams and applyParams
    /// @param equivocationSlashBps share of a donor's stake slashed for equivocation (<= MAX_SLASH_BPS)
    /// @param outvotedSlashBps share slashed for being outvoted by a quorum (<= MAX_SLASH_BPS)
    /// @param reporterRewardBps share of an equivocation slash paid to the reporter
    /// @param outvoteRewardBps share of an outvote slash paid to the reporter (0 by default:
    /// a reward would pay Sybil quorums to accuse)
    /// @param minOutvoteQuorum fewest agreeing receipts of other donors an outvote slash needs (> 0)
    /// @param treasury receiver of the slashed stake that is not the reporter's reward
    struct Params {
        uint96 minStake;
        uint32 unbondingDelay;
        uint32 disputeWindow;
        uint32 rotationDelay;
        uint32 jailDelay;
        uint32 paramsTimelock;
        uint16 equivocationSlashBps;
        uint16 outvotedSlashBps;
        uint16 reporterRewardBps;
        uint16 outvoteRewardBps;
        uint8 minOutvoteQuorum;
        address treasury;
    }

    enum SlashReason {
        Equivocation,
        Outvoted
    }

    /// @dev One slash: whose stake, which key and job, why, the shares, who reported it.
    struct Slash {
        address donor;
        address operator;
        bytes32 jobId;
        SlashReason reason;
        uint16 bps;
        uint16 rewardBps;
        address reporter;
    }

    IERC20 public immutable token;
    Params internal _params;
    Params internal _pendingParams;
    /// @notice When the pending parameters may be applied; 0 when none are pending.
    uint256 public pendingParamsAt;

    mapping(address donor => Stake) internal _stakes;
    mapping(address donor => Registration) internal _registrations;
    mapping(address operator => Operator) internal _operators;
    /// @notice keccak256(jobId, operator) => already slashed for that job
    mapping(bytes32 key => bool) public slashed;
    /// @notice The court that decides outvote slashes (set once, see setCourt).
    IJuryCourt public court;

    event Staked(address indexed donor, uint256 amount, uint256 bonded);
    event Registered(address indexed donor, address indexed operator, bytes32 peerKey, string metadataURI);
    event OperatorRotated(
        address indexed donor,
        address indexed oldOperator,
        address indexed newOperator,
        bytes32 peerKey,
        uint256 oldAccountableUntil
    );
    event Jailed(address indexed operator, address indexed donor, uint256 rotatableAt);
    event MetadataUpdated(address indexed donor, string metadataURI);
    event UnbondRequested(address indexed donor, uint256 amount, uint256 unbondableAt);
    event Withdrawn(address indexed donor, uint256 amount);
    event Slashed(
        address indexed operator,
        bytes32 indexed jobId,
        SlashReason reason,
        address indexed reporter,
        address donor,
        uint256 amount,
        uint256 reward
    );
    event ParamsProposed(Params params, uint256 applicableAt);
    event ParamsUpdated(Params params);
    event CourtSet(address court);
    event OutvoteAccused(address indexed operator, bytes32 indexed jobId, uint256 caseId, uint256 amount);
    event CourtSlashed(address indexed donor, uint256 amount);

    error ZeroAmount();
    error BelowMinimumStake(uint256 bonded, uint256 minimum);
    error AlreadyRegistered(address donor);
    error OperatorTaken(address operator);
    error InvalidOperator();
    error InvalidPeerKey();
    error InvalidProofOfPossession(address operator);
    error NotRegistered(address donor);
    error StillJailed(address operator, uint256 rotatableAt);
    error InsufficientBonded(uint256 requested, uint256 bonded);
    error NothingToWithdraw();
    error StillUnbonding(uint256 unbondableAt);
    error InvalidParams(bytes32 field);
    error NoPendingParams();
    error TimelockNotExpired(uint256 applicableAt);
    error InvalidSignature(address expected);
    error DifferentJobs();
    error DifferentExecutors();
    error NotEquivocation();
    error UnknownOperator(address operator);
    error OperatorJailed(address operator);
    error OperatorRetired(address operator, uint256 accountableUntil);
    error OperatorNotActive(address operator);
    error DuplicateDonor(address donor);
    error NotBondedBeforeJob(address operator, uint256 bondedSince, uint256 startedAt);
    error ResultsDisagree(uint256 index);
    error AccusedAgrees();
    error SignatureCountMismatch(uint256 receipts, uint256 signatures);
    error QuorumTooSmall(uint256 count, uint256 required);
    error QuorumTooLarge(uint256 count, uint256 maximum);
    error JobSpecMismatch(bytes32 jobId);
    error AlreadySlashed(bytes32 jobId, address operator);
    error NothingToSlash(address operator);
    error CourtAlreadySet();
    error NoCourt();
    error OnlyCourt();
    error FrozenByCase(address donor);

    /// @param token_ the ATP token staked here
    /// @param owner_ may propose and apply parameters
    /// @param params_ initial parameters (see Params; the hard bounds apply)
    constructor(IERC20 token_, address owner_, Params memory params_) EIP712("Cell", "1") Ownable(owner_) {
        token = token_;
        _checkParams(params_);
        _params = params_;
        emit ParamsUpdated(params_);
    }

    // ---------------------------------------------------------------- staking

    /// @notice Stakes `amount` more ATP for the caller (first stake or top up); needs an allowance.
    /// @param amount ATP to move from the caller into the bond
    function stake(uint256 amount) external nonReentrant {
        _stake(msg.sender, amount);
    }

    /// @notice Stakes with an EIP-2612 permit instead of a prior approval. A permit that was
    /// already used (for example front-run) is ignored when the allowance suffices.
    /// @param amount ATP to stake
    /// @param deadline permit deadline
    /// @param v permit signature v
    /// @param r permit signature r
    /// @param s permit signature s
    function stakeWithPermit(
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        _permit(amount, deadline, v, r, s);
        _stake(msg.sender, amount);
    }

    /// @notice Registers the caller's operator key, Ed25519 peer key and metadata URI. Needs at
    /// least the minimum bonded stake and the operator key's EIP-712 signature over
    /// OperatorRegistration(donor = caller, operator, peerKey, nonce = 0), so nobody can claim
    /// an operator key it does not hold. Done once per donor; later keys come by `rotateOperator`.
    /// @param operator secp256k1 address whose key signs the node's statements
    /// @param peerKey 32-byte Ed25519 public key of the node's libp2p identity
    /// @param metadataURI where the node describes itself (endpoints, capabilities)
    /// @param proof the operator key's signature (65 or 64 bytes)
    function register(
        address operator,
        bytes32 peerKey,
        string calldata metadataURI,
        bytes calldata proof
    ) external {
        Registration storage reg = _registrations[msg.sender];
        if (reg.operator != address(0)) revert AlreadyRegistered(msg.sender);
        uint256 bonded = _stakes[msg.sender].bonded;
        if (bonded < _params.minStake) revert BelowMinimumStake(bonded, _params.minStake);
        _bindOperator(reg, operator, peerKey, proof);
        reg.metadataURI = metadataURI;
        emit Registered(msg.sender, operator, peerKey, metadataURI);
        _syncJuryWeight(msg.sender);
    }

    /// @notice Replaces the caller's operator and peer key, with the new operator key's proof of
    /// possession at the caller's current nonce. The old operator is never active again, and
    /// evidence against it is accepted for `rotationDelay` more seconds (block time), so rotating
    /// does not escape a slash in flight and a leaked key is not accountable forever. A jailed
    /// operator may be rotated away from only once its jail delay has passed.
    /// @param operator the new operator key's address (never registered before)
    /// @param peerKey the new Ed25519 peer key
    /// @param proof the new operator key's signature over OperatorRegistration
    function rotateOperator(address operator, bytes32 peerKey, bytes calldata proof) external {
        Registration storage reg = _registrations[msg.sender];
        address old = reg.operator;
        if (old == address(0)) revert NotRegistered(msg.sender);
        Operator storage retired = _operators[old];
        uint256 jailedUntil = retired.jailedUntil;
        if (block.timestamp < jailedUntil) revert StillJailed(old, jailedUntil);
        _bindOperator(reg, operator, peerKey, proof);
        uint32 accountableUntil = uint32(block.timestamp) + _params.rotationDelay;
        retired.accountableUntil = accountableUntil;
        emit OperatorRotated(msg.sender, old, operator, peerKey, accountableUntil);
        _syncJuryWeight(msg.sender);
    }

    /// @notice Replaces the caller's metadata URI.
    /// @param metadataURI the new URI
    function setMetadataURI(string calldata metadataURI) external {
        Registration storage reg = _registrations[msg.sender];
        if (reg.operator == address(0)) revert NotRegistered(msg.sender);
        reg.metadataURI = metadataURI;
        emit MetadataUpdated(msg.sender, metadataURI);
    }

    /// @notice Moves `amount` from bonded to unbonding; the whole unbonding amount becomes
    /// withdrawable `unbondingDelay` seconds after the latest request, and never earlier than a
    /// pending request already allowed (a shorter delay set since does not apply to it).
    /// Unbonding stake stays slashable.
    /// @dev The race where matured stake is withdrawn ahead of a slash is closed for evidence
    /// submitted within `rotationDelay` of the moment the donor stopped being bonded: the bounds
    /// keep `unbondingDelay >= rotationDelay + disputeWindow`, so such evidence, and a dispute
    /// window after it, end before the stake can leave. Later evidence may find the stake
    /// withdrawn (`NothingToSlash` or a smaller slash): `rotationDelay` is the accountability
    /// horizon of every key, rotated or unbonded (see docs/contracts.md).
    /// @param amount ATP to unbond
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Stake storage st = _stakes[msg.sender];
        uint96 bonded = st.bonded;
        if (amount > bonded) revert InsufficientBonded(amount, bonded);
        uint32 unbondableAt = uint32(block.timestamp) + _params.unbondingDelay;
        if (unbondableAt < st.unbondableAt) unbondableAt = st.unbondableAt;
        bonded -= uint96(amount);
        st.bonded = bonded;
        st.unbonding += uint96(amount);
        st.unbondableAt = unbondableAt;
        if (bonded < _params.minStake) st.bondedSince = 0;
        emit UnbondRequested(msg.sender, amount, unbondableAt);
        _syncJuryWeight(msg.sender);
    }

    /// @notice Pays the caller's unbonding stake once its delay has passed.
    function withdraw() external nonReentrant {
        Stake storage st = _stakes[msg.sender];
        uint256 amount = st.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < st.unbondableAt) revert StillUnbonding(st.unbondableAt);
        if (_inOpenCase(msg.sender)) revert FrozenByCase(msg.sender);
        st.unbonding = 0;
        st.unbondableAt = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice A donor's stake: bonded, unbonding and when the unbonding amount may be withdrawn.
    /// @param donor the staking wallet
    function stakes(
        address donor
    ) external view returns (uint96 bonded, uint96 unbonding, uint64 unbondableAt) {
        Stake storage st = _stakes[donor];
        return (st.bonded, st.unbonding, st.unbondableAt);
    }

    /// @notice Since when `donor` has been bonded at least `minStake` without a break; 0 when it
    /// is not bonded at least the current `minStake` now.
    /// @param donor the staking wallet
    function bondedSince(address donor) public view returns (uint256) {
        Stake storage st = _stakes[donor];
        return st.bonded >= _params.minStake ? st.bondedSince : 0;
    }

    /// @notice True when `operator` is its donor's current, unjailed operator and the donor's
    /// bonded stake meets the minimum.
    /// @param operator the operator address to check
    function isActive(address operator) public view returns (bool) {
        Operator memory op = _operators[operator];
        return
            op.donor != address(0) &&
            op.accountableUntil == 0 &&
            op.jailedUntil == 0 &&
            _stakes[op.donor].bonded >= _params.minStake;
    }

    /// @notice The donor that registered `operator` (current or rotated away from); zero when none.
    /// @param operator the operator address
    function donorOf(address operator) external view returns (address) {
        return _operators[operator].donor;
    }

    /// @notice Donor, accountability end and jail end of an operator key (see Operator).
    /// @param operator the operator address
    function operatorOf(address operator) external view returns (Operator memory) {
        return _operators[operator];
    }

    /// @notice Registration of a donor: operator, nonce, peer key, metadata URI.
    /// @param donor the staking wallet
    function registrationOf(address donor) external view returns (Registration memory) {
        return _registrations[donor];
    }

    /// @notice Current parameters.
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @notice Parameters proposed and not applied yet (meaningful while pendingParamsAt != 0).
    function pendingParams() external view returns (Params memory) {
        return _pendingParams;
    }

    /// @notice EIP-712 digest an operator key signs to prove possession for `donor`.
    /// @param donor the staking wallet that will register or rotate to the key
    /// @param operator the operator address
    /// @param peerKey the peer key registered with it
    /// @param nonce the donor's registration nonce (registrationOf(donor).nonce)
    function operatorRegistrationDigest(
        address donor,
        address operator,
        bytes32 peerKey,
        uint256 nonce
    ) public view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.operatorRegistrationHash(donor, operator, peerKey, nonce));
    }

    /// @notice EIP-712 digest of a receipt under this contract's domain.
    /// @param receipt the receipt
    function receiptDigest(CellTypes.Receipt calldata receipt) public view returns (bytes32) {
        return _hashTypedDataV4(receipt.hash());
    }

    /// @notice EIP-712 digest of a job spec under this contract's domain.
    /// @param spec the job spec
    function jobSpecDigest(CellTypes.JobSpec calldata spec) external view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.hash(spec));
    }

    /// @notice EIP-712 digest of a bid under this contract's domain.
    /// @param bid the bid
    function bidDigest(CellTypes.Bid calldata bid) external view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.hash(bid));
    }

    /// @notice True when `signature` over `receipt` was made by `receipt.executor`.
    /// @param receipt the receipt
    /// @param signature 65-byte or 64-byte (EIP-2098) signature
    function verifyReceipt(
        CellTypes.Receipt calldata receipt,
        bytes calldata signature
    ) public view returns (bool) {
        address signer = CellTypes.signerOf(receiptDigest(receipt), signature);
        return signer != address(0) && signer == receipt.executor;
    }

    // ---------------------------------------------------------------- slashing

    /// @notice Slashes an operator that signed two receipts for one job that differ in status,
    /// output CID or fuel used, and jails it: it is inactive from now on, and further evidence
    /// against it reverts `OperatorJailed`, so a leaked key costs one slash, not the stake.
    /// Anyone holding both signatures may call; the caller gets `reporterRewardBps` of the slash.
    /// @param a first receipt
    /// @param sigA signature of `a` by its executor
    /// @param b second receipt
    /// @param sigB signature of `b` by its executor
    function slashEquivocation(
        CellTypes.Receipt calldata a,
        bytes calldata sigA,
        CellTypes.Receipt calldata b,
        bytes calldata sigB
    ) external nonReentrant {
        if (a.jobId != b.jobId) revert DifferentJobs();
        if (a.executor != b.executor) revert DifferentExecutors();
        if (CellTypes.sameResult(a, b)) revert NotEquivocation();
        _requireSigned(a, sigA);
        _requireSigned(b, sigB);
        Params storage p = _params;
        _slash(
            a.executor,
            a.jobId,
            SlashReason.Equivocation,
            p.equivocationSlashBps,
            p.reporterRewardBps,
            true
        );
    }

    /// @notice Accuses an operator whose signed receipt disagrees with a quorum of receipts of
    /// other donors for the same job (see `checkOutvote` for what the evidence must show). The
    /// slash is not taken here: the evidence opens a case in the court (`court.openCase`), which
    /// slashes after `disputeWindow` or lets a jury decide. The caller gets `outvoteRewardBps` of
    /// an undisputed slash (0 by default).
    /// @param spec the job's spec (its digest must be the receipts' jobId)
    /// @param accused the accused operator's receipt
    /// @param accusedSig its signature
    /// @param quorum receipts of other donors' operators agreeing on one result
    /// @param quorumSigs their signatures, in the same order
    function slashOutvoted(
        CellTypes.JobSpec calldata spec,
        CellTypes.Receipt calldata accused,
        bytes calldata accusedSig,
        CellTypes.Receipt[] calldata quorum,
        bytes[] calldata quorumSigs
    ) external nonReentrant {
        checkOutvote(spec, accused, accusedSig, quorum, quorumSigs);
        _accuse(accused, quorum);
    }

    /// @notice Reverts unless the evidence shows `accused` outvoted. A job id is the EIP-712
    /// digest of its spec under this domain, so the spec proves the replica count n. The quorum
    /// holds k receipts with outvoteQuorum(n) <= k <= n - 1 (the accused ran one of the n
    /// replicas), all for the job, all agreeing on one result that differs from the accused's,
    /// each signed by an operator that is still accountable (not jailed, not rotated away from
    /// for longer than rotationDelay) of a distinct donor other than the accused's, and every
    /// such donor has been bonded at least minStake without a break since before the accused's
    /// `startedAt` (Unix milliseconds) and is now, so identities staked after the job cannot outvote it.
    /// @param spec the job's spec
    /// @param accused the accused operator's receipt
    /// @param accusedSig its signature
    /// @param quorum the agreeing receipts
    /// @param quorumSigs their signatures, in the same order
    function checkOutvote(
        CellTypes.JobSpec calldata spec,
        CellTypes.Receipt calldata accused,
        bytes calldata accusedSig,
        CellTypes.Receipt[] calldata quorum,
        bytes[] calldata quorumSigs
    ) public view {
        if (_hashTypedDataV4(CellTypes.hash(spec)) != accused.jobId) revert JobSpecMismatch(accused.jobId);
        uint256 k = quorum.length;
        if (quorumSigs.length != k) revert SignatureCountMismatch(k, quorumSigs.length);
        uint256 required = outvoteQuorum(spec.replicas);
        if (k < required) revert QuorumTooSmall(k, required);
        uint256 maximum = spec.replicas == 0 ? 0 : uint256(spec.replicas) - 1;
        if (k > maximum) revert QuorumTooLarge(k, maximum);
        address accusedDonor = _accountableDonor(accused.executor);
        _requireSigned(accused, accusedSig);
        if (CellTypes.sameResult(accused, quorum[0])) revert AccusedAgrees();
        address[] memory donors = new address[](k);
        for (uint256 i = 0; i < k; ++i) {
            donors[i] = _checkQuorumReceipt(accused, accusedDonor, quorum, i, donors);
            _requireSigned(quorum[i], quorumSigs[i]);
        }
    }

    /// @notice Agreeing receipts an outvote slash needs for a job with `replicas` executions:
    /// max(2f + 1, minOutvoteQuorum) with f = floor((replicas - 1) / 3).
    /// @param replicas the job spec's replica count n
    function outvoteQuorum(uint256 replicas) public view returns (uint256 required) {
        uint256 f = replicas == 0 ? 0 : (replicas - 1) / 3;
        required = 2 * f + 1;
        if (required < _params.minOutvoteQuorum) required = _params.minOutvoteQuorum;
    }

    // ---------------------------------------------------------------- owner

    /// @notice Proposes new parameters; they may be applied `paramsTimelock` seconds from now
    /// (the timelock in force now). A new proposal replaces a pending one. Only the owner.
    /// @param params_ the new parameters (within the hard bounds, else InvalidParams(field))
    function proposeParams(Params memory params_) external onlyOwner {
        _checkParams(params_);
        uint256 applicableAt = block.timestamp + _params.paramsTimelock;
        _pendingParams = params_;
        pendingParamsAt = applicableAt;
        emit ParamsProposed(params_, applicableAt);
    }

    /// @notice Applies the pending parameters once their timelock has passed. Only the owner.
    /// Nothing already under way changes: an unbonding keeps its unbondableAt, a rotated or
    /// jailed key its end times, and a slash uses the shares in force when it is submitted.
    function applyParams() external onlyOwner {
        uint256 applicableAt = pendingParamsAt;
        if (applicableAt == 0) revert NoPendingParams();
        if (block.timestamp < applicableAt) revert TimelockNotExpired(applicableAt);
        Params memory next = _pendingParams;
        _params = next;
        delete _pendingParams;
        pendingParamsAt = 0;
        emit ParamsUpdated(next);
    }

    // ---------------------------------------------------------------- jury court

    /// @notice Sets the court that decides outvote slashes; once, by the owner, at deployment
    /// (the court's constructor needs this registry's address, so it cannot come first).
    /// @param court_ the JuryCourt
    function setCourt(IJuryCourt court_) external onlyOwner {
        if (address(court) != address(0)) revert CourtAlreadySet();
        if (address(court_) == address(0)) revert NoCourt();
        court = court_;
        emit CourtSet(address(court_));
    }

    /// @notice A donor's weight in jury draws: its bonded stake while its operator is active, else 0.
    /// @param donor the staking wallet
    function juryWeightOf(address donor) public view returns (uint256) {
        address operator = _registrations[donor].operator;
        return operator != address(0) && isActive(operator) ? _stakes[donor].bonded : 0;
    }

    /// @notice Slashes `donor` for the court: min(maxAmount, bps of its bonded + unbonding stake),
    /// bonded first, and sends it to the court, which pays it out. Only the court.
    /// @param donor the staking wallet
    /// @param maxAmount most to take
    /// @param bps share of the donor's slashable stake to take
    /// @return taken the amount slashed
    function courtSlash(
        address donor,
        uint256 maxAmount,
        uint16 bps
    ) external nonReentrant returns (uint256 taken) {
        if (msg.sender != address(court)) revert OnlyCourt();
        Stake storage st = _stakes[donor];
        uint96 bonded = st.bonded;
        uint96 unbonding = st.unbonding;
        taken = ((uint256(bonded) + unbonding) * bps) / BPS;
        if (taken > maxAmount) taken = maxAmount;
        uint96 fromBonded = taken > bonded ? bonded : uint96(taken);
        bonded -= fromBonded;
        st.bonded = bonded;
        st.unbonding = unbonding - uint96(taken - fromBonded);
        if (bonded < _params.minStake) st.bondedSince = 0;
        emit CourtSlashed(donor, taken);
        _syncJuryWeight(donor);
        if (taken != 0) token.safeTransfer(msg.sender, taken);
    }

    function _accuse(CellTypes.Receipt calldata accused, CellTypes.Receipt[] calldata quorum) private {
        IJuryCourt court_ = court;
        if (address(court_) == address(0)) revert NoCourt();
        address operator = accused.executor;
        address donor = _accountableDonor(operator);
        bytes32 key = keccak256(abi.encode(accused.jobId, operator));
        if (slashed[key]) revert AlreadySlashed(accused.jobId, operator);
        slashed[key] = true;
        Stake storage st = _stakes[donor];
        Params storage p = _params;
        uint256 amount = ((uint256(st.bonded) + st.unbonding) * p.outvotedSlashBps) / BPS;
        if (amount == 0) revert NothingToSlash(operator);
        IJuryCourt.Accusation memory a = _accusation(accused, quorum, donor, amount);
        a.deadline = uint64(block.timestamp) + p.disputeWindow;
        a.outvoteBps = p.outvotedSlashBps;
        a.reporter = msg.sender;
        a.reporterRewardBps = p.outvoteRewardBps;
        uint256 caseId = court_.openCase(a);
        emit OutvoteAccused(operator, accused.jobId, caseId, amount);
    }

    function _accusation(
        CellTypes.Receipt calldata accused,
        CellTypes.Receipt[] calldata quorum,
        address donor,
        uint256 amount
    ) private view returns (IJuryCourt.Accusation memory a) {
        uint256 k = quorum.length;
        a.jobId = accused.jobId;
        a.accusedOperator = accused.executor;
        a.accusedDonor = donor;
        a.amount = uint96(amount);
        a.accusedResult = CellTypes.resultOf(accused);
        a.quorumResult = CellTypes.resultOf(quorum[0]);
        a.quorumDonors = new address[](k);
        for (uint256 i = 0; i < k; ++i) {
            a.quorumDonors[i] = _operators[quorum[i].executor].donor;
        }
    }

    /// Pushes a registered donor's jury weight to the court; unregistered stake is never drawn.
    function _syncJuryWeight(address donor) private {
        IJuryCourt court_ = court;
        if (address(court_) != address(0) && _registrations[donor].operator != address(0)) {
            court_.onWeightChanged(donor, juryWeightOf(donor));
        }
    }

    function _inOpenCase(address donor) private view returns (bool) {
        IJuryCourt court_ = court;
        return address(court_) != address(0) && court_.openCasesOf(donor) != 0;
    }

    // ---------------------------------------------------------------- internals

    function _stake(address donor, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        Stake storage st = _stakes[donor];
        uint96 before = st.bonded;
        uint96 bonded = before + SafeCast.toUint96(amount);
        uint96 minStake = _params.minStake;
        if (bonded >= minStake && (before < minStake || st.bondedSince == 0)) {
            st.bondedSince = uint32(block.timestamp);
        }
        st.bonded = bonded;
        emit Staked(donor, amount, bonded);
        _syncJuryWeight(donor);
        token.safeTransferFrom(donor, address(this), amount);
    }

    function _permit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) private {
        try
            IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s)
        {} catch {
            // A front-run permit leaves the allowance in place; transferFrom decides.
        }
    }

    /// @dev Checks the new key and its proof of possession for msg.sender and makes it current.
    function _bindOperator(
        Registration storage reg,
        address operator,
        bytes32 peerKey,
        bytes calldata proof
    ) private {
        if (operator == address(0)) revert InvalidOperator();
        if (peerKey == bytes32(0)) revert InvalidPeerKey();
        if (_operators[operator].donor != address(0)) revert OperatorTaken(operator);
        uint64 nonce = reg.nonce;
        bytes32 digest = operatorRegistrationDigest(msg.sender, operator, peerKey, nonce);
        if (CellTypes.signerOf(digest, proof) != operator) revert InvalidProofOfPossession(operator);
        reg.operator = operator;
        reg.nonce = nonce + 1;
        reg.peerKey = peerKey;
        _operators[operator].donor = msg.sender;
    }

    function _checkQuorumReceipt(
        CellTypes.Receipt calldata accused,
        address accusedDonor,
        CellTypes.Receipt[] calldata quorum,
        uint256 i,
        address[] memory donors
    ) private view returns (address donor) {
        CellTypes.Receipt calldata r = quorum[i];
        if (r.jobId != accused.jobId) revert DifferentJobs();
        if (!CellTypes.sameResult(r, quorum[0])) revert ResultsDisagree(i);
        address operator = r.executor;
        Operator memory op = _operators[operator];
        donor = op.donor;
        bool accountable =
            op.jailedUntil == 0 && (op.accountableUntil == 0 || block.timestamp < op.accountableUntil);
        if (donor == address(0) || !accountable) revert OperatorNotActive(operator);
        if (donor == accusedDonor) revert DuplicateDonor(donor);
        for (uint256 j = 0; j < i; ++j) {
            if (donors[j] == donor) revert DuplicateDonor(donor);
        }
        uint256 since = bondedSince(donor);
        // Receipt times are Unix milliseconds (as nodes sign them); bondedSince is in seconds.
        if (since == 0 || since * 1000 >= accused.startedAt)
            revert NotBondedBeforeJob(operator, since, accused.startedAt);
    }

    function _requireSigned(CellTypes.Receipt calldata receipt, bytes calldata signature) private view {
        if (!verifyReceipt(receipt, signature)) revert InvalidSignature(receipt.executor);
    }

    /// @dev The donor of an operator evidence may still be brought against.
    function _accountableDonor(address operator) internal view returns (address donor) {
        Operator memory op = _operators[operator];
        donor = op.donor;
        if (donor == address(0)) revert UnknownOperator(operator);
        if (op.jailedUntil != 0) revert OperatorJailed(operator);
        if (op.accountableUntil != 0 && block.timestamp >= op.accountableUntil) {
            revert OperatorRetired(operator, op.accountableUntil);
        }
    }

    /// @dev Slashes an operator evidence may still be brought against (see `_slashDonor`); the
    /// caller is the reporter.
    function _slash(
        address operator,
        bytes32 jobId,
        SlashReason reason,
        uint16 bps,
        uint16 rewardBps,
        bool jail
    ) internal returns (address donor) {
        donor = _accountableDonor(operator);
        _slashDonor(Slash(donor, operator, jobId, reason, bps, rewardBps, msg.sender), jail);
    }

    /// @dev Slashes `s.bps` of the donor's stake (bonded first, then unbonding), once per
    /// (job, operator), jails the operator when `jail`, and pays `s.rewardBps` of the slash to
    /// the reporter and the rest to the treasury. It does not check that the operator is still
    /// accountable: a slash decided later (after a dispute) checks that when its evidence is
    /// submitted and passes the shares recorded then.
    function _slashDonor(Slash memory s, bool jail) internal {
        bytes32 key = keccak256(abi.encode(s.jobId, s.operator));
        if (slashed[key]) revert AlreadySlashed(s.jobId, s.operator);

        Stake storage st = _stakes[s.donor];
        uint96 bonded = st.bonded;
        uint96 unbonding = st.unbonding;
        uint256 amount = ((uint256(bonded) + unbonding) * s.bps) / BPS;
        if (amount == 0) revert NothingToSlash(s.operator);
        uint96 fromBonded = amount > bonded ? bonded : uint96(amount);
        bonded -= fromBonded;
        st.bonded = bonded;
        st.unbonding = unbonding - uint96(amount - fromBonded);
        if (bonded < _params.minStake) st.bondedSince = 0;
        slashed[key] = true;

        uint256 reward = (amount * s.rewardBps) / BPS;
        emit Slashed(s.operator, s.jobId, s.reason, s.reporter, s.donor, amount, reward);
        if (jail) _jail(s.operator, s.donor);
        _syncJuryWeight(s.donor);
        if (reward > 0) token.safeTransfer(s.reporter, reward);
        if (amount > reward) token.safeTransfer(_params.treasury, amount - reward);
    }

    function _jail(address operator, address donor) private {
        uint32 rotatableAt = uint32(block.timestamp) + _params.jailDelay;
        _operators[operator].jailedUntil = rotatableAt;
        emit Jailed(operator, donor, rotatableAt);
    }

    function _checkParams(Params memory p) private pure {
        bytes32 field = _invalidField(p);
        if (field != bytes32(0)) revert InvalidParams(field);
    }

    /// @dev The first field of `p` outside the hard bounds, or 0.
    function _invalidField(Params memory p) private pure returns (bytes32) {
        if (p.treasury == address(0)) return "treasury";
        if (p.minStake == 0) return "minStake";
        if (p.minOutvoteQuorum == 0) return "minOutvoteQuorum";
        if (p.equivocationSlashBps > MAX_SLASH_BPS) return "equivocationSlashBps";
        if (p.outvotedSlashBps > MAX_SLASH_BPS) return "outvotedSlashBps";
        if (p.reporterRewardBps > BPS) return "reporterRewardBps";
        if (p.outvoteRewardBps > BPS) return "outvoteRewardBps";
        if (!_isDelay(p.rotationDelay)) return "rotationDelay";
        if (!_isDelay(p.jailDelay)) return "jailDelay";
        if (!_isDelay(p.paramsTimelock)) return "paramsTimelock";
        if (p.disputeWindow > MAX_DELAY) return "disputeWindow";
        uint256 unbonding = p.unbondingDelay;
        if (unbonding < uint256(p.rotationDelay) + p.disputeWindow || unbonding > MAX_UNBONDING_DELAY) {
            return "unbondingDelay";
        }
        return bytes32(0);
    }

    function _isDelay(uint32 delay) private pure returns (bool) {
        return delay >= MIN_DELAY && delay <= MAX_DELAY;
    }
}
