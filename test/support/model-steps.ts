import fc from 'fast-check';

/** One step of a model-based test: ops submitted at once, and whether the firewall refuses them. */
export interface ModelStep<Op> {
  readonly ops: Op[];
  readonly backendFails: boolean;
}

/**
 * Steps: a group of ops submitted at once (concurrent requests), or a single op that the backend
 * refuses (a group could net out to no firewall change, so failures are injected one op at a time).
 */
export function modelSteps<Op>(op: fc.Arbitrary<Op>): fc.Arbitrary<Array<ModelStep<Op>>> {
  const step = fc.oneof(
    { weight: 4, arbitrary: fc.record({ ops: fc.array(op, { minLength: 1, maxLength: 4 }), backendFails: fc.constant(false) }) },
    { weight: 1, arbitrary: fc.record({ ops: fc.array(op, { minLength: 1, maxLength: 1 }), backendFails: fc.constant(true) }) },
  );
  return fc.array(step, { minLength: 1, maxLength: 25 });
}

/** Where the model tests' state files live (in memory), and the wall clock they are written at. */
export const MODEL_STATE_DIR = '/state';
export const MODEL_WALL_NOW = Date.parse('2026-12-06T12:00:00Z');
