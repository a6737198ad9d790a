// The parts of snarkjs 0.7 (which ships no types) that the zk code calls.
declare module "snarkjs" {
  export interface SnarkLogger {
    debug(message: string): void;
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
  }
  export interface Groth16Proof {
    pi_a: string[];
    pi_b: string[][];
    pi_c: string[];
    protocol: string;
    curve: string;
  }
  export interface VerificationKey {
    protocol: string;
    curve: string;
    nPublic: number;
    [key: string]: unknown;
  }
  export interface MemFile {
    type: "mem";
    data?: Uint8Array;
  }
  export type FileOrMem = string | MemFile | Uint8Array;
  export interface Curve {
    terminate(): Promise<void>;
  }

  export const curves: {
    getCurveFromName(name: string, options?: { singleThread?: boolean }): Promise<Curve>;
  };
  export const powersOfTau: {
    newAccumulator(curve: Curve, power: number, file: string, logger?: SnarkLogger): Promise<unknown>;
    beacon(
      oldFile: string,
      newFile: string,
      name: string,
      beaconHash: string,
      iterationsExp: number,
      logger?: SnarkLogger,
    ): Promise<unknown>;
    contribute(
      oldFile: string,
      newFile: string,
      name: string,
      entropy: string,
      logger?: SnarkLogger,
    ): Promise<unknown>;
    preparePhase2(oldFile: string, newFile: string, logger?: SnarkLogger): Promise<unknown>;
  };
  export const zKey: {
    newZKey(r1cs: string, ptau: string, zkey: string, logger?: SnarkLogger): Promise<unknown>;
    beacon(
      oldFile: string,
      newFile: string,
      name: string,
      beaconHash: string,
      iterationsExp: number,
      logger?: SnarkLogger,
    ): Promise<unknown>;
    contribute(
      oldFile: string,
      newFile: string,
      name: string,
      entropy: string,
      logger?: SnarkLogger,
    ): Promise<unknown>;
    exportVerificationKey(zkey: FileOrMem, logger?: SnarkLogger): Promise<VerificationKey>;
    exportSolidityVerifier(
      zkey: FileOrMem,
      templates: { groth16: string },
      logger?: SnarkLogger,
    ): Promise<string>;
  };
  export const r1cs: {
    info(
      file: string,
      logger?: SnarkLogger,
    ): Promise<{ nConstraints: number; nPubInputs: number; nOutputs: number }>;
  };
  export const wtns: {
    calculate(input: Record<string, unknown>, wasm: FileOrMem, out: FileOrMem): Promise<void>;
  };
  export const groth16: {
    prove(
      zkey: FileOrMem,
      witness: FileOrMem,
      logger?: SnarkLogger,
    ): Promise<{ proof: Groth16Proof; publicSignals: string[] }>;
    verify(
      vkey: VerificationKey,
      publicSignals: readonly string[],
      proof: Groth16Proof,
      logger?: SnarkLogger,
    ): Promise<boolean>;
    exportSolidityCallData(proof: Groth16Proof, publicSignals: readonly string[]): Promise<string>;
  };
}
