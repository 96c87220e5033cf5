"""Record real Anthropic calls, prompt caching included (needs ANTHROPIC_API_KEY).

    ANTHROPIC_API_KEY=sk-ant-... python examples/anthropic_quickstart.py && costtrack stats
"""

import os
import sys

from anthropic import Anthropic

import costtrack

if not os.environ.get("ANTHROPIC_API_KEY"):
    sys.exit("set ANTHROPIC_API_KEY to run this example (or run `costtrack demo` for an offline one)")

client = costtrack.wrap(Anthropic(), endpoint="/api/support")
style_guide = "You are a support assistant. Be concise and cite the help article. " * 400  # over Haiku 4.5's 4,096-token cache minimum
system = [{"type": "text", "text": style_guide, "cache_control": {"type": "ephemeral"}}]

for question in ("How do I reset my password?", "Can I export my data?"):
    # The first call writes the prompt cache, the second reads it: both priced at their own rates.
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=200, system=system, messages=[{"role": "user", "content": question}]
    ) as stream:
        print(stream.get_final_text())

costtrack.flush()
print("recorded: run `costtrack stats` (see tokens_cached_input and tokens_cache_write in `costtrack export`)")
