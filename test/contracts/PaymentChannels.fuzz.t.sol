// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {ATPToken} from "../../contracts/ATPToken.sol";
import {PaymentChannels} from "../../contracts/PaymentChannels.sol";

/// Cheatcodes of the Hardhat 3 Solidity test runner (the forge-std Vm subset used here).
interface Vm {
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function prank(address sender) external;
    function warp(uint256 timestamp) external;
}

/// Property tests: a channel never pays out more than was deposited, a settlement batch moves no
/// token and conserves the total of balances, and withdrawals then pay each payee exactly what its
/// channels were credited.
contract PaymentChannelsFuzzTest {
    Vm private constant VM = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 private constant SIGNER_KEY = 0xA11CE;
    uint256 private constant FORGER_KEY = 0xBADBAD;
    uint64 private constant WINDOW = 100;
    address private constant BUYER = address(0xB0B);

    ATPToken private token;
    PaymentChannels private channels;
    address private signer;

    function setUp() public {
        token = new ATPToken(address(this));
        channels = new PaymentChannels(token, WINDOW);
        signer = VM.addr(SIGNER_KEY);
        token.mint(BUYER, 1e27);
        VM.prank(BUYER);
        token.approve(address(channels), type(uint256).max);
    }

    function testFuzz_channelNeverPaysMoreThanDeposited(
        uint96 deposit,
        uint96 topUp,
        uint256[4] memory vouchers,
        uint8 topUpAt
    ) public {
        deposit = uint96(_bound(deposit, 1, 1e24));
        topUp = uint96(_bound(topUp, 1, 1e24));
        address payee = address(0xCAFE);
        PaymentChannels.ChannelKey memory key = _open(payee, 1, deposit);
        bytes32 channelId = channels.channelIdOf(key);
        uint256 deposited = deposit;

        for (uint256 i = 0; i < vouchers.length; ++i) {
            if (i == topUpAt % vouchers.length) {
                VM.prank(BUYER);
                channels.topUp(key, topUp);
                deposited += topUp;
            }
            try channels.redeem(key, vouchers[i], _sign(SIGNER_KEY, channelId, vouchers[i])) {} catch {}
            (, uint96 paid, ) = channels.channels(channelId);
            _check(paid <= deposited, "paid above deposit");
            _check(token.balanceOf(payee) == paid, "payee balance differs from paid");
        }

        VM.prank(BUYER);
        channels.startClose(signer, payee, 1);
        VM.warp(block.timestamp + WINDOW);
        uint256 buyerBefore = token.balanceOf(BUYER);
        channels.finalizeClose(key);
        _check(
            token.balanceOf(BUYER) - buyerBefore + token.balanceOf(payee) == deposited,
            "deposit not conserved"
        );
        _check(token.balanceOf(address(channels)) == 0, "tokens left behind");
    }

    function testFuzz_settlementConservesBalances(uint8 count, uint256 seed) public {
        count = uint8(_bound(count, 1, 12));
        address[3] memory payees = [address(0x1001), address(0x1002), address(0x1003)];
        address[] memory table = _sortedTable(payees);
        PaymentChannels.ChannelKey[] memory keys = new PaymentChannels.ChannelKey[](count);
        bytes memory vouchers;
        uint256 deposits;
        for (uint256 i = 0; i < count; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint96 deposit = uint96(_bound(r, 1, 1e21));
            keys[i] = _open(payees[i % 3], uint64(i), deposit);
            deposits += deposit;
            uint96 amount = uint96(_bound(r >> 96, 0, 2e21));
            uint256 keyToSign = (r >> 200) % 5 == 0 ? FORGER_KEY : SIGNER_KEY;
            vouchers = bytes.concat(vouchers, _packedVoucher(table, keys[i], amount, keyToSign));
        }
        bytes memory batch = abi.encodePacked(uint16(table.length));
        for (uint256 j = 0; j < table.length; ++j) batch = bytes.concat(batch, abi.encodePacked(table[j]));

        uint256 before = _total(payees);
        uint256 contractBefore = token.balanceOf(address(channels));
        channels.settle(bytes.concat(batch, vouchers), 0, bytes32(0), 0);
        _check(token.balanceOf(address(channels)) == contractBefore, "settlement moved tokens");
        for (uint256 p = 0; p < payees.length; ++p) _withdrawAll(keys, payees[p]);
        _check(_total(payees) == before, "settlement and withdrawals changed the total of balances");

        uint256 paidSum;
        for (uint256 i = 0; i < count; ++i) {
            (uint96 deposit, uint96 paid, ) = channels.channels(channels.channelIdOf(keys[i]));
            _check(paid <= deposit, "channel paid above its deposit");
            paidSum += paid;
        }
        _check(
            contractBefore - token.balanceOf(address(channels)) == paidSum,
            "contract outflow differs from paid"
        );
        _check(paidSum <= deposits, "batch paid above deposits");
        uint256 received =
            token.balanceOf(payees[0]) + token.balanceOf(payees[1]) + token.balanceOf(payees[2]);
        _check(received == paidSum, "payees received other than paid");
    }

    /// Withdraws everything `payee`'s channels among `keys` were credited, checking the amount.
    function _withdrawAll(PaymentChannels.ChannelKey[] memory keys, address payee) private {
        uint256 count;
        for (uint256 i = 0; i < keys.length; ++i) if (keys[i].payee == payee) ++count;
        if (count == 0) return;
        PaymentChannels.ChannelKey[] memory own = new PaymentChannels.ChannelKey[](count);
        uint256 credited;
        count = 0;
        for (uint256 i = 0; i < keys.length; ++i) {
            if (keys[i].payee != payee) continue;
            own[count++] = keys[i];
            credited += channels.withdrawable(channels.channelIdOf(keys[i]));
        }
        if (credited == 0) return;
        uint256 balanceBefore = token.balanceOf(payee);
        _check(channels.withdrawPaid(own) == credited, "withdrawal differs from credit");
        _check(token.balanceOf(payee) - balanceBefore == credited, "payee received other than credited");
    }

    /// One voucher of a settlement batch: table indices, nonce, uint96 amount (signed as the
    /// uint256 it widens to), EIP-2098 signature.
    function _packedVoucher(
        address[] memory table,
        PaymentChannels.ChannelKey memory key,
        uint96 amount,
        uint256 privateKey
    ) private view returns (bytes memory) {
        (bytes32 r, bytes32 vs) = _signCompact(privateKey, channels.channelIdOf(key), amount);
        bytes memory indices = abi.encodePacked(
            _indexOf(table, key.buyer),
            _indexOf(table, key.signer),
            _indexOf(table, key.payee)
        );
        return abi.encodePacked(indices, key.nonce, amount, r, vs);
    }

    /// The batch's address table: buyer, signer and payees in ascending order.
    function _sortedTable(address[3] memory payees) private view returns (address[] memory table) {
        table = new address[](5);
        (table[0], table[1], table[2], table[3], table[4]) = (BUYER, signer, payees[0], payees[1], payees[2]);
        for (uint256 i = 1; i < table.length; ++i) {
            for (uint256 j = i; j > 0 && table[j - 1] > table[j]; --j) {
                (table[j - 1], table[j]) = (table[j], table[j - 1]);
            }
        }
    }

    function _indexOf(address[] memory table, address account) private pure returns (uint16) {
        for (uint256 i = 0; i < table.length; ++i) if (table[i] == account) return uint16(i);
        revert("not in table");
    }

    function _open(
        address payee,
        uint64 nonce,
        uint96 deposit
    ) private returns (PaymentChannels.ChannelKey memory key) {
        key = PaymentChannels.ChannelKey(BUYER, signer, payee, nonce);
        VM.prank(BUYER);
        channels.open(signer, payee, nonce, deposit);
    }

    function _sign(
        uint256 privateKey,
        bytes32 channelId,
        uint256 amount
    ) private view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = VM.sign(privateKey, channels.voucherDigest(channelId, amount));
        return abi.encodePacked(r, s, v);
    }

    function _signCompact(
        uint256 privateKey,
        bytes32 channelId,
        uint256 amount
    ) private view returns (bytes32, bytes32) {
        (uint8 v, bytes32 r, bytes32 s) = VM.sign(privateKey, channels.voucherDigest(channelId, amount));
        return (r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function _total(address[3] memory payees) private view returns (uint256) {
        return
            token.balanceOf(BUYER) +
            token.balanceOf(address(channels)) +
            token.balanceOf(payees[0]) +
            token.balanceOf(payees[1]) +
            token.balanceOf(payees[2]);
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        return min + (x % (max - min + 1));
    }

    function _check(bool condition, string memory message) private pure {
        require(condition, message);
    }
}
