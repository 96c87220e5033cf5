"""Record calls to a local OpenAI-compatible server (Ollama, vLLM, llama.cpp server).

    ollama serve & ollama pull llama3.1:8b
    python examples/local_server.py http://localhost:11434/v1 llama3.1:8b

The provider is recorded from the base URL ("ollama" here). Local models have no list price: give them a
per-hour price in a prices file to compare them with the API (`costtrack prices show llama3.1:8b`):

    # prices.toml
    [models."llama3.1:8b"]
    per_hour = 0.45
"""

import sys

from openai import APIConnectionError, OpenAI

import costtrack

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:11434/v1"
model = sys.argv[2] if len(sys.argv) > 2 else "llama3.1:8b"

client = costtrack.wrap(OpenAI(base_url=base_url, api_key="not-needed", max_retries=0), endpoint="/api/local")
try:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi in five words."}])
except APIConnectionError:
    costtrack.flush()  # the failed attempt is recorded too
    sys.exit(f"no server answers at {base_url}: start one (`ollama serve`), or give its URL as the first argument")
print(reply.choices[0].message.content)
costtrack.flush()
