pragma circom 2.1.0;

include "../settle.circom";

// Instance "ci": a depth-4 tree, 2 queue slots, 2 transfers per proof.
component main {public [domainTag, oldRoot, newRoot, oldQueueHash, newQueueHash, transfers]} = SettleBatch(4, 2, 2);
