"""Record real OpenAI calls (needs OPENAI_API_KEY), then look at them with `costtrack stats`.

    OPENAI_API_KEY=sk-... python examples/openai_quickstart.py && costtrack stats --by endpoint
"""

import os
import sys

from openai import OpenAI

import costtrack

if not os.environ.get("OPENAI_API_KEY"):
    sys.exit("set OPENAI_API_KEY to run this example (or run `costtrack demo` for an offline one)")

client = costtrack.wrap(OpenAI(), endpoint="/api/summarize")

reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Summarise the plot of Hamlet in one sentence."}],
)
print(reply.choices[0].message.content)

with costtrack.context(endpoint="/api/chat", user="demo-user"):
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to five."}], stream=True
    ):
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()

costtrack.flush()
print("recorded: run `costtrack stats --by endpoint`")
