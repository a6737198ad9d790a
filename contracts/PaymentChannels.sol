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
/// vouchers signed by the buyer's voucher key, plus net settlement: one transaction pays the
/// latest vouchers of many channels, moves each payee's balance once and anchors the Merkle
/// root of an epoch's receipts.
/// @dev A channel is identified by keccak256(abi.encode(buyer, signer, payee, nonce)) and holds one
/// storage slot (deposit, paid, closesAt). A closed channel stays closed; a new one takes a new
/// nonce, so no voucher or close signature of an old channel ever applies to a new one.
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

    /// @notice A voucher in a settlement batch; (r, vs) is an EIP-2098 compact signature.
    struct SignedVoucher {
        ChannelKey key;
        uint256 cumulativeAmount;
        bytes32 r;
        bytes32 vs;
    }

    struct Anchor {
        bytes32 receiptRoot;
        uint64 receiptCount;
        uint64 blockNumber;
    }

    enum SkipReason {
        NothingNew,
        BadSignature
    }

    IERC20 public immutable token;
    /// @notice Seconds a payee has, after the buyer starts a close, to redeem its latest voucher.
    uint64 public immutable challengeWindow;

    mapping(bytes32 channelId => Channel) public channels;
    mapping(address submitter => mapping(uint64 epoch => Anchor)) public anchors;

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
    /// @notice One settlement batch: every channel it paid, with the channel's new cumulative paid.
    event BatchSettled(
        address indexed submitter,
        uint256 vouchers,
        uint256 total,
        bytes32[] channelIds,
        uint256[] paidTotals
    );
    event ReceiptsAnchored(
        address indexed submitter,
        uint64 indexed epoch,
        bytes32 receiptRoot,
        uint64 receiptCount
    );

    error ZeroAmount();
    error ZeroAddress();
    error ChannelExists(bytes32 channelId);
    error ChannelNotOpen(bytes32 channelId);
    error ChannelClosing(bytes32 channelId);
    error NotClosing(bytes32 channelId);
    error ChallengeWindowOpen(uint256 closesAt);
    error InvalidSignature(address expected);
    error NothingToPay(bytes32 channelId);
    error EpochAlreadyAnchored(address submitter, uint64 epoch);
    error EmptySettlement();

    /// @param token_ the ATP token
    /// @param challengeWindow_ seconds between startClose and finalizeClose
    constructor(IERC20 token_, uint64 challengeWindow_) EIP712("Cell", "1") {
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
    /// @param channelId the channel
    /// @param amount ATP to add
    function topUp(bytes32 channelId, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Channel storage ch = channels[channelId];
        if (ch.deposit == 0 || ch.closesAt == CLOSED) revert ChannelNotOpen(channelId);
        if (ch.closesAt != 0) revert ChannelClosing(channelId);
        uint96 deposit = ch.deposit + SafeCast.toUint96(amount);
        ch.deposit = deposit;
        emit ChannelToppedUp(channelId, msg.sender, amount, deposit);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ---------------------------------------------------------------- paying

    /// @notice Pays the payee what a voucher adds to what the channel already paid, without
    /// closing. Never pays beyond the deposit. Anyone may submit; money goes to the payee.
    /// @param key the channel
    /// @param cumulativeAmount the voucher's cumulative amount
    /// @param signature the voucher signature by key.signer (65 bytes or EIP-2098 64 bytes)
    /// @return amount what was paid now
    function redeem(
        ChannelKey calldata key,
        uint256 cumulativeAmount,
        bytes calldata signature
    ) external nonReentrant returns (uint256 amount) {
        bytes32 channelId = _channelIdOfCalldata(key);
        _requireSignature(voucherDigest(channelId, cumulativeAmount), signature, key.signer);
        amount = _pay(channelId, cumulativeAmount);
        if (amount == 0) revert NothingToPay(channelId);
        token.safeTransfer(key.payee, amount);
    }

    /// @notice Net settlement: pays the latest vouchers of many channels in one transaction and
    /// transfers to each payee once, the sum of what it earned. A voucher that pays nothing new or
    /// carries a bad signature is skipped with VoucherSkipped, so one bad voucher never blocks a
    /// batch. When `receiptRoot` is not zero it is anchored as the caller's `epoch`. The paid
    /// channels and their new cumulative totals are listed in one BatchSettled event.
    /// @param vouchers latest voucher per channel (duplicates only pay their increase)
    /// @param epoch the caller's epoch number for the anchor
    /// @param receiptRoot Merkle root of the epoch's receipts (zero: anchor nothing)
    /// @param receiptCount number of receipts under the root
    function settle(
        SignedVoucher[] calldata vouchers,
        uint64 epoch,
        bytes32 receiptRoot,
        uint64 receiptCount
    ) external nonReentrant {
        uint256 count = vouchers.length;
        if (count == 0 && receiptRoot == bytes32(0)) revert EmptySettlement();
        if (receiptRoot != bytes32(0)) _anchor(epoch, receiptRoot, receiptCount);

        bytes32[] memory channelIds = new bytes32[](count);
        uint256[] memory paidTotals = new uint256[](count);
        address[] memory payees = new address[](count);
        uint256 paidCount;
        uint256 payeeCount;
        uint256 total;
        for (uint256 i = 0; i < count; ++i) {
            SignedVoucher calldata v = vouchers[i];
            (bytes32 channelId, uint256 amount, uint256 paid) = _settleOne(v);
            if (amount == 0) continue;
            channelIds[paidCount] = channelId;
            paidTotals[paidCount] = paid;
            ++paidCount;
            total += amount;
            address payee = v.key.payee;
            if (_addToPayee(payee, amount)) payees[payeeCount++] = payee;
        }
        assembly ("memory-safe") {
            mstore(channelIds, paidCount)
            mstore(paidTotals, paidCount)
        }
        emit BatchSettled(msg.sender, count, total, channelIds, paidTotals);
        for (uint256 i = 0; i < payeeCount; ++i) {
            token.safeTransfer(payees[i], _takePayeeSum(payees[i]));
        }
    }

    // ---------------------------------------------------------------- closing

    /// @notice Starts the challenge window of the caller's channel; the payee may still redeem in it.
    /// @param signer the channel's voucher key
    /// @param payee the channel's payee
    /// @param nonce the channel's nonce
    function startClose(address signer, address payee, uint64 nonce) external {
        bytes32 channelId = channelIdOf(ChannelKey(msg.sender, signer, payee, nonce));
        Channel storage ch = channels[channelId];
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
        Channel storage ch = channels[channelId];
        uint64 closesAt = ch.closesAt;
        if (closesAt == 0) revert NotClosing(channelId);
        if (closesAt == CLOSED) revert ChannelNotOpen(channelId);
        if (block.timestamp < closesAt) revert ChallengeWindowOpen(closesAt);
        _closeAndRefund(channelId, key.buyer);
    }

    /// @notice Closes a channel at once with a final amount signed by both the voucher key and the
    /// payee (ChannelClose). Pays the payee up to the deposit, refunds the rest. Anyone may submit.
    /// @param key the channel
    /// @param finalAmount the agreed cumulative amount
    /// @param signerSignature ChannelClose signature by key.signer
    /// @param payeeSignature ChannelClose signature by key.payee
    function cooperativeClose(
        ChannelKey calldata key,
        uint256 finalAmount,
        bytes calldata signerSignature,
        bytes calldata payeeSignature
    ) external nonReentrant {
        bytes32 channelId = _channelIdOfCalldata(key);
        if (channels[channelId].deposit == 0 || channels[channelId].closesAt == CLOSED) {
            revert ChannelNotOpen(channelId);
        }
        bytes32 digest = channelCloseDigest(channelId, finalAmount);
        _requireSignature(digest, signerSignature, key.signer);
        _requireSignature(digest, payeeSignature, key.payee);
        uint256 amount = _pay(channelId, finalAmount);
        _closeAndRefund(channelId, key.buyer);
        if (amount > 0) token.safeTransfer(key.payee, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The id of a channel.
    /// @param key the channel's key
    function channelIdOf(ChannelKey memory key) public pure returns (bytes32 channelId) {
        assembly ("memory-safe") {
            channelId := keccak256(key, 0x80)
        }
    }

    /// @notice What the channel can still pay.
    /// @param channelId the channel
    function remaining(bytes32 channelId) external view returns (uint256) {
        Channel storage ch = channels[channelId];
        return ch.deposit - ch.paid;
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
    function channelCloseDigest(bytes32 channelId, uint256 finalAmount) public view returns (bytes32) {
        return _hashTypedDataV4(CellTypes.channelCloseHash(channelId, finalAmount));
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
        bytes32 root = anchors[submitter][epoch].receiptRoot;
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, receiptLeaf(receipt));
    }

    // ---------------------------------------------------------------- internals

    function _open(ChannelKey memory key, uint256 amount) private returns (bytes32 channelId) {
        if (amount == 0) revert ZeroAmount();
        if (key.payee == address(0) || key.signer == address(0)) revert ZeroAddress();
        channelId = channelIdOf(key);
        Channel storage ch = channels[channelId];
        if (ch.deposit != 0 || ch.closesAt != 0) revert ChannelExists(channelId);
        ch.deposit = SafeCast.toUint96(amount);
        emit ChannelOpened(channelId, key.buyer, key.payee, key.signer, key.nonce, amount);
        token.safeTransferFrom(key.buyer, address(this), amount);
    }

    /// @dev Raises `paid` to min(cumulativeAmount, deposit); returns the increase.
    function _pay(bytes32 channelId, uint256 cumulativeAmount) private returns (uint256 amount) {
        Channel storage ch = channels[channelId];
        uint96 deposit = ch.deposit;
        uint96 paid = ch.paid;
        uint96 capped = cumulativeAmount < deposit ? uint96(cumulativeAmount) : deposit;
        if (capped <= paid) return 0;
        amount = capped - paid;
        ch.paid = capped;
        emit ChannelPaid(channelId, amount, capped);
    }

    /// @dev Checks one batch voucher and raises the channel's `paid`; amount 0 means skipped.
    function _settleOne(
        SignedVoucher calldata v
    ) private returns (bytes32 channelId, uint256 amount, uint256 capped) {
        channelId = _channelIdOfCalldata(v.key);
        Channel storage ch = channels[channelId];
        uint256 deposit = ch.deposit;
        uint256 paid = ch.paid;
        uint256 cumulativeAmount = v.cumulativeAmount;
        capped = cumulativeAmount < deposit ? cumulativeAmount : deposit;
        if (capped <= paid) {
            emit VoucherSkipped(channelId, SkipReason.NothingNew);
            return (channelId, 0, paid);
        }
        bytes32 digest = voucherDigest(channelId, cumulativeAmount);
        if (_recoverCompact(digest, v.r, v.vs) != v.key.signer) {
            emit VoucherSkipped(channelId, SkipReason.BadSignature);
            return (channelId, 0, paid);
        }
        ch.paid = uint96(capped);
        amount = capped - paid;
    }

    /// @dev ecrecover of an EIP-2098 signature; zero for a malleable (high-s) or invalid one.
    function _recoverCompact(bytes32 digest, bytes32 r, bytes32 vs) private pure returns (address) {
        uint256 s = uint256(vs) & ((1 << 255) - 1);
        if (s > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) return address(0);
        return ecrecover(digest, uint8((uint256(vs) >> 255) + 27), r, bytes32(s));
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
        Anchor storage a = anchors[msg.sender][epoch];
        if (a.receiptRoot != bytes32(0)) revert EpochAlreadyAnchored(msg.sender, epoch);
        a.receiptRoot = receiptRoot;
        a.receiptCount = receiptCount;
        a.blockNumber = uint64(block.number);
        emit ReceiptsAnchored(msg.sender, epoch, receiptRoot, receiptCount);
    }

    function _closeAndRefund(bytes32 channelId, address buyer) private {
        Channel storage ch = channels[channelId];
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

    /// @dev Adds to the payee's running sum for this batch; true on its first credit.
    function _addToPayee(address payee, uint256 amount) private returns (bool first) {
        bytes32 slot = _payeeSlot(payee);
        uint256 sum;
        assembly ("memory-safe") {
            sum := tload(slot)
            tstore(slot, add(sum, amount))
        }
        return sum == 0;
    }

    function _takePayeeSum(address payee) private returns (uint256 sum) {
        bytes32 slot = _payeeSlot(payee);
        assembly ("memory-safe") {
            sum := tload(slot)
            tstore(slot, 0)
        }
    }

    /// @dev The payee's address itself is the transient slot: no other transient slot of this
    /// contract (the reentrancy guard's is a keccak256 value) can be below 2^160.
    function _payeeSlot(address payee) private pure returns (bytes32) {
        return bytes32(uint256(uint160(payee)));
    }
}
