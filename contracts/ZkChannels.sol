// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {PoseidonT3} from "poseidon-solidity/PoseidonT3.sol";
import {PoseidonT6} from "poseidon-solidity/PoseidonT6.sol";
import {CellTypes} from "./libraries/CellTypes.sol";

/// @title ZkChannels
/// @notice Payment channels settled by Groth16 proofs (docs/zk.md). What each channel has paid
/// its payee lives in a Poseidon Merkle tree whose root this contract holds; deposits and closes
/// reach the tree through an on-chain queue that every proof consumes in order, so no proof can
/// skip or invent one. A batch publishes its transfers as calldata, so anyone can rebuild the tree
/// from `ZkQueued` and `ZkBatchSettled` events and withdraw without the settler. An EIP-712
/// voucher signed by the channel's voucher signer is the fallback (`settleBySignature`); both paths
/// share `withdrawn`, so a payee never receives more than the largest cumulative amount it holds.
/// @dev The initial root is the empty tree's, computed in the constructor with PoseidonT3. The
/// verifier is called with a hand-built staticcall, so one contract serves any batch size: its
/// `verifyProof` takes 5 + ceil(batchSize / 2) public inputs.
contract ZkChannels is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The BN254 scalar field: every public input, root and key coordinate is below it.
    uint256 public constant FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint8 public constant KIND_OPEN = 1;
    uint8 public constant KIND_TOPUP = 2;
    uint8 public constant KIND_CLOSE = 3;
    bytes32 public constant ZK_VOUCHER_TYPEHASH = keccak256("ZkVoucher(uint32 leaf,uint96 cumulativeAmount)");
    /// @notice Leaf indexes take 30 bits in a published transfer.
    uint8 public constant MAX_DEPTH = 30;
    /// @notice Keeps the verifier's argument list (8 + public inputs words) small.
    uint16 public constant MAX_BATCH_SIZE = 1024;
    uint64 public constant MIN_CHALLENGE_WINDOW = 1 minutes;
    uint64 public constant MAX_CHALLENGE_WINDOW = 30 days;
    /// @dev A public transfer element packs two 126-bit transfers.
    uint256 private constant TRANSFER_LIMIT = 1 << 252;

    /// @notice A leaf's preimage: H5(ax, ay, payee, deposit, paid).
    struct ZkLeafData {
        uint256 ax;
        uint256 ay;
        address payee;
        uint96 deposit;
        uint96 paid;
    }

    /// @notice A channel's on-chain record (the tree holds what it has paid).
    /// @param buyer funded the channel, may close it and gets the refund
    /// @param signer key whose EIP-712 ZkVouchers `settleBySignature` honours
    /// @param payee receives every payment
    /// @param deposited all ATP put into the channel
    /// @param withdrawn what has left the contract to the payee (both paths)
    /// @param closesAt end of the challenge window (0: no close started)
    /// @param closeQueuedAt queue position of the channel's CLOSE + 1 (0: not queued)
    /// @param refunded true once the buyer got its refund
    struct ZkChannel {
        address buyer;
        address signer;
        address payee;
        uint96 deposited;
        uint96 withdrawn;
        uint64 closesAt;
        uint64 closeQueuedAt;
        bool refunded;
    }

    IERC20 public immutable token;
    /// @notice The Groth16 verifier of SettleBatch(depth, queueSlots, batchSize).
    address public immutable verifier;
    uint8 public immutable depth;
    /// @notice Queue operations one proof can consume (Q).
    uint16 public immutable queueSlots;
    /// @notice Transfers one proof can carry (B).
    uint16 public immutable batchSize;
    /// @notice Seconds between startClose and finalizeClose: the payee's time to settle.
    uint64 public immutable challengeWindow;
    /// @notice keccak256(abi.encode("cell.zk.v1", chainid, this)) mod FIELD: binds every proof
    /// and zk voucher to this deployment.
    uint256 public immutable domainTag;
    bytes4 private immutable _verifySelector;
    uint256 private immutable _transferWords;

    /// @notice The current state root.
    uint256 public root;
    /// @notice Operations ever queued.
    uint64 public queueLength;
    /// @notice Operations the proofs have consumed so far (a prefix of the queue).
    uint64 public consumed;
    /// @notice Batches settled so far.
    uint64 public batchCount;
    /// @notice Channels ever opened; the next channel takes this leaf. Bound: 2^depth.
    uint32 public leafCount;

    /// @dev q_n for n = 1..queueLength (q_0 = 0 is the unset slot). Bound: one slot per queued
    /// operation, never deleted: OPENs are bounded by 2^depth and every TOPUP and CLOSE is a
    /// transaction its sender pays for; settlement and `queueHashAt` read any position.
    mapping(uint64 position => uint256 queueHash) private _queueHashes;
    /// @notice For every root a proof produced (and the empty tree's): the queue operations
    /// consumed when it was current, plus one; 0 for an unknown root. Bound: one slot per settled
    /// batch (never deleted: an older root keeps proving what a payee was paid at that time).
    mapping(uint256 root => uint64 consumedPlusOne) public rootConsumed;
    /// @dev Bound: one entry per opened leaf (< 2^depth), never deleted.
    mapping(uint32 leaf => ZkChannel) private _channels;

    event ZkChannelOpened(
        uint32 indexed leaf,
        address indexed buyer,
        address indexed payee,
        address signer,
        uint256 ax,
        uint256 ay,
        uint96 amount
    );
    /// @notice Operation number `position` entered the queue; `queueHash` is q_{position+1}.
    /// ax, ay and payee are zero for TOPUP and CLOSE.
    event ZkQueued(
        uint64 indexed position,
        uint8 kind,
        uint32 indexed leaf,
        uint96 amount,
        uint256 ax,
        uint256 ay,
        address payee,
        uint256 queueHash
    );
    event ZkToppedUp(uint32 indexed leaf, address indexed funder, uint96 amount, uint256 deposited);
    event ZkCloseStarted(uint32 indexed leaf, uint64 closesAt);
    event ZkCloseFinalized(uint32 indexed leaf, uint64 position);
    /// @notice Batch `batch` moved the root from `oldRoot` to `newRoot`, consuming queue
    /// operations [queueFrom, queueTo) and then the packed `transfers` (docs/zk.md).
    event ZkBatchSettled(
        uint64 indexed batch,
        address indexed submitter,
        uint256 oldRoot,
        uint256 newRoot,
        uint64 queueFrom,
        uint64 queueTo,
        uint256[] transfers
    );
    event ZkWithdrawn(uint32 indexed leaf, address indexed payee, uint256 amount, uint256 paid);
    event ZkSettledBySignature(uint32 indexed leaf, address indexed payee, uint96 cumulative, uint256 amount);
    event ZkRefunded(uint32 indexed leaf, address indexed buyer, uint256 amount);

    error ZeroAddress();
    error NoCode(address account);
    error DepthOutOfBounds(uint8 depth, uint8 max);
    error ZeroQueueSlots();
    error BatchSizeOutOfBounds(uint16 batchSize, uint16 max);
    error ChallengeWindowOutOfBounds(uint64 challengeWindow, uint64 min, uint64 max);
    error ZeroAmount();
    error NotAFieldElement(uint256 value);
    error TreeFull(uint32 leafCount);
    error UnknownLeaf(uint32 leaf);
    error DepositOverflow(uint32 leaf, uint256 deposited);
    error NotBuyer(uint32 leaf, address caller);
    error ChannelClosing(uint32 leaf);
    error NotClosing(uint32 leaf);
    error ChallengeWindowOpen(uint64 closesAt);
    error CloseAlreadyQueued(uint32 leaf);
    error WrongTransferCount(uint256 given, uint256 expected);
    error TransferOutOfRange(uint256 index);
    error EmptyBatch();
    error TooManyOperations(uint64 opsConsumed, uint16 queueSlots);
    error QueueOverrun(uint64 queueTo, uint64 queueLength);
    error InvalidProof();
    error UnknownRoot(uint256 root);
    error WrongPathLength(uint256 given, uint8 depth);
    error LeafNotInRoot(uint32 leaf, uint256 root);
    error WrongPayee(address given, address payee);
    error NothingToWithdraw(uint32 leaf);
    error InvalidSignature(address expected);
    error OverDeposit(uint32 leaf, uint96 cumulative, uint96 deposited);
    error NothingToPay(uint32 leaf);
    error CloseNotQueued(uint32 leaf);
    error CloseNotSettled(uint32 leaf, uint256 root);
    error LeafNotClosed(uint32 leaf);
    error AlreadyRefunded(uint32 leaf);
    error QueuePositionOutOfRange(uint64 position, uint64 queueLength);

    /// @param token_ the ATP token
    /// @param verifier_ the Groth16 verifier of SettleBatch(depth_, queueSlots_, batchSize_)
    /// @param depth_ the state tree's depth, 1..MAX_DEPTH
    /// @param queueSlots_ queue operations per proof (Q), at least 1
    /// @param batchSize_ transfers per proof (B), 1..MAX_BATCH_SIZE
    /// @param challengeWindow_ seconds between startClose and finalizeClose
    constructor(
        IERC20 token_,
        address verifier_,
        uint8 depth_,
        uint16 queueSlots_,
        uint16 batchSize_,
        uint64 challengeWindow_
    ) EIP712("Cell ZkChannels", "1") {
        if (address(token_) == address(0) || verifier_ == address(0)) revert ZeroAddress();
        if (address(token_).code.length == 0) revert NoCode(address(token_));
        if (verifier_.code.length == 0) revert NoCode(verifier_);
        if (depth_ == 0 || depth_ > MAX_DEPTH) revert DepthOutOfBounds(depth_, MAX_DEPTH);
        if (queueSlots_ == 0) revert ZeroQueueSlots();
        if (batchSize_ == 0 || batchSize_ > MAX_BATCH_SIZE)
            revert BatchSizeOutOfBounds(batchSize_, MAX_BATCH_SIZE);
        if (challengeWindow_ < MIN_CHALLENGE_WINDOW || challengeWindow_ > MAX_CHALLENGE_WINDOW)
            revert ChallengeWindowOutOfBounds(challengeWindow_, MIN_CHALLENGE_WINDOW, MAX_CHALLENGE_WINDOW);
        token = token_;
        verifier = verifier_;
        depth = depth_;
        queueSlots = queueSlots_;
        batchSize = batchSize_;
        challengeWindow = challengeWindow_;
        domainTag = uint256(keccak256(abi.encode("cell.zk.v1", block.chainid, address(this)))) % FIELD;
        uint256 words = (uint256(batchSize_) + 1) / 2;
        _transferWords = words;
        _verifySelector = bytes4(
            keccak256(
                abi.encodePacked(
                    "verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[",
                    Strings.toString(5 + words),
                    "])"
                )
            )
        );
        uint256 emptyRoot = 0;
        for (uint256 level = 0; level < depth_; ++level) emptyRoot = PoseidonT3.hash([emptyRoot, emptyRoot]);
        root = emptyRoot;
        rootConsumed[emptyRoot] = 1;
    }

    // ---------------------------------------------------------------- channels

    /// @notice Opens a channel from the caller to `payee` with `amount` ATP (needs an allowance)
    /// and queues its OPEN.
    /// @param payee receives every payment
    /// @param signer key whose EIP-712 ZkVouchers the fallback honours
    /// @param ax settlement key (BabyJubJub) x coordinate, below FIELD
    /// @param ay settlement key y coordinate, below FIELD
    /// @param amount first deposit
    /// @return leaf the channel's leaf index
    function open(
        address payee,
        address signer,
        uint256 ax,
        uint256 ay,
        uint96 amount
    ) external nonReentrant returns (uint32 leaf) {
        return _open(payee, signer, ax, ay, amount);
    }

    /// @notice `open` with an EIP-2612 permit instead of a prior approval.
    /// @param payee receives every payment
    /// @param signer key whose EIP-712 ZkVouchers the fallback honours
    /// @param ax settlement key x coordinate
    /// @param ay settlement key y coordinate
    /// @param amount first deposit
    /// @param deadline permit deadline
    /// @param v permit signature v
    /// @param r permit signature r
    /// @param s permit signature s
    /// @return leaf the channel's leaf index
    function openWithPermit(
        address payee,
        address signer,
        uint256 ax,
        uint256 ay,
        uint96 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint32 leaf) {
        try
            IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s)
        {} catch {
            // A front-run permit leaves the allowance in place; transferFrom decides.
        }
        return _open(payee, signer, ax, ay, amount);
    }

    /// @notice Adds `amount` to a channel whose close has not started and queues the TOPUP.
    /// Anyone may fund; refunds go to the buyer.
    /// @param leaf the channel
    /// @param amount ATP to add (the deposit stays below 2^96)
    function topUp(uint32 leaf, uint96 amount) external nonReentrant {
        ZkChannel storage ch = _existing(leaf);
        if (amount == 0) revert ZeroAmount();
        if (ch.closesAt != 0) revert ChannelClosing(leaf);
        uint256 deposited = uint256(ch.deposited) + amount;
        if (deposited > type(uint96).max) revert DepositOverflow(leaf, deposited);
        ch.deposited = uint96(deposited);
        emit ZkToppedUp(leaf, msg.sender, amount, deposited);
        _enqueue(KIND_TOPUP, leaf, amount, 0, 0, address(0));
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Starts the challenge window of a channel (buyer only): the payee has
    /// `challengeWindow` seconds to settle its latest voucher.
    /// @param leaf the channel
    function startClose(uint32 leaf) external {
        ZkChannel storage ch = _existing(leaf);
        if (msg.sender != ch.buyer) revert NotBuyer(leaf, msg.sender);
        if (ch.closesAt != 0) revert ChannelClosing(leaf);
        uint64 closesAt = uint64(block.timestamp) + challengeWindow;
        ch.closesAt = closesAt;
        emit ZkCloseStarted(leaf, closesAt);
    }

    /// @notice Queues the channel's CLOSE once its challenge window is over. Anyone may call.
    /// @param leaf the channel
    function finalizeClose(uint32 leaf) external {
        ZkChannel storage ch = _existing(leaf);
        uint64 closesAt = ch.closesAt;
        if (closesAt == 0) revert NotClosing(leaf);
        if (block.timestamp < closesAt) revert ChallengeWindowOpen(closesAt);
        if (ch.closeQueuedAt != 0) revert CloseAlreadyQueued(leaf);
        uint64 position = _enqueue(KIND_CLOSE, leaf, 0, 0, 0, address(0));
        ch.closeQueuedAt = position + 1;
        emit ZkCloseFinalized(leaf, position);
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Applies one proven batch: the next `opsConsumed` queue operations, then the packed
    /// transfers. Anyone may submit. A replayed batch fails: its old root is no longer current.
    /// @param newRoot the state root after the batch, below FIELD
    /// @param opsConsumed queue operations the batch consumed (at most queueSlots)
    /// @param transfers ceil(batchSize / 2) elements, two 126-bit transfers each (docs/zk.md)
    /// @param proof pA[0], pA[1], pB[0][0], pB[0][1], pB[1][0], pB[1][1], pC[0], pC[1]
    function settle(
        uint256 newRoot,
        uint64 opsConsumed,
        uint256[] calldata transfers,
        uint256[8] calldata proof
    ) external {
        if (newRoot >= FIELD) revert NotAFieldElement(newRoot);
        if (opsConsumed > queueSlots) revert TooManyOperations(opsConsumed, queueSlots);
        if (!_checkTransfers(transfers) && opsConsumed == 0) revert EmptyBatch();
        uint64 queueFrom = consumed;
        uint64 queueTo = queueFrom + opsConsumed;
        if (queueTo > queueLength) revert QueueOverrun(queueTo, queueLength);
        uint256 oldRoot = root;
        _verify(oldRoot, newRoot, _queueHashes[queueFrom], _queueHashes[queueTo], transfers, proof);
        root = newRoot;
        consumed = queueTo;
        rootConsumed[newRoot] = queueTo + 1;
        uint64 batch = batchCount;
        batchCount = batch + 1;
        emit ZkBatchSettled(batch, msg.sender, oldRoot, newRoot, queueFrom, queueTo, transfers);
    }

    /// @notice Pays the channel's payee what the leaf under a known root says it was paid and has
    /// not received yet. Anyone may call; the money goes to the payee.
    /// @param leaf the channel
    /// @param data the leaf's preimage under `knownRoot`
    /// @param siblings the leaf's path, `depth` siblings from the leaf level up
    /// @param knownRoot a root some batch produced (`rootConsumed(knownRoot) != 0`)
    /// @return amount what was transferred
    function withdraw(
        uint32 leaf,
        ZkLeafData calldata data,
        uint256[] calldata siblings,
        uint256 knownRoot
    ) external nonReentrant returns (uint256 amount) {
        ZkChannel storage ch = _existing(leaf);
        _requireLeaf(leaf, data, siblings, knownRoot);
        address payee = ch.payee;
        if (data.payee != payee) revert WrongPayee(data.payee, payee);
        uint96 before = ch.withdrawn;
        if (data.paid <= before) revert NothingToWithdraw(leaf);
        amount = data.paid - before;
        ch.withdrawn = data.paid;
        emit ZkWithdrawn(leaf, payee, amount, data.paid);
        token.safeTransfer(payee, amount);
    }

    /// @notice The fallback without a proof: pays the payee what an EIP-712 ZkVoucher adds to what
    /// the channel has already paid out, up to the deposit, until the channel's CLOSE is queued.
    /// Anyone may submit; the money goes to the payee.
    /// @param leaf the channel
    /// @param cumulative the voucher's cumulative amount
    /// @param signature by the channel's signer (65 bytes, or 64 bytes as EIP-2098)
    /// @return amount what was transferred
    function settleBySignature(
        uint32 leaf,
        uint96 cumulative,
        bytes calldata signature
    ) external nonReentrant returns (uint256 amount) {
        ZkChannel storage ch = _existing(leaf);
        if (ch.closeQueuedAt != 0) revert CloseAlreadyQueued(leaf);
        address expected = ch.signer;
        address recovered = CellTypes.signerOf(zkVoucherDigest(leaf, cumulative), signature);
        if (recovered == address(0) || recovered != expected) revert InvalidSignature(expected);
        if (cumulative > ch.deposited) revert OverDeposit(leaf, cumulative, ch.deposited);
        uint96 before = ch.withdrawn;
        if (cumulative <= before) revert NothingToPay(leaf);
        amount = cumulative - before;
        ch.withdrawn = cumulative;
        address payee = ch.payee;
        emit ZkSettledBySignature(leaf, payee, cumulative, amount);
        token.safeTransfer(payee, amount);
    }

    /// @notice Pays the buyer what its closed channel did not pay: deposited - max(paid,
    /// withdrawn), once, given the leaf under a root that had consumed the channel's CLOSE.
    /// Anyone may call; the money goes to the buyer.
    /// @param leaf the channel
    /// @param data the leaf's preimage under `knownRoot` (deposit == paid after the CLOSE)
    /// @param siblings the leaf's path, `depth` siblings from the leaf level up
    /// @param knownRoot a root produced after the CLOSE was consumed
    /// @return amount what was transferred
    function refund(
        uint32 leaf,
        ZkLeafData calldata data,
        uint256[] calldata siblings,
        uint256 knownRoot
    ) external nonReentrant returns (uint256 amount) {
        ZkChannel storage ch = _existing(leaf);
        uint64 closeQueuedAt = ch.closeQueuedAt;
        if (closeQueuedAt == 0) revert CloseNotQueued(leaf);
        if (ch.refunded) revert AlreadyRefunded(leaf);
        _requireLeaf(leaf, data, siblings, knownRoot);
        // rootConsumed - 1 operations consumed must include the CLOSE at closeQueuedAt - 1.
        if (rootConsumed[knownRoot] <= closeQueuedAt) revert CloseNotSettled(leaf, knownRoot);
        if (data.deposit != data.paid) revert LeafNotClosed(leaf);
        uint96 withdrawnSoFar = ch.withdrawn;
        uint96 settled = data.paid > withdrawnSoFar ? data.paid : withdrawnSoFar;
        amount = ch.deposited - settled;
        ch.refunded = true;
        address buyer = ch.buyer;
        emit ZkRefunded(leaf, buyer, amount);
        if (amount > 0) token.safeTransfer(buyer, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice q_n of the queue hash chain (q_0 = 0).
    /// @param n a position in 0..queueLength
    function queueHashAt(uint64 n) external view returns (uint256) {
        if (n > queueLength) revert QueuePositionOutOfRange(n, queueLength);
        return _queueHashes[n];
    }

    /// @notice The channel at `leaf` (reverts for a leaf never opened).
    /// @param leaf the channel
    function channelOf(uint32 leaf) external view returns (ZkChannel memory) {
        return _existing(leaf);
    }

    /// @notice The buyer of the channel at `leaf`.
    /// @param leaf the channel
    function buyerOf(uint32 leaf) external view returns (address) {
        return _existing(leaf).buyer;
    }

    /// @notice The key whose ZkVouchers `settleBySignature` honours for `leaf`.
    /// @param leaf the channel
    function signerOf(uint32 leaf) external view returns (address) {
        return _existing(leaf).signer;
    }

    /// @notice The payee of the channel at `leaf`.
    /// @param leaf the channel
    function payeeOf(uint32 leaf) external view returns (address) {
        return _existing(leaf).payee;
    }

    /// @notice EIP-712 digest of ZkVoucher(leaf, cumulativeAmount) in this contract's domain.
    /// @param leaf the channel
    /// @param cumulative the cumulative amount
    function zkVoucherDigest(uint32 leaf, uint96 cumulative) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ZK_VOUCHER_TYPEHASH, leaf, cumulative)));
    }

    // ---------------------------------------------------------------- internals

    function _open(
        address payee,
        address signer,
        uint256 ax,
        uint256 ay,
        uint96 amount
    ) private returns (uint32 leaf) {
        if (amount == 0) revert ZeroAmount();
        if (payee == address(0) || signer == address(0)) revert ZeroAddress();
        if (ax >= FIELD) revert NotAFieldElement(ax);
        if (ay >= FIELD) revert NotAFieldElement(ay);
        leaf = leafCount;
        if (uint256(leaf) >= uint256(1) << depth) revert TreeFull(leaf);
        leafCount = leaf + 1;
        ZkChannel storage ch = _channels[leaf];
        ch.buyer = msg.sender;
        ch.signer = signer;
        ch.payee = payee;
        ch.deposited = amount;
        emit ZkChannelOpened(leaf, msg.sender, payee, signer, ax, ay, amount);
        _enqueue(KIND_OPEN, leaf, amount, ax, ay, payee);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @dev Appends an operation to the queue: q_{n+1} = H5(q_n, packed, ax, ay, payee) for OPEN,
    /// H2(q_n, packed) otherwise, with packed = kind + (leaf << 8) + (amount << 40).
    function _enqueue(
        uint8 kind,
        uint32 leaf,
        uint96 amount,
        uint256 ax,
        uint256 ay,
        address payee
    ) private returns (uint64 position) {
        position = queueLength;
        uint256 previous = _queueHashes[position];
        uint256 packed = uint256(kind) | (uint256(leaf) << 8) | (uint256(amount) << 40);
        uint256 next =
            kind == KIND_OPEN
                ? PoseidonT6.hash([previous, packed, ax, ay, uint256(uint160(payee))])
                : PoseidonT3.hash([previous, packed]);
        _queueHashes[position + 1] = next;
        queueLength = position + 1;
        emit ZkQueued(position, kind, leaf, amount, ax, ay, payee, next);
    }

    /// @dev Checks the count and range of the packed transfers; true when any is used.
    function _checkTransfers(uint256[] calldata transfers) private view returns (bool used) {
        if (transfers.length != _transferWords) revert WrongTransferCount(transfers.length, _transferWords);
        for (uint256 i = 0; i < transfers.length; ++i) {
            uint256 word = transfers[i];
            if (word >= TRANSFER_LIMIT) revert TransferOutOfRange(i);
            if (word != 0) used = true;
        }
    }

    /// @dev Calls the verifier with the proof and the public inputs domainTag, oldRoot, newRoot,
    /// oldQueueHash, newQueueHash, transfers… as 8 + 5 + ceil(B/2) static words.
    function _verify(
        uint256 oldRoot,
        uint256 newRoot,
        uint256 oldQueueHash,
        uint256 newQueueHash,
        uint256[] calldata transfers,
        uint256[8] calldata proof
    ) private view {
        uint256[] memory inputs = new uint256[](5 + transfers.length);
        inputs[0] = domainTag;
        inputs[1] = oldRoot;
        inputs[2] = newRoot;
        inputs[3] = oldQueueHash;
        inputs[4] = newQueueHash;
        for (uint256 i = 0; i < transfers.length; ++i) inputs[5 + i] = transfers[i];
        (bool ok, bytes memory result) = verifier.staticcall(
            abi.encodePacked(_verifySelector, proof, inputs)
        );
        if (!ok || result.length != 32 || abi.decode(result, (uint256)) != 1) revert InvalidProof();
    }

    /// @dev Reverts unless `data` hashes to leaf `leaf` of the known root `knownRoot` along `siblings`.
    function _requireLeaf(
        uint32 leaf,
        ZkLeafData calldata data,
        uint256[] calldata siblings,
        uint256 knownRoot
    ) private view {
        if (rootConsumed[knownRoot] == 0) revert UnknownRoot(knownRoot);
        if (siblings.length != depth) revert WrongPathLength(siblings.length, depth);
        uint256 node = PoseidonT6.hash(
            [data.ax, data.ay, uint256(uint160(data.payee)), data.deposit, data.paid]
        );
        uint256 index = leaf;
        for (uint256 level = 0; level < siblings.length; ++level) {
            node =
                index & 1 == 0
                    ? PoseidonT3.hash([node, siblings[level]])
                    : PoseidonT3.hash([siblings[level], node]);
            index >>= 1;
        }
        if (node != knownRoot) revert LeafNotInRoot(leaf, knownRoot);
    }

    function _existing(uint32 leaf) private view returns (ZkChannel storage ch) {
        if (leaf >= leafCount) revert UnknownLeaf(leaf);
        return _channels[leaf];
    }
}
