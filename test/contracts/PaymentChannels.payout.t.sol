// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PaymentChannels} from "../../contracts/PaymentChannels.sol";

/// Cheatcodes of the Hardhat 3 Solidity test runner (the forge-std Vm subset used here).
interface Vm {
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function prank(address sender) external;
}

/// An ERC-20 whose `transfer` answers as a token of `mode` does: true, false, nothing, a revert, or
/// a call back into `withdrawPaid` before it moves anything. ATP always answers true; these are the
/// tokens a payout must also judge the way SafeERC20.safeTransfer does.
contract PayoutToken {
    enum Mode {
        ReturnsTrue,
        ReturnsFalse,
        ReturnsNothing,
        Reverts,
        Reenters
    }

    Mode public mode;
    mapping(address account => uint256 balance) public balanceOf;
    PaymentChannels.ChannelKey[] private reentryKeys;

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function setReentry(PaymentChannels.ChannelKey calldata key) external {
        reentryKeys.push(key);
    }

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        return true;
    }

    function transfer(address to, uint256 amount) external {
        Mode current = mode;
        if (current == Mode.Reverts) revert("transfer refused");
        if (current == Mode.Reenters) PaymentChannels(msg.sender).withdrawPaid(reentryKeys);
        if (current == Mode.ReturnsFalse) _return(false);
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        if (current == Mode.ReturnsTrue) _return(true);
    }

    function _return(bool value) private pure {
        assembly ("memory-safe") {
            mstore(0x00, value)
            return(0x00, 0x20)
        }
    }
}

/// `settle` only credits channels, so a payee whose transfer fails cannot block a batch; the payee's
/// `withdrawPaid` must accept exactly what SafeERC20.safeTransfer accepts (no revert, and true or no
/// return data), undo the withdrawal otherwise, pass a token's revert on, and refuse reentry.
contract PaymentChannelsPayoutTest {
    Vm private constant VM = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 private constant SIGNER_KEY = 0xA11CE;
    address private constant BUYER = address(0xB0B);
    address private constant PAYEE = address(0xCAFE);
    uint96 private constant DEPOSIT = 1e20;
    uint96 private constant AMOUNT = 7e18;

    PayoutToken private token;
    PaymentChannels private channels;
    bytes32 private channelId;
    bytes private batch;

    function setUp() public {
        token = new PayoutToken();
        channels = new PaymentChannels(IERC20(address(token)), 1 hours);
        token.mint(BUYER, DEPOSIT);
        address signer = VM.addr(SIGNER_KEY);
        VM.prank(BUYER);
        channelId = channels.open(signer, PAYEE, 0, DEPOSIT);
        batch = _batch(signer);
    }

    function test_settlesWhileThePayeesTransferWouldFail() public {
        token.setMode(PayoutToken.Mode.Reverts);
        channels.settle(batch, 0, bytes32(0), 0);
        _checkCredited(AMOUNT);
        _checkPaidOut(0);
    }

    function test_paysWhenTheTokenReturnsTrue() public {
        channels.settle(batch, 0, bytes32(0), 0);
        token.setMode(PayoutToken.Mode.ReturnsTrue);
        channels.withdrawPaid(_keys());
        _checkPaidOut(AMOUNT);
    }

    function test_paysWhenTheTokenReturnsNothing() public {
        channels.settle(batch, 0, bytes32(0), 0);
        token.setMode(PayoutToken.Mode.ReturnsNothing);
        channels.withdrawPaid(_keys());
        _checkPaidOut(AMOUNT);
    }

    function test_undoesTheWithdrawalWhenTheTokenReturnsFalse() public {
        token.setMode(PayoutToken.Mode.ReturnsFalse);
        _checkRefused(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(token)));
    }

    function test_undoesTheWithdrawalAndPassesOnTheRevertWhenTheTokenReverts() public {
        token.setMode(PayoutToken.Mode.Reverts);
        _checkRefused(abi.encodeWithSignature("Error(string)", "transfer refused"));
    }

    function test_refusesAWithdrawalThatReentersDuringItsTransfer() public {
        token.setReentry(_keys()[0]);
        token.setMode(PayoutToken.Mode.Reenters);
        _checkRefused(abi.encodeWithSignature("ReentrancyGuardReentrantCall()"));
    }

    function _checkRefused(bytes memory expected) private {
        channels.settle(batch, 0, bytes32(0), 0);
        try channels.withdrawPaid(_keys()) {
            revert("withdrawPaid accepted a failed transfer");
        } catch (bytes memory reason) {
            _check(keccak256(reason) == keccak256(expected), "withdrawPaid reverted with another reason");
        }
        _checkCredited(AMOUNT);
        _checkPaidOut(0);
    }

    function _checkCredited(uint256 amount) private view {
        (, uint96 paid, ) = channels.channels(channelId);
        _check(paid == amount, "channel paid differs");
    }

    function _checkPaidOut(uint256 amount) private view {
        _check(channels.withdrawn(channelId) == amount, "channel withdrawn differs");
        _check(token.balanceOf(PAYEE) == amount, "payee balance differs");
        _check(token.balanceOf(address(channels)) == DEPOSIT - amount, "escrow differs");
    }

    function _keys() private pure returns (PaymentChannels.ChannelKey[] memory keys) {
        keys = new PaymentChannels.ChannelKey[](1);
        keys[0] = PaymentChannels.ChannelKey(BUYER, VM.addr(SIGNER_KEY), PAYEE, 0);
    }

    /// One voucher of AMOUNT on the channel, in the packed layout `settle` takes.
    function _batch(address signer) private view returns (bytes memory) {
        address[3] memory table = _sorted([BUYER, signer, PAYEE]);
        (uint8 v, bytes32 r, bytes32 s) = VM.sign(SIGNER_KEY, channels.voucherDigest(channelId, AMOUNT));
        bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
        return
            abi.encodePacked(
                uint16(3),
                table[0],
                table[1],
                table[2],
                _indexOf(table, BUYER),
                _indexOf(table, signer),
                _indexOf(table, PAYEE),
                uint64(0),
                AMOUNT,
                r,
                vs
            );
    }

    function _sorted(address[3] memory a) private pure returns (address[3] memory) {
        for (uint256 i = 0; i < 3; ++i) {
            for (uint256 j = i + 1; j < 3; ++j) {
                if (a[j] < a[i]) (a[i], a[j]) = (a[j], a[i]);
            }
        }
        return a;
    }

    function _indexOf(address[3] memory table, address account) private pure returns (uint16) {
        for (uint16 i = 0; i < 3; ++i) if (table[i] == account) return i;
        revert("not in the table");
    }

    function _check(bool condition, string memory message) private pure {
        require(condition, message);
    }
}
