// Property tests explore a fresh random seed on every local run; CI pins one (or FC_SEED picks
// one) so a rare counterexample found there can be replayed, and a landing never hinges on luck.
// fast-check prints the seed with every failure: `FC_SEED=<seed> npm test` replays it.
import fc from 'fast-check';

const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : process.env.CI ? 20261123 : undefined;
if (seed !== undefined) fc.configureGlobal({ seed });
