// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken
/// @notice Test token whose next balance change calls back into a target (a hostile token): lets a
/// test check that a contract's token moves are guarded against reentry.
contract ReentrantToken is ERC20 {
    error ReentryAccepted();

    address public target;
    bytes public payload;
    bool public armed;
    /// @notice Revert data of the last callback (empty until one ran).
    bytes public lastRevert;

    constructor() ERC20("Reentrant", "RE") {}

    /// @notice Mints `amount` to `to` (anyone: test token).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice The next transfer calls `target` with `payload` once.
    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
        delete lastRevert;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (!armed) return;
        armed = false;
        (bool ok, bytes memory result) = target.call(payload);
        if (ok) revert ReentryAccepted();
        lastRevert = result;
    }
}
