"""What-if on the recorded log: a response cache with a TTL, model swaps and the Batch API, priced exactly.

`replay` reads the period once with two or three SQL aggregates (run at the same time)
and returns, per (endpoint, provider, requested model, answered model), the calls, the
spend, and the token buckets of the calls a cache would have answered and of the rest.
Every scenario is then arithmetic on those aggregates (`simulate`): costs are linear in
tokens, so a swap reprices the buckets at the cheaper model's real rates and the Batch
API halves what is left, with no second read of the records. `costtrack simulate` and
the optimization audit both run on this engine.

The model, stated once:

- Response cache, TTL `t`: a call is a hit when a successful call with the same
  `request_hash` started at most `t` seconds before it (a running MAX over
  ``(request_hash ORDER BY timestamp)``), whatever the call's own status: a cache
  holding that answer would also have answered a request that failed, and the SDK's
  retries of it. Every successful call, a repeat too, counts as storing the entry
  afresh, so this is an upper bound for caches whose entries expire `t` after they
  were stored (`costtrack.MemoryCache`, Redis ``SETEX``): they miss the repeats of a
  request that keeps coming for longer than `t`. Calls without a hash and calls that
  already were cache hits are left as they are.
- Swap ``a=b``: calls whose requested or answered model is `a` are repriced at `b`'s
  rates (PriceBook, at the period's last call) for the same token counts: uncached
  input, cached input, cache writes (5-minute and 1-hour) and output, each at its own
  rate. Long-context tiers of `b` are not applied. Tokenizers differ between
  providers, so a cross-provider swap is an estimate.
- Batch share `s`: that share of the calls of the endpoints in scope goes through
  the Batch API, at the model's Batch rates from the catalog against its standard ones
  for the calls' own token mix (OpenAI's Batch tables of some models, gpt-4o among them,
  bill cached input at the standard cached rate, so such calls save less than half),
  else at 50% of the price; by default the scope is the non-interactive endpoints (see
  `noninteractive_endpoints`).
- Levers apply in that order (cache, swap, batch), each to what the previous one left,
  so their savings add up to the total and never exceed the actual spend.
- Unpriced calls (cost unknown) stay unknown: they are in neither the actual nor the
  simulated cost.
"""

from __future__ import annotations

from .aggregates import Buckets, DayRow, Group, Replay, monthly
from .batch_scope import (
    NONINTERACTIVE_WORDS,
    Interactivity,
    classify_interactivity,
    interactive_query,
    noninteractive_endpoints,
    resolve_batch_scope,
)
from .execution import execute, run_queries
from .flags import parse_duration, parse_swap
from .queries import (
    GAP_TOLERANCE_S,
    daily_query,
    hits_query,
    period_where,
    replay_queries,
    totals_query,
)

# Outside __all__ but importable from here: the replay's merge steps. reports/results/attribution.py and
# metrics.py reuse the replay's SQL helpers (sum_where, buckets, row_buckets) from .queries and .replay.
from .replay import merge_daily as merge_daily
from .replay import merge_hits as merge_hits
from .replay import merge_totals as merge_totals
from .replay import period_span, replay, replay_from
from .scenarios import Scenario, Swap
from .simulation import EndpointResult, Simulation, count_tiered, play, run, simulate, swap_rates
from .sql import as_day, day_of, epoch_of, has_tag, tag_filter, tag_number, tag_text

__all__ = [
    "GAP_TOLERANCE_S",
    "NONINTERACTIVE_WORDS",
    "Buckets",
    "DayRow",
    "EndpointResult",
    "Group",
    "Interactivity",
    "Replay",
    "Scenario",
    "Simulation",
    "Swap",
    "as_day",
    "classify_interactivity",
    "count_tiered",
    "daily_query",
    "day_of",
    "epoch_of",
    "execute",
    "has_tag",
    "hits_query",
    "interactive_query",
    "monthly",
    "noninteractive_endpoints",
    "parse_duration",
    "parse_swap",
    "period_span",
    "period_where",
    "play",
    "replay",
    "replay_from",
    "replay_queries",
    "resolve_batch_scope",
    "run",
    "run_queries",
    "simulate",
    "swap_rates",
    "tag_filter",
    "tag_number",
    "tag_text",
    "totals_query",
]
