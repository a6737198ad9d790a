// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {SortitionSumTree} from "../libraries/SortitionSumTree.sol";

/// @title SortitionSumTreeHarness
/// @notice Exposes SortitionSumTree to tests; not deployed by Cell.
contract SortitionSumTreeHarness {
    using SortitionSumTree for SortitionSumTree.Tree;

    SortitionSumTree.Tree internal _tree;

    constructor(uint256 k) {
        _tree.init(k);
    }

    function set(bytes32 id, uint256 weight) external {
        _tree.set(id, weight);
    }

    function weightOf(bytes32 id) external view returns (uint256) {
        return _tree.weightOf(id);
    }

    function total() external view returns (uint256) {
        return _tree.total();
    }

    function draw(uint256 random) external view returns (bytes32) {
        return _tree.draw(random);
    }

    /// @notice How often each of `ids` is drawn in `n` draws seeded by keccak256(seed, i).
    function drawCounts(
        bytes32 seed,
        uint256 n,
        bytes32[] calldata ids
    ) external view returns (uint256[] memory counts) {
        counts = new uint256[](ids.length);
        for (uint256 i = 0; i < n; ++i) {
            bytes32 drawn = _tree.draw(uint256(keccak256(abi.encode(seed, i))));
            for (uint256 j = 0; j < ids.length; ++j) {
                if (ids[j] == drawn) {
                    ++counts[j];
                    break;
                }
            }
        }
    }

    /// @notice Every node of the tree, root first.
    function nodes() external view returns (uint256[] memory) {
        return _tree.nodes;
    }
}
