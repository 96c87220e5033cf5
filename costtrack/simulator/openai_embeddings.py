"""OpenAI embeddings: deterministic unit vectors, as floats or base64, for a ``POST …/embeddings``."""

from __future__ import annotations

import array
import base64
import math
import random
import sys
from typing import Any

from .canonical import canonical, digest
from .models import count_text_tokens
from .outcomes import BadRequest
from .state import SimulatorState


class OpenAIEmbeddings(SimulatorState):
    """Answers ``POST …/embeddings``."""

    def _embedding_body(self, body: dict[str, Any], *, usage: bool) -> dict[str, Any]:
        raw = body.get("input", "")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs: list[Any] = [raw]
        else:
            inputs = list(raw) if isinstance(raw, list) else [raw]
        if not inputs or any(i == "" or i == [] for i in inputs):
            raise BadRequest("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0 else 16
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            tokens += len(item) if isinstance(item, list) else count_text_tokens(str(item))
            rng = random.Random(int.from_bytes(digest("embedding", body.get("model"), canonical(item))[:8], "big"))
            vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            floats = array.array("f", (v / norm for v in vec))
            if sys.byteorder != "little":  # pragma: no cover
                floats.byteswap()
            embedding: Any = base64.b64encode(floats.tobytes()).decode() if b64 else floats.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        result: dict[str, Any] = {"object": "list", "data": data, "model": str(body.get("model", ""))}
        if usage:
            result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return result
