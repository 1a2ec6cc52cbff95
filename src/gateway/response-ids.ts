// Responses passed through to an OpenAI-kind upstream keep the upstream's ids, and a later
// request may name one as `previous_response_id`: the upstream continues any id it knows,
// whoever asks. So each id is recorded under the workspace whose request made it, and a
// previous_response_id is accepted only from that workspace (another's is a 404, as if it
// did not exist); the tokens the response carried also bound the next request's prompt,
// since the upstream adds that conversation to it.
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { ExpirySweep, keyPart, type Store } from '../store/lmdb.js';

const RecordSchema = z.object({ tokens: z.number().int().nonnegative(), exp: z.number() });

/** OpenAI keeps a stored response 30 days. */
const TTL_MS = 30 * 86_400_000;

export class ResponseIds {
  private readonly sweeper: ExpirySweep;

  constructor(private readonly store: Store) {
    this.sweeper = new ExpirySweep(store.responses);
  }

  /** A passthrough response completed in `ws`: its id, and the tokens of its conversation so far. */
  remember(ws: string, id: string, tokens: number): void {
    void this.store.responses.put([ws, keyPart(id)], { tokens, exp: Date.now() + TTL_MS });
  }

  /** The tokens `id` carries, if `ws` made it; else the 404 OpenAI gives for an unknown id. */
  tokensOf(ws: string, id: string, now = Date.now()): number {
    const found = id.length <= 256 ? RecordSchema.safeParse(this.store.responses.get([ws, keyPart(id)])) : null;
    if (!found?.success || found.data.exp <= now) {
      throw new GatewayError(Errors.notFound, `Previous response with id '${id.slice(0, 80)}' not found.`, 'previous_response_id');
    }
    return found.data.tokens;
  }

  sweep(budget: number): number {
    return this.sweeper.run(budget);
  }
}
