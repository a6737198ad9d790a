// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title ATPToken
/// @notice The unit of account of Cell: ERC-20 with EIP-2612 permit. Holders of MINTER_ROLE
/// (a devnet faucet, a testnet distributor) may mint up to the cap, which keeps every amount
/// within the 96-bit fields the registry and channels pack into one storage slot.
contract ATPToken is ERC20, ERC20Capped, ERC20Permit, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    uint256 public constant MAX_SUPPLY = 10_000_000_000 ether;

    /// @param admin receives DEFAULT_ADMIN_ROLE and MINTER_ROLE
    constructor(address admin) ERC20("Cell ATP", "ATP") ERC20Capped(MAX_SUPPLY) ERC20Permit("Cell ATP") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Mints `amount` to `to`; only MINTER_ROLE, never above MAX_SUPPLY.
    /// @param to receiver of the new tokens
    /// @param amount number of tokens in wei units
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Capped) {
        super._update(from, to, value);
    }
}
