// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {CellTypes} from "./libraries/CellTypes.sol";

/// @title PaymentChannels
/// @notice Unidirectional ATP channels from a buyer to a payee, paid with cumulative EIP-712
/// vouchers signed by the buyer's voucher key, plus net settlement: one transaction credits the
/// latest vouchers of many channels and anchors the Merkle root of an epoch's receipts. Settled
/// amounts stay in the contract until the payee pulls them with `withdrawPaid`, one transfer for
/// many channels and epochs.
/// @dev A channel is identified by keccak256(abi.encode(buyer, signer, payee, nonce)) and holds one
/// storage slot (deposit, paid, closesAt): the slot whose number is the channel id itself (see
/// `_channel`). A closed channel stays closed; a new one takes a new nonce, so no voucher or close
/// signature of an old channel ever applies to a new one. What a channel has paid out to its payee
/// lives in `withdrawn`, a second slot written only when money leaves: what the payee can still
/// withdraw is paid - withdrawn, and the buyer's refund at close is deposit - paid, so credited
/// but unwithdrawn money is never refunded.
contract PaymentChannels is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice closesAt of a channel that has been closed for good.
    uint64 public constant CLOSED = type(uint64).max;
    bytes32 public constant VOUCHER_TYPEHASH = CellTypes.VOUCHER_TYPEHASH;
    bytes32 public constant CHANNEL_CLOSE_TYPEHASH = CellTypes.CHANNEL_CLOSE_TYPEHASH;

    /// @notice Identifies a channel; its id is keccak256 of the ABI encoding.
    /// @param buyer funds the channel and gets the refund
    /// @param signer key whose vouchers the channel honours (the buyer's operator key)
    /// @param payee receives every payment
    /// @param nonce lets one buyer open several channels to one payee
    struct ChannelKey {
        address buyer;
        address signer;
        address payee;
        uint64 nonce;
    }

    struct Channel {
        uint96 deposit;
        uint96 paid;
        uint64 closesAt;
    }

    enum SkipReason {
        NothingNew,
        BadSignature
    }

    /// @dev Bytes per voucher in a settlement batch: buyer, signer and payee as uint16 indices into
    /// the batch's address table, uint64 nonce, uint96 cumulativeAmount, bytes32 r, bytes32 vs.
    /// uint96 holds every amount a voucher can pay: ATP's supply cap (10^28 wei) is below 2^96 and a
    /// voucher never pays more than its channel's deposit.
    uint256 private constant VOUCHER_BYTES = 90;
    uint256 private constant ADDRESS_BYTES = 20;
    /// @dev secp256k1n / 2: a signature with a larger s is the malleated twin of a valid one.
    uint256 private constant HALF_CURVE_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 private constant UINT96_MASK = 0xffffffffffffffffffffffff;

    /// @notice Bounds of the challenge window: at least a minute (devnets), at most 30 days (a buyer's
    /// refund must not be locked for longer). Public networks deploy with hours (ignition/).
    uint64 public constant MIN_CHALLENGE_WINDOW = 1 minutes;
    uint64 public constant MAX_CHALLENGE_WINDOW = 30 days;

    IERC20 public immutable token;
    /// @notice Seconds a payee has, after the buyer starts a close, to redeem its latest voucher.
    uint64 public immutable challengeWindow;

    /// @notice The receipt root each submitter anchored per epoch. Only the root is stored (one
    /// slot); its receipt count is in ReceiptsAnchored and its block is that event's block.
    mapping(address submitter => mapping(uint64 epoch => bytes32 receiptRoot)) public anchors;

    /// @notice What each channel has transferred to its payee so far (never above its `paid`).
    /// Bound: one slot per channel that ever paid out, never deleted (like the channel slot).
    mapping(bytes32 channelId => uint256 amount) public withdrawn;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed buyer,
        address indexed payee,
        address signer,
        uint64 nonce,
        uint256 deposit
    );
    event ChannelToppedUp(bytes32 indexed channelId, address indexed funder, uint256 amount, uint256 deposit);
    event ChannelPaid(bytes32 indexed channelId, uint256 amount, uint256 paid);
    event CloseStarted(bytes32 indexed channelId, uint256 closesAt);
    event ChannelClosed(bytes32 indexed channelId, uint256 paid, uint256 refund);
    event VoucherSkipped(bytes32 indexed channelId, SkipReason reason);
    /// @notice The settlement batch whose BatchSettled precedes this event credited `payee`
    /// `amount` in all, withdrawable with `withdrawPaid`. Lets an indexer follow settlements, also
    /// of batches sent through a contract wallet or a multicall, without decoding calldata.
    event PayeeSettled(address indexed payee, uint256 amount);
    /// @notice `amount` of what channels paid left the contract to `payee` in one transfer (by
    /// `withdrawPaid`, `redeem` or `cooperativeClose`). Per payee like PayeeSettled, so an indexer
    /// keeps each payee's credited and withdrawn totals from logs alone; a channel's own figure is
    /// `withdrawn(channelId)`.
    event PaidWithdrawn(address indexed payee, uint256 amount);
    /// @notice One settlement batch of `vouchers` vouchers paying `total`. Bit i of
    /// paidBitmap[i / 256] (least significant first) is set when the batch's voucher i paid; that
    /// voucher raised its channel's `paid` to min(cumulativeAmount, deposit). Channel ids, payees
    /// and amounts are in the calldata (docs/contracts.md, "Settlement batch").
    event BatchSettled(address indexed submitter, uint256 vouchers, uint256 total, uint256[] paidBitmap);
    /// @notice `submitter` anchored `receiptRoot` of `receiptCount` receipts as its `epoch`; the
    /// anchor's block is this event's block (only the root is kept in storage).
    event ReceiptsAnchored(
        address indexed submitter,
        uint64 indexed epoch,
        bytes32 receiptRoot,
        uint64 receiptCount
    );

    error ZeroAmount();
    error ZeroAddress();
    error TokenHasNoCode(address token);
    error ChallengeWindowOutOfBounds(uint64 challengeWindow, uint64 min, uint64 max);
    error CloseExpired(uint64 deadline);
    error ChannelExists(bytes32 channelId);
    error ChannelNotOpen(bytes32 channelId);
    error ChannelClosing(bytes32 channelId);
    error NotClosing(bytes32 channelId);
    error ChallengeWindowOpen(uint256 closesAt);
    error InvalidSignature(address expected);
    error NothingToPay(bytes32 channelId);
    error EpochAlreadyAnchored(address submitter, uint64 epoch);
    error EmptySettlement();
    error MalformedBatch();
    error UnsortedAddresses(uint256 index);
    error AddressIndexOutOfRange(uint256 voucher);
    error NoChannels();
    error MixedPayees(uint256 index, address payee, address expected);
    error NothingToWithdraw(address payee);

    /// @param token_ the ATP token
    /// @param challengeWindow_ seconds between startClose and finalizeClose, within
    /// [MIN_CHALLENGE_WINDOW, MAX_CHALLENGE_WINDOW]
    constructor(IERC20 token_, uint64 challengeWindow_) EIP712("Cell", "1") {
        if (address(token_) == address(0)) revert ZeroAddress();
        if (address(token_).code.length == 0) revert TokenHasNoCode(address(token_));
        if (challengeWindow_ < MIN_CHALLENGE_WINDOW || challengeWindow_ > MAX_CHALLENGE_WINDOW)
            revert ChallengeWindowOutOfBounds(challengeWindow_, MIN_CHALLENGE_WINDOW, MAX_CHALLENGE_WINDOW);
        token = token_;
        challengeWindow = challengeWindow_;
    }

    // ---------------------------------------------------------------- opening

    /// @notice Opens a channel from the caller to `payee` with `amount` ATP (needs an allowance).
    /// @param signer key whose vouchers the channel honours
    /// @param payee receiver of payments
    /// @param nonce any value not used before for this (buyer, signer, payee)
    /// @param amount initial deposit
    /// @return channelId the new channel's id
    function open(
        address signer,
        address payee,
        uint64 nonce,
        uint256 amount
    ) external nonReentrant returns (bytes32) {
        return _open(ChannelKey(msg.sender, signer, payee, nonce), amount);
    }

    /// @notice Opens a channel with an EIP-2612 permit instead of a prior approval.
    /// @param signer key whose vouchers the channel honours
    /// @param payee receiver of payments
    /// @param nonce any value not used before for this (buyer, signer, payee)
    /// @param amount initial deposit
    /// @param deadline permit deadline
    /// @param v permit signature v
    /// @param r permit signature r
    /// @param s permit signature s
    /// @return channelId the new channel's id
    function openWithPermit(
        address signer,
        address payee,
        uint64 nonce,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (bytes32) {
        try
            IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s)
        {} catch {
            // A front-run permit leaves the allowance in place; transferFrom decides.
        }
        return _open(ChannelKey(msg.sender, signer, payee, nonce), amount);
    }

    /// @notice Adds `amount` to an open channel that is not closing. Anyone may fund; refunds go to the buyer.
    /// @param key the channel
    /// @param amount ATP to add
    function topUp(ChannelKey calldata key, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        bytes32 channelId = _channelIdOfCalldata(key);
        Channel storage ch = _channel(channelId);
        if (ch.deposit == 0 || ch.closesAt == CLOSED) revert ChannelNotOpen(channelId);
        if (ch.closesAt != 0) revert ChannelClosing(channelId);
        uint96 deposit = ch.deposit + SafeCast.toUint96(amount);
        ch.deposit = deposit;
        emit ChannelToppedUp(channelId, msg.sender, amount, deposit);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ---------------------------------------------------------------- paying

    /// @notice Pays the payee what a voucher adds to what the channel already paid, without
    /// closing, and transfers it everything the channel has paid and not yet transferred (also
    /// earlier settlement credits). Never pays beyond the deposit. Anyone may submit; money goes to
    /// the payee.
    /// @param key the channel
    /// @param cumulativeAmount the voucher's cumulative amount
    /// @param signature the voucher signature by key.signer (65 bytes or EIP-2098 64 bytes)
    /// @return amount what the voucher added to the channel's `paid`
    function redeem(
        ChannelKey calldata key,
        uint256 cumulativeAmount,
        bytes calldata signature
    ) external nonReentrant returns (uint256 amount) {
        bytes32 channelId = _channelIdOfCalldata(key);
        _requireSignature(voucherDigest(channelId, cumulativeAmount), signature, key.signer);
        amount = _pay(channelId, cumulativeAmount);
        if (amount == 0) revert NothingToPay(channelId);
        _transferWithdrawn(key.payee, _markWithdrawn(channelId));
    }

    /// @notice Transfers to the payee what the channels paid and it has not received yet (paid -
    /// withdrawn of each), in one transfer. Settlements only credit channels; this is how a payee
    /// collects them, as rarely as it likes. Works on open, closing and closed channels. Anyone may
    /// call; the money always goes to the channels' payee.
    /// @param keys channels of one payee (a channel listed twice pays once)
    /// @return amount what was transferred
    function withdrawPaid(ChannelKey[] calldata keys) external nonReentrant returns (uint256 amount) {
        if (keys.length == 0) revert NoChannels();
        address payee = keys[0].payee;
        for (uint256 i = 0; i < keys.length; ++i) {
            if (keys[i].payee != payee) revert MixedPayees(i, keys[i].payee, payee);
            amount += _markWithdrawn(_channelIdOfCalldata(keys[i]));
        }
        if (amount == 0) revert NothingToWithdraw(payee);
        _transferWithdrawn(payee, amount);
    }

    /// @notice Net settlement: pays the latest vouchers of many channels in one transaction. It
    /// moves no tokens: each channel's `paid` rises and the payee withdraws it later with
    /// `withdrawPaid` (pull, not push: no payee's transfer can block a batch, and a payee pays its
    /// token transfer once for many channels and epochs). One PayeeSettled per credited payee
    /// gives its total. A voucher that pays nothing new or
    /// carries a bad signature is skipped with VoucherSkipped, so one bad voucher never blocks a
    /// batch. When `receiptRoot` is not zero it is anchored as the caller's `epoch`. One
    /// BatchSettled event marks which vouchers paid.
    /// @param batch packed vouchers: uint16 n, n addresses (20 bytes each, strictly ascending), then
    /// per voucher uint16 buyer, signer and payee indices into the addresses, uint64 nonce, uint96
    /// cumulativeAmount (signed as the uint256 it widens to) and the EIP-2098 signature (bytes32 r,
    /// bytes32 vs): 90 bytes. Duplicates
    /// of a channel only pay their increase. `encodeSettlementBatch` in offchain/src/chain builds it.
    /// @param epoch the caller's epoch number for the anchor
    /// @param receiptRoot Merkle root of the epoch's receipts (zero: anchor nothing)
    /// @param receiptCount number of receipts under the root
    function settle(
        bytes calldata batch,
        uint64 epoch,
        bytes32 receiptRoot,
        uint64 receiptCount
    ) external nonReentrant {
        (uint256 addressCount, uint256 voucherCount) = _checkBatch(batch);
        if (voucherCount == 0 && receiptRoot == bytes32(0)) revert EmptySettlement();
        if (receiptRoot != bytes32(0)) _anchor(epoch, receiptRoot, receiptCount);

        // What each address of the table earned, indexed like the table: netting is O(1) per voucher.
        uint256[] memory earned = new uint256[](addressCount);
        uint256[] memory paidBitmap = new uint256[]((voucherCount + 255) >> 8);
        uint256 total = _settleVouchers(batch, addressCount, voucherCount, earned, paidBitmap);
        emit BatchSettled(msg.sender, voucherCount, total, paidBitmap);
        _emitPayeeTotals(_tableOffset(batch), earned);
    }

    // ---------------------------------------------------------------- closing

    /// @notice Starts the challenge window of the caller's channel; the payee may still redeem in it.
    /// @param signer the channel's voucher key
    /// @param payee the channel's payee
    /// @param nonce the channel's nonce
    function startClose(address signer, address payee, uint64 nonce) external {
        bytes32 channelId = channelIdOf(ChannelKey(msg.sender, signer, payee, nonce));
        Channel storage ch = _channel(channelId);
        if (ch.deposit == 0 || ch.closesAt == CLOSED) revert ChannelNotOpen(channelId);
        if (ch.closesAt != 0) revert ChannelClosing(channelId);
        uint64 closesAt = uint64(block.timestamp) + challengeWindow;
        ch.closesAt = closesAt;
        emit CloseStarted(channelId, closesAt);
    }

    /// @notice After the challenge window, closes the channel and refunds the rest to the buyer.
    /// Anyone may call.
    /// @param key the channel
    function finalizeClose(ChannelKey calldata key) external nonReentrant {
        bytes32 channelId = _channelIdOfCalldata(key);
        Channel storage ch = _channel(channelId);
        uint64 closesAt = ch.closesAt;
        if (closesAt == 0) revert NotClosing(channelId);
        if (closesAt == CLOSED) revert ChannelNotOpen(channelId);
        if (block.timestamp < closesAt) revert ChallengeWindowOpen(closesAt);
        _closeAndRefund(channelId, key.buyer);
    }

    /// @notice Closes a channel at once with a final amount signed by both the voucher key and the
    /// payee (ChannelClose). Pays the payee up to the deposit (with what earlier settlements credited
    /// and it has not withdrawn), refunds the rest. Anyone may submit,
    /// until the deadline both signed: a close agreed long ago cannot be held back and used later.
    /// @param key the channel
    /// @param finalAmount the agreed cumulative amount
    /// @param deadline last second (block timestamp) at which the close may be submitted
    /// @param signerSignature ChannelClose signature by key.signer
    /// @param payeeSignature ChannelClose signature by key.payee
    function cooperativeClose(
        ChannelKey calldata key,
        uint256 finalAmount,
        uint64 deadline,
        bytes calldata signerSignature,
        bytes calldata payeeSignature
    ) external nonReentrant {
        if (block.timestamp > deadline) revert CloseExpired(deadline);
        bytes32 channelId = _channelIdOfCalldata(key);
        Channel storage ch = _channel(channelId);
        if (ch.deposit == 0 || ch.closesAt == CLOSED) revert ChannelNotOpen(channelId);
        bytes32 digest = channelCloseDigest(channelId, finalAmount, deadline);
        _requireSignature(digest, signerSignature, key.signer);
        _requireSignature(digest, payeeSignature, key.payee);
        _pay(channelId, finalAmount);
        _closeAndRefund(channelId, key.buyer);
        uint256 amount = _markWithdrawn(channelId);
        if (amount > 0) _transferWithdrawn(key.payee, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The id of a channel.
    /// @param key the channel's key
    function channelIdOf(ChannelKey memory key) public pure returns (bytes32 channelId) {
        assembly ("memory-safe") {
            channelId := keccak256(key, 0x80)
        }
    }

    /// @notice A channel's state; all zero for an id that no channel has.
    /// @param channelId the channel
    /// @return deposit what the buyer escrowed (after a close: what was paid)
    /// @return paid what the channel has paid so far (`withdrawable` of it not yet transferred)
    /// @return closesAt end of the challenge window, 0 while open, CLOSED once closed
    function channels(
        bytes32 channelId
    ) external view returns (uint96 deposit, uint96 paid, uint64 closesAt) {
        Channel storage ch = _channel(channelId);
        return (ch.deposit, ch.paid, ch.closesAt);
    }

    /// @notice What the channel can still pay.
    /// @param channelId the channel
    function remaining(bytes32 channelId) external view returns (uint256) {
        Channel storage ch = _channel(channelId);
        return ch.deposit - ch.paid;
    }

    /// @notice What the channel has paid and not yet transferred to its payee (`withdrawPaid`).
    /// @param channelId the channel
    function withdrawable(bytes32 channelId) external view returns (uint256) {
        return _channel(channelId).paid - withdrawn[channelId];
    }

    /// @notice EIP-712 digest of a voucher under this contract's domain.
    /// @param channelId the channel
    /// @param cumulativeAmount the cumulative amount
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.voucherHash(channelId, cumulativeAmount));
    }

    /// @notice EIP-712 digest of a ChannelClose under this contract's domain.
    /// @param channelId the channel
    /// @param finalAmount the agreed cumulative amount
    /// @param deadline last second at which the close may be submitted
    function channelCloseDigest(
        bytes32 channelId,
        uint256 finalAmount,
        uint64 deadline
    ) public view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.channelCloseHash(channelId, finalAmount, deadline));
    }

    /// @notice Leaf of a receipt in an anchored tree: keccak256(keccak256(abi.encode(structHash))),
    /// the leaf encoding of OpenZeppelin's StandardMerkleTree for a single bytes32 value.
    /// @param receipt the receipt
    function receiptLeaf(CellTypes.Receipt calldata receipt) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(CellTypes.hash(receipt)))));
    }

    /// @notice True when `receipt` is under the root `submitter` anchored for `epoch`.
    /// @param submitter who anchored the root
    /// @param epoch the submitter's epoch
    /// @param receipt the receipt
    /// @param proof sibling hashes from the leaf up (sorted-pair hashing)
    function verifyReceiptInclusion(
        address submitter,
        uint64 epoch,
        CellTypes.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = anchors[submitter][epoch];
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, receiptLeaf(receipt));
    }

    // ---------------------------------------------------------------- internals

    function _open(ChannelKey memory key, uint256 amount) private returns (bytes32 channelId) {
        if (amount == 0) revert ZeroAmount();
        if (key.payee == address(0) || key.signer == address(0)) revert ZeroAddress();
        channelId = channelIdOf(key);
        Channel storage ch = _channel(channelId);
        if (ch.deposit != 0 || ch.closesAt != 0) revert ChannelExists(channelId);
        ch.deposit = SafeCast.toUint96(amount);
        emit ChannelOpened(channelId, key.buyer, key.payee, key.signer, key.nonce, amount);
        token.safeTransferFrom(key.buyer, address(this), amount);
    }

    /// @dev Raises `paid` to min(cumulativeAmount, deposit); returns the increase.
    function _pay(bytes32 channelId, uint256 cumulativeAmount) private returns (uint256 amount) {
        Channel storage ch = _channel(channelId);
        uint96 deposit = ch.deposit;
        uint96 paid = ch.paid;
        uint96 capped = cumulativeAmount < deposit ? uint96(cumulativeAmount) : deposit;
        if (capped <= paid) return 0;
        amount = capped - paid;
        ch.paid = capped;
        emit ChannelPaid(channelId, amount, capped);
    }

    /// @dev Validates the batch layout (whole vouchers after an ascending address table, so no
    /// address appears twice and each payee is paid once) and returns its sizes.
    function _checkBatch(
        bytes calldata batch
    ) private pure returns (uint256 addressCount, uint256 voucherCount) {
        if (batch.length == 0) return (0, 0);
        if (batch.length < 2) revert MalformedBatch();
        addressCount = uint16(bytes2(batch[:2]));
        uint256 tableEnd = 2 + addressCount * ADDRESS_BYTES;
        if (batch.length < tableEnd || (batch.length - tableEnd) % VOUCHER_BYTES != 0)
            revert MalformedBatch();
        voucherCount = (batch.length - tableEnd) / VOUCHER_BYTES;
        bytes4 unsorted = UnsortedAddresses.selector;
        assembly ("memory-safe") {
            let table := add(batch.offset, 2)
            let previous := shr(96, calldataload(table))
            for {
                let j := 1
            } lt(j, addressCount) {
                j := add(j, 1)
            } {
                let current := shr(96, calldataload(add(table, mul(j, ADDRESS_BYTES))))
                if iszero(gt(current, previous)) {
                    mstore(0x00, unsorted)
                    mstore(0x04, j)
                    revert(0x00, 0x24)
                }
                previous := current
            }
        }
    }

    /// @dev Emits PayeeSettled for every address of the table with a nonzero `earned` entry, in
    /// assembly for the same reason as the voucher loop (the table is as long as 3 addresses per
    /// voucher).
    function _emitPayeeTotals(uint256 table, uint256[] memory earned) private {
        bytes32 payeeSettled = PayeeSettled.selector;
        assembly ("memory-safe") {
            let count := mload(earned)
            for {
                let j := 0
            } lt(j, count) {
                j := add(j, 1)
            } {
                let amount := mload(add(earned, shl(5, add(j, 1))))
                if amount {
                    mstore(0x00, amount)
                    log2(0x00, 0x20, payeeSettled, shr(96, calldataload(add(table, mul(j, ADDRESS_BYTES)))))
                }
            }
        }
    }

    /// @dev The voucher loop of `settle`, in assembly because it runs once per voucher: written with
    /// Solidity helpers it spent ~1.4k gas per voucher on calls, stack shuffling and bounds checks
    /// that the layout check of `_checkBatch` already makes unnecessary. Per voucher it rebuilds
    /// the channel id from the table, reads the channel slot, skips with VoucherSkipped when the
    /// voucher pays nothing new (NothingNew) or is not signed by the channel's signer with a low-s
    /// signature (BadSignature), and otherwise raises `paid` to min(cumulativeAmount, deposit) and
    /// adds the increase to the payee's `earned` entry and to the returned total, and the voucher's
    /// bit to `paidBitmap`.
    /// Bounds: indices are checked against the table, `capped <= deposit < 2^96` so the `paid`
    /// field cannot overflow, and sums of increases stay below the escrowed total (< 2^96 each).
    function _settleVouchers(
        bytes calldata batch,
        uint256 addressCount,
        uint256 voucherCount,
        uint256[] memory earned,
        uint256[] memory paidBitmap
    ) private returns (uint256 total) {
        uint256 buf;
        {
            bytes32 domainSeparator = _domainSeparatorV4();
            bytes32 voucherTypehash = VOUCHER_TYPEHASH;
            bytes32 skippedTopic = VoucherSkipped.selector;
            bytes4 outOfRange = AddressIndexOutOfRange.selector;
            assembly ("memory-safe") {
                // Scratch above the free memory pointer (never allocated, the loop only writes here):
                // 0x000 Voucher struct preimage: typehash, channelId, cumulativeAmount
                // 0x060 digest preimage: 0x1901, domain separator, struct hash (66 bytes)
                // 0x0c0 ecrecover input: digest, v, r, s
                // 0x140 channel id preimage: abi.encode(buyer, signer, payee, nonce)
                // 0x1c0 loop constants: table offset, address count, earned, paidBitmap, topic, error
                buf := mload(0x40)
                mstore(buf, voucherTypehash)
                mstore(add(buf, 0x60), hex"1901")
                mstore(add(buf, 0x62), domainSeparator)
                mstore(add(buf, 0x1c0), add(batch.offset, 2))
                mstore(add(buf, 0x1e0), addressCount)
                mstore(add(buf, 0x200), earned)
                mstore(add(buf, 0x220), paidBitmap)
                mstore(add(buf, 0x240), skippedTopic)
                mstore(add(buf, 0x260), outOfRange)
            }
        }
        assembly ("memory-safe") {
            let cursor := add(add(batch.offset, 2), mul(addressCount, ADDRESS_BYTES))
            for {
                let i := 0
            } lt(i, voucherCount) {
                i := add(i, 1)
                cursor := add(cursor, VOUCHER_BYTES)
            } {
                // Head word: buyer, signer, payee indices (uint16 each), nonce (uint64), ...
                let head := calldataload(cursor)
                let payeeIndex := and(shr(208, head), 0xffff)
                {
                    let table := mload(add(buf, 0x1c0))
                    let count := mload(add(buf, 0x1e0))
                    let buyerIndex := shr(240, head)
                    let signerIndex := and(shr(224, head), 0xffff)
                    if iszero(
                        and(and(lt(buyerIndex, count), lt(signerIndex, count)), lt(payeeIndex, count))
                    ) {
                        mstore(0x00, mload(add(buf, 0x260)))
                        mstore(0x04, i)
                        revert(0x00, 0x24)
                    }
                    mstore(add(buf, 0x140), shr(96, calldataload(add(table, mul(buyerIndex, ADDRESS_BYTES)))))
                    mstore(
                        add(buf, 0x160),
                        shr(96, calldataload(add(table, mul(signerIndex, ADDRESS_BYTES))))
                    )
                    mstore(add(buf, 0x180), shr(96, calldataload(add(table, mul(payeeIndex, ADDRESS_BYTES)))))
                    mstore(add(buf, 0x1a0), and(shr(144, head), 0xffffffffffffffff))
                }
                let channelId := keccak256(add(buf, 0x140), 0x80)
                // The channel's slot (`_channel`): uint96 deposit, uint96 paid, uint64 closesAt.
                let packed := sload(channelId)
                let capped := shr(160, calldataload(add(cursor, 14)))
                // The voucher's amount, widened to uint256, in the Voucher struct preimage.
                mstore(add(buf, 0x40), capped)
                if lt(and(packed, UINT96_MASK), capped) {
                    capped := and(packed, UINT96_MASK)
                }
                let paid := and(shr(96, packed), UINT96_MASK)
                switch gt(capped, paid)
                case 0 {
                    // emit VoucherSkipped(channelId, SkipReason.NothingNew)
                    mstore(0x00, 0)
                    log2(0x00, 0x20, mload(add(buf, 0x240)), channelId)
                }
                default {
                    mstore(add(buf, 0x20), channelId)
                    mstore(add(buf, 0x82), keccak256(buf, 0x60))
                    mstore(add(buf, 0xc0), keccak256(add(buf, 0x60), 0x42))
                    let vs := calldataload(add(cursor, 58))
                    let s := and(vs, sub(shl(255, 1), 1))
                    mstore(add(buf, 0xe0), add(shr(255, vs), 27))
                    mstore(add(buf, 0x100), calldataload(add(cursor, 26)))
                    mstore(add(buf, 0x120), s)
                    // ecrecover returns no data for an invalid signature: clear the output word first.
                    mstore(0x00, 0)
                    if iszero(gt(s, HALF_CURVE_ORDER)) {
                        pop(staticcall(gas(), 0x01, add(buf, 0xc0), 0x80, 0x00, 0x20))
                    }
                    let recovered := mload(0x00)
                    switch and(eq(recovered, mload(add(buf, 0x160))), iszero(iszero(recovered)))
                    case 0 {
                        // emit VoucherSkipped(channelId, SkipReason.BadSignature)
                        mstore(0x00, 1)
                        log2(0x00, 0x20, mload(add(buf, 0x240)), channelId)
                    }
                    default {
                        sstore(channelId, or(and(packed, not(shl(96, UINT96_MASK))), shl(96, capped)))
                        let entry := add(mload(add(buf, 0x200)), shl(5, add(payeeIndex, 1)))
                        mstore(entry, add(mload(entry), sub(capped, paid)))
                        total := add(total, sub(capped, paid))
                        let word := add(mload(add(buf, 0x220)), shl(5, add(shr(8, i), 1)))
                        mstore(word, or(mload(word), shl(and(i, 0xff), 1)))
                    }
                }
            }
        }
    }

    /// @dev Calldata offset of the batch's address table.
    function _tableOffset(bytes calldata batch) private pure returns (uint256 offset) {
        assembly ("memory-safe") {
            offset := add(batch.offset, 2)
        }
    }

    /// @dev The address at `index` of the table at calldata offset `table` (20 bytes each).
    function _addressAt(uint256 table, uint256 index) private pure returns (address account) {
        assembly ("memory-safe") {
            account := shr(96, calldataload(add(table, mul(index, 20))))
        }
    }

    /// @dev A channel's storage: the slot numbered by its id, with no mapping hash on top (saves a
    /// keccak per voucher in `settle`). No other storage can alias it: an id is keccak256 of a
    /// 128-byte preimage, while every other slot of this contract is a small integer or a Solidity
    /// mapping slot, keccak256 of a 64-byte preimage; a clash would be a keccak256 collision.
    /// Every function that writes a channel derives the id from its ChannelKey, so no caller can
    /// point a write at a slot of its choice; only the views take a raw id.
    function _channel(bytes32 channelId) private pure returns (Channel storage ch) {
        assembly ("memory-safe") {
            ch.slot := channelId
        }
    }

    /// @dev channelIdOf without copying the key into allocated memory (scratch at the free pointer).
    function _channelIdOfCalldata(ChannelKey calldata key) private pure returns (bytes32 channelId) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, key, 0x80)
            channelId := keccak256(ptr, 0x80)
        }
    }

    function _anchor(uint64 epoch, bytes32 receiptRoot, uint64 receiptCount) private {
        mapping(uint64 => bytes32) storage roots = anchors[msg.sender];
        if (roots[epoch] != bytes32(0)) revert EpochAlreadyAnchored(msg.sender, epoch);
        roots[epoch] = receiptRoot;
        emit ReceiptsAnchored(msg.sender, epoch, receiptRoot, receiptCount);
    }

    /// @dev Records that the channel's payee receives all the channel paid and it has not received
    /// yet, and returns that amount; the caller transfers it with `_transferWithdrawn` after its
    /// other effects.
    function _markWithdrawn(bytes32 channelId) private returns (uint256 amount) {
        uint256 paid = _channel(channelId).paid;
        uint256 before = withdrawn[channelId];
        if (paid == before) return 0;
        amount = paid - before;
        withdrawn[channelId] = paid;
    }

    function _transferWithdrawn(address payee, uint256 amount) private {
        emit PaidWithdrawn(payee, amount);
        token.safeTransfer(payee, amount);
    }

    function _closeAndRefund(bytes32 channelId, address buyer) private {
        Channel storage ch = _channel(channelId);
        uint96 paid = ch.paid;
        uint256 refund = ch.deposit - paid;
        ch.deposit = paid;
        ch.closesAt = CLOSED;
        emit ChannelClosed(channelId, paid, refund);
        if (refund > 0) token.safeTransfer(buyer, refund);
    }

    function _requireSignature(bytes32 digest, bytes calldata signature, address expected) private pure {
        address recovered = CellTypes.signerOf(digest, signature);
        if (recovered == address(0) || recovered != expected) revert InvalidSignature(expected);
    }
}
