// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJuryCourt} from "./interfaces/IJuryCourt.sol";
import {CellTypes} from "./libraries/CellTypes.sol";

/// @title DonorRegistry
/// @notice Donors stake ATP, register the operator key their node signs with and their libp2p
/// peer key, and can be slashed with signed receipts: for equivocation (two different results
/// for one job) or for being outvoted by a quorum of other active operators. It is also the
/// EIP-712 domain ("Cell", "1") against which receipts, bids and job specs are verified.
/// @dev Per donor the amounts and the unbonding time share one storage slot.
contract DonorRegistry is EIP712, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using CellTypes for CellTypes.Receipt;

    uint16 internal constant BPS = 10_000;
    bytes32 public constant RECEIPT_TYPEHASH = CellTypes.RECEIPT_TYPEHASH;
    bytes32 public constant JOB_SPEC_TYPEHASH = CellTypes.JOB_SPEC_TYPEHASH;
    bytes32 public constant BID_TYPEHASH = CellTypes.BID_TYPEHASH;

    struct Stake {
        uint96 bonded;
        uint96 unbonding;
        uint64 unbondableAt;
    }

    struct Registration {
        address operator;
        bytes32 peerKey;
        string metadataURI;
    }

    /// @notice Settings the owner may change.
    /// @param minStake bonded amount an operator needs to be active
    /// @param unbondingDelay seconds between an unbond request and the withdrawal
    /// @param equivocationSlashBps share of a donor's stake slashed for equivocation
    /// @param outvotedSlashBps share slashed for being outvoted by a quorum
    /// @param reporterRewardBps share of a slash paid to the reporter; the rest goes to the treasury
    /// @param minOutvoteQuorum fewest agreeing receipts of other operators an outvote slash needs
    /// @param treasury receiver of the slashed stake that is not the reporter's reward
    struct Params {
        uint96 minStake;
        uint32 unbondingDelay;
        uint16 equivocationSlashBps;
        uint16 outvotedSlashBps;
        uint16 reporterRewardBps;
        uint8 minOutvoteQuorum;
        address treasury;
    }

    enum SlashReason {
        Equivocation,
        Outvoted
    }

    IERC20 public immutable token;
    Params internal _params;

    mapping(address donor => Stake) public stakes;
    mapping(address donor => Registration) internal _registrations;
    mapping(address operator => address donor) public donorOf;
    /// @notice keccak256(jobId, operator) => already slashed for that job
    mapping(bytes32 key => bool) public slashed;
    /// @notice The court that decides outvote slashes (set once, see setCourt).
    IJuryCourt public court;

    event Staked(address indexed donor, uint256 amount, uint256 bonded);
    event Registered(address indexed donor, address indexed operator, bytes32 peerKey, string metadataURI);
    event MetadataUpdated(address indexed donor, string metadataURI);
    event UnbondRequested(address indexed donor, uint256 amount, uint256 unbondableAt);
    event Withdrawn(address indexed donor, uint256 amount);
    event Slashed(
        address indexed operator,
        bytes32 indexed jobId,
        SlashReason reason,
        address indexed reporter,
        uint256 amount,
        uint256 reward
    );
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
    error NotRegistered(address donor);
    error InsufficientBonded(uint256 requested, uint256 bonded);
    error NothingToWithdraw();
    error StillUnbonding(uint256 unbondableAt);
    error InvalidParams();
    error InvalidSignature(address expected);
    error DifferentJobs();
    error DifferentExecutors();
    error NotEquivocation();
    error UnknownOperator(address operator);
    error OperatorNotActive(address operator);
    error DuplicateOperator(address operator);
    error ResultsDisagree(uint256 index);
    error AccusedAgrees();
    error QuorumTooSmall(uint256 count, uint256 required);
    error JobSpecMismatch(bytes32 jobId);
    error AlreadySlashed(bytes32 jobId, address operator);
    error NothingToSlash(address operator);
    error CourtAlreadySet();
    error NoCourt();
    error OnlyCourt();
    error FrozenByCase(address donor);

    /// @param token_ the ATP token staked here
    /// @param owner_ may change the parameters
    /// @param params_ initial parameters (see Params)
    constructor(IERC20 token_, address owner_, Params memory params_) EIP712("Cell", "1") Ownable(owner_) {
        token = token_;
        _setParams(params_);
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

    /// @notice Registers the caller's operator key, Ed25519 peer key and metadata URI.
    /// Needs at least the minimum bonded stake. Done once per donor; operators are never reused.
    /// @param operator secp256k1 address whose key signs the node's statements
    /// @param peerKey 32-byte Ed25519 public key of the node's libp2p identity
    /// @param metadataURI where the node describes itself (endpoints, capabilities)
    function register(address operator, bytes32 peerKey, string calldata metadataURI) external {
        if (operator == address(0)) revert InvalidOperator();
        if (peerKey == bytes32(0)) revert InvalidPeerKey();
        Registration storage reg = _registrations[msg.sender];
        if (reg.operator != address(0)) revert AlreadyRegistered(msg.sender);
        if (donorOf[operator] != address(0)) revert OperatorTaken(operator);
        uint256 bonded = stakes[msg.sender].bonded;
        if (bonded < _params.minStake) revert BelowMinimumStake(bonded, _params.minStake);

        reg.operator = operator;
        reg.peerKey = peerKey;
        reg.metadataURI = metadataURI;
        donorOf[operator] = msg.sender;
        emit Registered(msg.sender, operator, peerKey, metadataURI);
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
    /// withdrawable `unbondingDelay` seconds after the latest request. Unbonding stake stays slashable.
    /// @param amount ATP to unbond
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Stake storage st = stakes[msg.sender];
        if (amount > st.bonded) revert InsufficientBonded(amount, st.bonded);
        uint64 unbondableAt = uint64(block.timestamp) + _params.unbondingDelay;
        st.bonded -= uint96(amount);
        st.unbonding += uint96(amount);
        st.unbondableAt = unbondableAt;
        emit UnbondRequested(msg.sender, amount, unbondableAt);
        _syncJuryWeight(msg.sender);
    }

    /// @notice Pays the caller's unbonding stake once its delay has passed.
    function withdraw() external nonReentrant {
        Stake storage st = stakes[msg.sender];
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

    /// @notice True when `operator` is registered and its donor's bonded stake meets the minimum.
    /// @param operator the operator address to check
    function isActive(address operator) public view returns (bool) {
        address donor = donorOf[operator];
        return donor != address(0) && stakes[donor].bonded >= _params.minStake;
    }

    /// @notice Registration of a donor: operator, peer key, metadata URI.
    /// @param donor the staking wallet
    function registrationOf(address donor) external view returns (Registration memory) {
        return _registrations[donor];
    }

    /// @notice Current parameters.
    function params() external view returns (Params memory) {
        return _params;
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
    /// output CID or fuel used. Anyone holding both signatures may call; the caller gets the reward.
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
        _slash(a.executor, a.jobId, SlashReason.Equivocation, _params.equivocationSlashBps);
    }

    /// @notice Accuses an operator whose signed receipt disagrees with a quorum of receipts of
    /// other operators for the same job. The slash is not taken here: the evidence opens a case in
    /// the court (`court.openCase`), which slashes after a dispute window or lets a jury decide. A job id is the EIP-712 digest of its spec under this
    /// domain, so the spec proves the job's replica count n; with f = floor((n - 1) / 3) the
    /// quorum needs k >= 2f + 1 receipts, and never fewer than minOutvoteQuorum. Every quorum
    /// receipt must be signed by a distinct operator, not the accused, that is active now.
    /// @param spec the job's spec (its digest must be the receipts' jobId)
    /// @param accused the accused operator's receipt
    /// @param accusedSig its signature
    /// @param quorum receipts of other operators agreeing on one result
    /// @param quorumSigs their signatures, in the same order
    function slashOutvoted(
        CellTypes.JobSpec calldata spec,
        CellTypes.Receipt calldata accused,
        bytes calldata accusedSig,
        CellTypes.Receipt[] calldata quorum,
        bytes[] calldata quorumSigs
    ) external nonReentrant {
        if (_hashTypedDataV4(CellTypes.hash(spec)) != accused.jobId) revert JobSpecMismatch(accused.jobId);
        uint256 k = quorum.length;
        uint256 required = outvoteQuorum(spec.replicas);
        if (k < required || quorumSigs.length != k) revert QuorumTooSmall(k, required);
        _requireSigned(accused, accusedSig);
        if (CellTypes.sameResult(accused, quorum[0])) revert AccusedAgrees();
        for (uint256 i = 0; i < k; ++i) {
            _checkQuorumReceipt(accused, quorum, i);
            _requireSigned(quorum[i], quorumSigs[i]);
        }
        _accuse(spec, accused, quorum);
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

    /// @notice Replaces the parameters. Only the owner.
    /// @param params_ the new parameters
    function setParams(Params calldata params_) external onlyOwner {
        _setParams(params_);
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
        return operator != address(0) && isActive(operator) ? stakes[donor].bonded : 0;
    }

    /// @notice Receiver of slashed stake that nobody is rewarded with.
    function treasury() external view returns (address) {
        return _params.treasury;
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
        Stake storage st = stakes[donor];
        uint96 bonded = st.bonded;
        uint96 unbonding = st.unbonding;
        taken = ((uint256(bonded) + unbonding) * bps) / BPS;
        if (taken > maxAmount) taken = maxAmount;
        uint96 fromBonded = taken > bonded ? bonded : uint96(taken);
        st.bonded = bonded - fromBonded;
        st.unbonding = unbonding - uint96(taken - fromBonded);
        emit CourtSlashed(donor, taken);
        _syncJuryWeight(donor);
        if (taken != 0) token.safeTransfer(msg.sender, taken);
    }

    function _accuse(
        CellTypes.JobSpec calldata spec,
        CellTypes.Receipt calldata accused,
        CellTypes.Receipt[] calldata quorum
    ) private {
        IJuryCourt court_ = court;
        if (address(court_) == address(0)) revert NoCourt();
        address operator = accused.executor;
        address donor = donorOf[operator];
        if (donor == address(0)) revert UnknownOperator(operator);
        bytes32 key = keccak256(abi.encode(accused.jobId, operator));
        if (slashed[key]) revert AlreadySlashed(accused.jobId, operator);
        slashed[key] = true;
        Stake storage st = stakes[donor];
        uint16 bps = _params.outvotedSlashBps;
        uint256 amount = ((uint256(st.bonded) + st.unbonding) * bps) / BPS;
        if (amount == 0) revert NothingToSlash(operator);
        uint256 caseId = court_.openCase(_accusation(accused, quorum, donor, amount, bps), spec);
        emit OutvoteAccused(operator, accused.jobId, caseId, amount);
    }

    function _accusation(
        CellTypes.Receipt calldata accused,
        CellTypes.Receipt[] calldata quorum,
        address donor,
        uint256 amount,
        uint16 bps
    ) private view returns (IJuryCourt.Accusation memory a) {
        uint256 k = quorum.length;
        a.jobId = accused.jobId;
        a.accusedOperator = accused.executor;
        a.accusedDonor = donor;
        a.amount = uint96(amount);
        a.outvoteBps = bps;
        a.accusedResult = CellTypes.resultOf(accused);
        a.quorumResult = CellTypes.resultOf(quorum[0]);
        a.quorumOperators = new address[](k);
        a.quorumDonors = new address[](k);
        for (uint256 i = 0; i < k; ++i) {
            a.quorumOperators[i] = quorum[i].executor;
            a.quorumDonors[i] = donorOf[quorum[i].executor];
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
        Stake storage st = stakes[donor];
        uint96 bonded = st.bonded + SafeCast.toUint96(amount);
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

    function _checkQuorumReceipt(
        CellTypes.Receipt calldata accused,
        CellTypes.Receipt[] calldata quorum,
        uint256 i
    ) private view {
        CellTypes.Receipt calldata r = quorum[i];
        if (r.jobId != accused.jobId) revert DifferentJobs();
        if (!CellTypes.sameResult(r, quorum[0])) revert ResultsDisagree(i);
        address operator = r.executor;
        if (operator == accused.executor) revert DuplicateOperator(operator);
        if (!isActive(operator)) revert OperatorNotActive(operator);
        for (uint256 j = 0; j < i; ++j) {
            if (quorum[j].executor == operator) revert DuplicateOperator(operator);
        }
    }

    function _requireSigned(CellTypes.Receipt calldata receipt, bytes calldata signature) private view {
        if (!verifyReceipt(receipt, signature)) revert InvalidSignature(receipt.executor);
    }

    function _slash(address operator, bytes32 jobId, SlashReason reason, uint16 bps) private {
        address donor = donorOf[operator];
        if (donor == address(0)) revert UnknownOperator(operator);
        bytes32 key = keccak256(abi.encode(jobId, operator));
        if (slashed[key]) revert AlreadySlashed(jobId, operator);

        Stake storage st = stakes[donor];
        uint96 bonded = st.bonded;
        uint96 unbonding = st.unbonding;
        uint256 amount = ((uint256(bonded) + unbonding) * bps) / BPS;
        if (amount == 0) revert NothingToSlash(operator);
        uint96 fromBonded = amount > bonded ? bonded : uint96(amount);
        st.bonded = bonded - fromBonded;
        st.unbonding = unbonding - uint96(amount - fromBonded);
        slashed[key] = true;
        _syncJuryWeight(donor);

        uint256 reward = (amount * _params.reporterRewardBps) / BPS;
        emit Slashed(operator, jobId, reason, msg.sender, amount, reward);
        if (reward > 0) token.safeTransfer(msg.sender, reward);
        if (amount > reward) token.safeTransfer(_params.treasury, amount - reward);
    }

    function _setParams(Params memory p) private {
        bool bad =
            p.treasury == address(0) ||
                p.minStake == 0 ||
                p.equivocationSlashBps > BPS ||
                p.outvotedSlashBps > BPS ||
                p.reporterRewardBps > BPS ||
                p.minOutvoteQuorum == 0;
        if (bad) revert InvalidParams();
        _params = p;
        emit ParamsUpdated(p);
    }
}
