// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title CellTypes
/// @notice The EIP-712 statements of Cell as Solidity structs and struct hashes. The type strings
/// mirror offchain/src/protocol/eip712.ts character for character; tests compare both.
library CellTypes {
    /// @notice One execution result, signed by the executor's operator key.
    struct Receipt {
        bytes32 jobId;
        address executor;
        bytes32 moduleCid;
        bytes32 inputCid;
        bytes32 outputCid;
        uint64 fuelUsed;
        uint8 status;
        /// Unix milliseconds, as the executor's clock read them (self-reported)
        uint64 startedAt;
        uint64 finishedAt;
    }

    /// @notice A buyer's job, signed by the buyer's operator key.
    struct JobSpec {
        address buyer;
        bytes32 moduleCid;
        bytes32 inputCid;
        string entry;
        uint64 fuelLimit;
        uint32 memoryPages;
        uint32 timeoutMs;
        uint8 replicas;
        uint256 maxPricePerMegaFuel;
        uint16 minReputation;
        uint64 deadline;
        uint8 priority;
        bytes32 channel;
        bytes32 salt;
    }

    /// @notice A donor's offer to run a job, signed by its operator key.
    struct Bid {
        bytes32 jobId;
        address executor;
        uint256 pricePerMegaFuel;
        uint64 expiresAt;
    }

    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 jobId,address executor,bytes32 moduleCid,bytes32 inputCid,bytes32 outputCid,uint64 fuelUsed,uint8 status,uint64 startedAt,uint64 finishedAt)"
    );
    bytes32 internal constant VOUCHER_TYPEHASH = keccak256(
        "Voucher(bytes32 channelId,uint256 cumulativeAmount)"
    );
    bytes32 internal constant CHANNEL_CLOSE_TYPEHASH = keccak256(
        "ChannelClose(bytes32 channelId,uint256 finalAmount,uint64 deadline)"
    );
    bytes32 internal constant JOB_SPEC_TYPEHASH = keccak256(
        "JobSpec(address buyer,bytes32 moduleCid,bytes32 inputCid,string entry,uint64 fuelLimit,uint32 memoryPages,uint32 timeoutMs,uint8 replicas,uint256 maxPricePerMegaFuel,uint16 minReputation,uint64 deadline,uint8 priority,bytes32 channel,bytes32 salt)"
    );
    bytes32 internal constant BID_TYPEHASH = keccak256(
        "Bid(bytes32 jobId,address executor,uint256 pricePerMegaFuel,uint64 expiresAt)"
    );
    bytes32 internal constant OPERATOR_REGISTRATION_TYPEHASH = keccak256(
        "OperatorRegistration(address donor,address operator,bytes32 peerKey,uint256 nonce)"
    );

    /// @notice EIP-712 struct hash of a receipt.
    function hash(Receipt calldata r) internal pure returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    RECEIPT_TYPEHASH,
                    r.jobId,
                    r.executor,
                    r.moduleCid,
                    r.inputCid,
                    r.outputCid,
                    r.fuelUsed,
                    r.status,
                    r.startedAt,
                    r.finishedAt
                )
            );
    }

    /// @notice EIP-712 struct hash of a job spec (the string is hashed, as EIP-712 says).
    function hash(JobSpec calldata s) internal pure returns (bytes32) {
        bytes memory head = abi.encode(
            JOB_SPEC_TYPEHASH,
            s.buyer,
            s.moduleCid,
            s.inputCid,
            keccak256(bytes(s.entry)),
            s.fuelLimit,
            s.memoryPages,
            s.timeoutMs
        );
        bytes memory tail = abi.encode(
            s.replicas,
            s.maxPricePerMegaFuel,
            s.minReputation,
            s.deadline,
            s.priority,
            s.channel,
            s.salt
        );
        return keccak256(bytes.concat(head, tail));
    }

    /// @notice EIP-712 struct hash of a bid.
    function hash(Bid calldata b) internal pure returns (bytes32) {
        return keccak256(abi.encode(BID_TYPEHASH, b.jobId, b.executor, b.pricePerMegaFuel, b.expiresAt));
    }

    /// @notice EIP-712 struct hash of an operator's proof of possession: the operator key signs
    /// that `donor` may register it with `peerKey`, at the donor's registration nonce.
    function operatorRegistrationHash(
        address donor,
        address operator,
        bytes32 peerKey,
        uint256 nonce
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(OPERATOR_REGISTRATION_TYPEHASH, donor, operator, peerKey, nonce));
    }

    /// @notice EIP-712 struct hash of a cumulative voucher.
    function voucherHash(bytes32 channelId, uint256 cumulativeAmount) internal pure returns (bytes32 result) {
        bytes32 typehash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), channelId)
            mstore(add(ptr, 0x40), cumulativeAmount)
            result := keccak256(ptr, 0x60)
        }
    }

    /// @notice EIP-712 struct hash of a cooperative close.
    function channelCloseHash(
        bytes32 channelId,
        uint256 finalAmount,
        uint64 deadline
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(CHANNEL_CLOSE_TYPEHASH, channelId, finalAmount, deadline));
    }

    /// @notice True when two receipts report different results (status, output or fuel).
    function sameResult(Receipt calldata a, Receipt calldata b) internal pure returns (bool) {
        return a.status == b.status && a.outputCid == b.outputCid && a.fuelUsed == b.fuelUsed;
    }

    /// @notice What a receipt reports as its result, (status, outputCid, fuelUsed), in one word.
    function resultOf(Receipt calldata r) internal pure returns (bytes32) {
        return keccak256(abi.encode(r.status, r.outputCid, r.fuelUsed));
    }

    /// @notice Signer of `digest` from a 65-byte or EIP-2098 64-byte signature; zero when invalid.
    function signerOf(bytes32 digest, bytes calldata signature) internal pure returns (address) {
        address recovered;
        ECDSA.RecoverError err;
        if (signature.length == 64) {
            (recovered, err, ) = ECDSA.tryRecover(digest, bytes32(signature[:32]), bytes32(signature[32:]));
        } else {
            (recovered, err, ) = ECDSA.tryRecoverCalldata(digest, signature);
        }
        return err == ECDSA.RecoverError.NoError ? recovered : address(0);
    }
}
