"""An offline simulator of the OpenAI and Anthropic HTTP APIs.

``Simulator`` is an ``httpx2`` handler: give it to ``httpx2.MockTransport`` and
hand that transport's client to a real SDK client, and every call the SDK makes
is answered here, in the providers' own wire formats, with no network and no key::

    sim = Simulator(seed=1)
    client = OpenAI(api_key="sk-test", max_retries=0,
                    http_client=httpx2.Client(transport=httpx2.MockTransport(sim)))
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    sim.requests        # every request received, in order

Endpoints are matched on the end of the URL path, so any ``base_url`` works:

- OpenAI ``POST …/chat/completions`` (plain, ``stream``, ``stream_options.include_usage``,
  ``response_format`` json_schema / json_object, function tools, ``n``),
  ``POST …/responses`` (plain and typed-event streams), ``POST …/embeddings``
  (float or base64), ``GET …/models``.
- OpenAI Batch API: ``POST …/files`` (multipart upload), ``GET …/files/{id}`` and
  ``GET …/files/{id}/content``, ``POST …/batches``, ``GET …/batches/{id}`` and
  ``POST …/batches/{id}/cancel`` (see "Batch API" below).
- Anthropic ``POST …/v1/messages`` (plain and event streams, ``cache_control``,
  tools, ``output_config.format``), ``POST …/v1/messages/count_tokens``, ``GET …/v1/models``
  (a ``/models`` request carrying an ``anthropic-version`` header).

Token counts are deterministic: about four characters a token of all prompt text
plus a small per-message overhead; the output length is drawn from a generator
seeded by ``seed`` and the request (the ``stream`` flags excluded), capped by
``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``. The same
request therefore gets the same text and the same counts, streamed or not;
only ids, ``created`` and prompt-cache hits depend on what came before.

Realism a cost tracker must cope with:

- the response ``model`` is a dated snapshot of the requested alias
  (``gpt-4o-mini`` → ``gpt-4o-mini-2024-07-18``); unknown names are echoed;
- OpenAI automatic prompt caching: a prompt of ≥1024 tokens whose prefix was
  seen before (same model, this simulator) reports
  ``prompt_tokens_details.cached_tokens`` (Responses:
  ``input_tokens_details.cached_tokens``): a multiple of 128, ≥1024, included
  in ``prompt_tokens``;
- reasoning models (o1, o3, o4-mini, gpt-5…) report ``reasoning_tokens``
  included in ``completion_tokens`` / ``output_tokens``;
- Anthropic ``cache_control`` breakpoints (on tools, system blocks, message
  blocks, or top-level automatic caching): a prefix of ≥1024 tokens is written
  the first time (``cache_creation_input_tokens``, split by ttl in
  ``cache_creation.ephemeral_5m/1h_input_tokens``) and read afterwards
  (``cache_read_input_tokens``); ``input_tokens`` excludes both;
- Anthropic ``message_delta.usage`` carries cumulative totals (``output_tokens``
  is the final count, and the input counts are repeated, not increments).

Failures can be scripted per request (:meth:`Simulator.script`) or drawn at
random (``error_rate``). A cached prefix expires as the providers' do, by the simulator's clock: OpenAI's
after 5 minutes unused, Anthropic's after its ttl (5 minutes, or an hour), each read starting it again. Without a
``clock`` the synthetic one moves a second a request, so a prompt unused for 300 requests is no longer cached.

Batch API: a batch moves one step per ``GET …/batches/{id}``, deterministically:
``validating`` (the create answer) → ``in_progress`` (``batch_polls`` polls, the
request counts growing) → ``finalizing`` → ``completed``; an input file with a bad
line (not JSON, no or a duplicate ``custom_id``, a ``url`` other than the batch's
endpoint) makes it ``failed`` at the first poll, with ``errors``. Each line is answered
by the same code as a live call (so the same body gets the same text and counts) when
the batch reaches it; a line can fail with a 400 (a body a live call would refuse),
at random (``error_rate``, as a 500), or as scripted by
:meth:`Simulator.fail_batch_lines`. Answers go to the output file, failures to the error
file (both JSONL: ``custom_id``, ``response: {status_code, request_id, body}``, ``error``;
lines in a shuffled order, since the real API does not keep the input order either).
Uploaded and written files are kept in ``sim.files``, batches in ``sim.batches``.
``POST …/batches/{id}/cancel`` makes it ``cancelling``, and ``cancelled`` at the next
poll with the lines answered so far in its output file. The Batch and Files endpoints
never fail at random (scripted outcomes apply to them like to any request).
"""

from __future__ import annotations

from .clients import (
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    openai_client,
)
from .handler import Simulator
from .models import (
    MODEL_SNAPSHOTS,
    count_text_tokens,
    is_reasoning_model,
    snapshot_model,
)
from .text import example_from_schema

__all__ = [
    "MODEL_SNAPSHOTS",
    "Simulator",
    "anthropic_client",
    "async_anthropic_client",
    "async_openai_client",
    "count_text_tokens",
    "example_from_schema",
    "is_reasoning_model",
    "openai_client",
    "snapshot_model",
]
