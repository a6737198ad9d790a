// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

/// @title SortitionSumTree
/// @notice A K-ary sum tree over weighted ids (after Kleros' sortition sum trees): every leaf holds
/// one id's weight, every inner node the sum of its children, so `draw` finds the id that owns a
/// random point of [0, total) in O(K log_K n) reads and `set` costs O(log_K n) writes.
/// @dev Nodes live in one array: the root is node 0, the children of node i are K*i+1 .. K*i+K.
/// The tree stays complete: a new leaf is appended, and when the append makes a leaf a parent,
/// that leaf's id moves down to the parent's first child. Leaves freed by `set(id, 0)` are kept on
/// a stack and reused before the tree grows, so the array holds at most (peak ids) * K / (K - 1) + 1
/// nodes: it is bounded by the number of ids ever weighted at once, and a freed leaf is its eviction.
library SortitionSumTree {
    struct Tree {
        uint256 k;
        uint256[] nodes;
        uint256[] vacant;
        mapping(bytes32 id => uint256 index) indexOf;
        mapping(uint256 index => bytes32 id) idAt;
    }

    error InvalidArity(uint256 k);
    error AlreadyInitialized();
    error EmptyTree();
    error ZeroId();

    /// @notice Prepares an empty tree with `k` children per node (2 <= k <= 16).
    function init(Tree storage tree, uint256 k) internal {
        if (k < 2 || k > 16) revert InvalidArity(k);
        if (tree.k != 0) revert AlreadyInitialized();
        tree.k = k;
        tree.nodes.push(0);
    }

    /// @notice Sets the weight of `id`; weight 0 removes it and frees its leaf for reuse.
    function set(Tree storage tree, bytes32 id, uint256 weight) internal {
        if (id == bytes32(0)) revert ZeroId();
        uint256 index = tree.indexOf[id];
        if (index == 0) {
            if (weight != 0) _insert(tree, id, weight);
            return;
        }
        if (weight == 0) {
            _update(tree, index, 0);
            tree.vacant.push(index);
            delete tree.indexOf[id];
            delete tree.idAt[index];
            return;
        }
        _update(tree, index, weight);
    }

    /// @notice Weight of `id` (0 when absent).
    function weightOf(Tree storage tree, bytes32 id) internal view returns (uint256) {
        uint256 index = tree.indexOf[id];
        return index == 0 ? 0 : tree.nodes[index];
    }

    /// @notice Sum of all weights.
    function total(Tree storage tree) internal view returns (uint256) {
        return tree.nodes.length == 0 ? 0 : tree.nodes[0];
    }

    /// @notice The id owning point `random % total` of the weight line: each id is drawn with
    /// probability weight / total. Reverts `EmptyTree` when the total is 0.
    function draw(Tree storage tree, uint256 random) internal view returns (bytes32) {
        uint256 sum = total(tree);
        if (sum == 0) revert EmptyTree();
        uint256 point = random % sum;
        uint256 k = tree.k;
        uint256 length = tree.nodes.length;
        uint256 index = 0;
        while (k * index + 1 < length) (index, point) = _childHolding(tree, k * index + 1, k, length, point);
        return tree.idAt[index];
    }

    /// The child among first .. first+k-1 that holds `point`, and the point's offset inside it.
    function _childHolding(
        Tree storage tree,
        uint256 first,
        uint256 k,
        uint256 length,
        uint256 point
    ) private view returns (uint256, uint256) {
        uint256 end = first + k < length ? first + k : length;
        for (uint256 child = first; child < end; ++child) {
            uint256 weight = tree.nodes[child];
            if (point < weight) return (child, point);
            point -= weight;
        }
        // Unreachable while every inner node is the sum of its children.
        revert EmptyTree();
    }

    function _insert(Tree storage tree, bytes32 id, uint256 weight) private {
        uint256 index;
        uint256 free = tree.vacant.length;
        if (free != 0) {
            index = tree.vacant[free - 1];
            tree.vacant.pop();
        } else {
            index = _grow(tree);
        }
        tree.indexOf[id] = index;
        tree.idAt[index] = id;
        _update(tree, index, weight);
    }

    /// Appends a leaf and returns its index; the leaf's parent, if it was a leaf, moves down first.
    function _grow(Tree storage tree) private returns (uint256 index) {
        uint256 k = tree.k;
        index = tree.nodes.length;
        if (index != 1 && (index - 1) % k == 0) {
            uint256 parent = (index - 1) / k;
            bytes32 moved = tree.idAt[parent];
            tree.nodes.push(tree.nodes[parent]);
            delete tree.idAt[parent];
            tree.indexOf[moved] = index;
            tree.idAt[index] = moved;
            ++index;
        }
        tree.nodes.push(0);
    }

    function _update(Tree storage tree, uint256 index, uint256 weight) private {
        uint256 old = tree.nodes[index];
        if (old == weight) return;
        tree.nodes[index] = weight;
        uint256 k = tree.k;
        while (index != 0) {
            index = (index - 1) / k;
            tree.nodes[index] = tree.nodes[index] - old + weight;
        }
    }
}
