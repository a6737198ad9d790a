pragma circom 2.1.0;

// The zk settlement batch (docs/zk.md, "Circuit"): queue slots, then transfer slots, each moving
// the state tree's root from one leaf update to the next.

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";
include "eddsaposeidon.circom";

// The root reached from `leaf` at the index whose bits are `bits`, through `siblings`.
template MerkleRoot(D) {
    signal input leaf;
    signal input bits[D];
    signal input siblings[D];
    signal output root;

    component hashes[D];
    signal nodes[D + 1];
    signal swap[D];
    nodes[0] <== leaf;
    for (var level = 0; level < D; level++) {
        // bit = 1: the node is the right child.
        swap[level] <== bits[level] * (siblings[level] - nodes[level]);
        hashes[level] = Poseidon(2);
        hashes[level].inputs[0] <== nodes[level] + swap[level];
        hashes[level].inputs[1] <== siblings[level] - swap[level];
        nodes[level + 1] <== hashes[level].out;
    }
    root <== nodes[D];
}

// Proves `oldLeaf` at `bits` under `rootIn` when `enabled`, and yields the root after writing
// `newLeaf` there; a disabled update passes the root through unchanged.
template LeafUpdate(D) {
    signal input enabled;
    signal input rootIn;
    signal input bits[D];
    signal input siblings[D];
    signal input oldLeaf;
    signal input newLeaf;
    signal output rootOut;

    component before = MerkleRoot(D);
    component after = MerkleRoot(D);
    before.leaf <== oldLeaf;
    after.leaf <== newLeaf;
    for (var level = 0; level < D; level++) {
        before.bits[level] <== bits[level];
        before.siblings[level] <== siblings[level];
        after.bits[level] <== bits[level];
        after.siblings[level] <== siblings[level];
    }
    enabled * (before.root - rootIn) === 0;
    rootOut <== rootIn + enabled * (after.root - rootIn);
}

// One queued operation: kind 0 (unused), 1 OPEN, 2 TOPUP, 3 CLOSE.
template QueueSlot(D) {
    signal input rootIn;
    signal input queueIn;
    signal input kind;
    signal input index;
    signal input amount;
    // OPEN: the channel's key and payee (hashed into the queue); zero otherwise.
    signal input ax;
    signal input ay;
    signal input payee;
    // The leaf before the operation (all zero for OPEN and unused slots).
    signal input oldAx;
    signal input oldAy;
    signal input oldPayee;
    signal input oldDeposit;
    signal input oldPaid;
    signal input siblings[D];
    signal output rootOut;
    signal output queueOut;

    // The kind's one-hot form: unique, as at most one flag is set and kind is their weighted sum.
    signal isOpen <-- kind == 1 ? 1 : 0;
    signal isTopUp <-- kind == 2 ? 1 : 0;
    signal isClose <-- kind == 3 ? 1 : 0;
    isOpen * (isOpen - 1) === 0;
    isTopUp * (isTopUp - 1) === 0;
    isClose * (isClose - 1) === 0;
    signal used <== isOpen + isTopUp + isClose;
    used * (used - 1) === 0;
    kind === isOpen + 2 * isTopUp + 3 * isClose;

    component indexBits = Num2Bits(D);
    indexBits.in <== index;
    component amountBits = Num2Bits(96);
    amountBits.in <== amount;

    component oldLeaf = Poseidon(5);
    oldLeaf.inputs[0] <== oldAx;
    oldLeaf.inputs[1] <== oldAy;
    oldLeaf.inputs[2] <== oldPayee;
    oldLeaf.inputs[3] <== oldDeposit;
    oldLeaf.inputs[4] <== oldPaid;
    // OPEN fills an empty leaf.
    signal oldValue <== (1 - isOpen) * oldLeaf.out;

    signal openDeposit <== isOpen * amount;
    signal topUpDeposit <== isTopUp * (oldDeposit + amount);
    signal closeDeposit <== isClose * oldPaid;
    signal newDeposit <== openDeposit + topUpDeposit + closeDeposit;
    component depositBits = Num2Bits(96);
    depositBits.in <== newDeposit;

    component newLeaf = Poseidon(5);
    newLeaf.inputs[0] <== oldAx + isOpen * (ax - oldAx);
    newLeaf.inputs[1] <== oldAy + isOpen * (ay - oldAy);
    newLeaf.inputs[2] <== oldPayee + isOpen * (payee - oldPayee);
    newLeaf.inputs[3] <== newDeposit;
    newLeaf.inputs[4] <== (1 - isOpen) * oldPaid;

    component update = LeafUpdate(D);
    update.enabled <== used;
    update.rootIn <== rootIn;
    for (var level = 0; level < D; level++) {
        update.bits[level] <== indexBits.out[level];
        update.siblings[level] <== siblings[level];
    }
    update.oldLeaf <== oldValue;
    update.newLeaf <== newLeaf.out;
    rootOut <== update.rootOut;

    signal packed <== kind + index * 256 + amount * 1099511627776;
    component openStep = Poseidon(5);
    openStep.inputs[0] <== queueIn;
    openStep.inputs[1] <== packed;
    openStep.inputs[2] <== ax;
    openStep.inputs[3] <== ay;
    openStep.inputs[4] <== payee;
    component otherStep = Poseidon(2);
    otherStep.inputs[0] <== queueIn;
    otherStep.inputs[1] <== packed;
    signal openMove <== isOpen * (openStep.out - queueIn);
    signal otherMove <== (isTopUp + isClose) * (otherStep.out - queueIn);
    queueOut <== queueIn + openMove + otherMove;
}

// One payment: leaf `index`'s paid amount becomes `cumulative`; cumulative 0 is an unused slot.
template TransferSlot(D) {
    signal input rootIn;
    signal input domainTag;
    signal input indexBits[30];
    signal input cumulative;
    // The leaf before the payment (any values in an unused slot).
    signal input ax;
    signal input ay;
    signal input payee;
    signal input deposit;
    signal input paid;
    signal input siblings[D];
    signal input r8x;
    signal input r8y;
    signal input s;
    signal output rootOut;

    component unused = IsZero();
    unused.in <== cumulative;
    signal used <== 1 - unused.out;

    var index = 0;
    for (var b = 0; b < 30; b++) {
        index += indexBits[b] * (1 << b);
    }
    // An index beyond the tree, or an unused slot that names a leaf, is refused.
    for (var b = D; b < 30; b++) {
        indexBits[b] === 0;
    }
    unused.out * index === 0;

    // paid < cumulative <= deposit; all three are below 2^96.
    component above = Num2Bits(96);
    above.in <== used * (cumulative - paid - 1);
    component covered = Num2Bits(96);
    covered.in <== used * (deposit - cumulative);

    component message = Poseidon(3);
    message.inputs[0] <== domainTag;
    message.inputs[1] <== index;
    message.inputs[2] <== cumulative;
    component signature = EdDSAPoseidonVerifier();
    signature.enabled <== used;
    signature.Ax <== ax;
    signature.Ay <== ay;
    signature.S <== s;
    signature.R8x <== r8x;
    signature.R8y <== r8y;
    signature.M <== message.out;

    component oldLeaf = Poseidon(5);
    oldLeaf.inputs[0] <== ax;
    oldLeaf.inputs[1] <== ay;
    oldLeaf.inputs[2] <== payee;
    oldLeaf.inputs[3] <== deposit;
    oldLeaf.inputs[4] <== paid;
    component newLeaf = Poseidon(5);
    newLeaf.inputs[0] <== ax;
    newLeaf.inputs[1] <== ay;
    newLeaf.inputs[2] <== payee;
    newLeaf.inputs[3] <== deposit;
    newLeaf.inputs[4] <== cumulative;

    component update = LeafUpdate(D);
    update.enabled <== used;
    update.rootIn <== rootIn;
    for (var level = 0; level < D; level++) {
        update.bits[level] <== indexBits[level];
        update.siblings[level] <== siblings[level];
    }
    update.oldLeaf <== oldLeaf.out;
    update.newLeaf <== newLeaf.out;
    rootOut <== update.rootOut;
}

template SettleBatch(D, Q, B) {
    var P = (B + 1) \ 2;

    // Public inputs, in the order the contract passes them.
    signal input domainTag;
    signal input oldRoot;
    signal input newRoot;
    signal input oldQueueHash;
    signal input newQueueHash;
    signal input transfers[P];

    // Queue slots.
    signal input queueKind[Q];
    signal input queueIndex[Q];
    signal input queueAmount[Q];
    signal input queueAx[Q];
    signal input queueAy[Q];
    signal input queuePayee[Q];
    signal input queueOldLeaf[Q][5];
    signal input queueSiblings[Q][D];

    // Transfer slots (the index and amount come from the public transfers).
    signal input leafAx[B];
    signal input leafAy[B];
    signal input leafPayee[B];
    signal input leafDeposit[B];
    signal input leafPaid[B];
    signal input transferSiblings[B][D];
    signal input sigR8x[B];
    signal input sigR8y[B];
    signal input sigS[B];

    component queue[Q];
    signal roots[Q + B + 1];
    signal queueHashes[Q + 1];
    roots[0] <== oldRoot;
    queueHashes[0] <== oldQueueHash;
    for (var q = 0; q < Q; q++) {
        queue[q] = QueueSlot(D);
        queue[q].rootIn <== roots[q];
        queue[q].queueIn <== queueHashes[q];
        queue[q].kind <== queueKind[q];
        queue[q].index <== queueIndex[q];
        queue[q].amount <== queueAmount[q];
        queue[q].ax <== queueAx[q];
        queue[q].ay <== queueAy[q];
        queue[q].payee <== queuePayee[q];
        queue[q].oldAx <== queueOldLeaf[q][0];
        queue[q].oldAy <== queueOldLeaf[q][1];
        queue[q].oldPayee <== queueOldLeaf[q][2];
        queue[q].oldDeposit <== queueOldLeaf[q][3];
        queue[q].oldPaid <== queueOldLeaf[q][4];
        for (var level = 0; level < D; level++) {
            queue[q].siblings[level] <== queueSiblings[q][level];
        }
        roots[q + 1] <== queue[q].rootOut;
        queueHashes[q + 1] <== queue[q].queueOut;
    }
    queueHashes[Q] === newQueueHash;

    // Each public element holds two 126-bit transfers: index (30 bits) + cumulative (96 bits).
    component unpack[P];
    for (var k = 0; k < P; k++) {
        unpack[k] = Num2Bits(252);
        unpack[k].in <== transfers[k];
    }
    // With an odd B the last element's upper half is an empty slot.
    if (B % 2 == 1) {
        for (var b = 126; b < 252; b++) {
            unpack[P - 1].out[b] === 0;
        }
    }

    component transfer[B];
    for (var j = 0; j < B; j++) {
        var base = (j % 2) * 126;
        var cumulative = 0;
        for (var b = 0; b < 96; b++) {
            cumulative += unpack[j \ 2].out[base + 30 + b] * (1 << b);
        }
        transfer[j] = TransferSlot(D);
        transfer[j].rootIn <== roots[Q + j];
        transfer[j].domainTag <== domainTag;
        for (var b = 0; b < 30; b++) {
            transfer[j].indexBits[b] <== unpack[j \ 2].out[base + b];
        }
        transfer[j].cumulative <== cumulative;
        transfer[j].ax <== leafAx[j];
        transfer[j].ay <== leafAy[j];
        transfer[j].payee <== leafPayee[j];
        transfer[j].deposit <== leafDeposit[j];
        transfer[j].paid <== leafPaid[j];
        for (var level = 0; level < D; level++) {
            transfer[j].siblings[level] <== transferSiblings[j][level];
        }
        transfer[j].r8x <== sigR8x[j];
        transfer[j].r8y <== sigR8y[j];
        transfer[j].s <== sigS[j];
        roots[Q + j + 1] <== transfer[j].rootOut;
    }
    roots[Q + B] === newRoot;
}
