"""Prompt text and prompt caching: how many tokens a prompt counts, and which prefix of it is cached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .canonical import canonical
from .models import CHARS_PER_TOKEN, count_text_tokens
from .outcomes import BadRequest
from .state import SimulatorState

#: OpenAI caches prompts of at least this many tokens, in steps of ``_OPENAI_CACHE_BLOCK``.
_OPENAI_CACHE_MIN = 1024
_OPENAI_CACHE_BLOCK = 128
#: Anthropic caches a prefix only from this many tokens (a simplification: one minimum for all models).
_ANTHROPIC_CACHE_MIN = 1024
_ANTHROPIC_MAX_BREAKPOINTS = 4
_ANTHROPIC_LOOKBACK_BLOCKS = 20
#: Seconds a cached prefix lives after its last use: OpenAI keeps one "5 to 10 minutes of inactivity" (the
#: shorter here); Anthropic 5 minutes or, with ttl "1h", an hour, each read refreshing it.
_OPENAI_CACHE_TTL = 300.0
_ANTHROPIC_TTL = {"5m": 300.0, "1h": 3600.0}


@dataclass
class _AnthropicPrompt:
    total: int
    blocks: list[tuple[str, str | None]]  # (serialized block, cache ttl if it is a breakpoint)
    overhead: int


class Prompts(SimulatorState):
    """Renders OpenAI and Anthropic prompts as text, and remembers the prefixes each provider has cached."""

    # ------------------------------------------------------------------ OpenAI prompt caching

    def _openai_cached(self, model: str, canon: str, prompt_tokens: int) -> int:
        """Automatic prefix caching: 128-token blocks, hits from 1024 tokens, per model."""
        if not self.prompt_cache or prompt_tokens < _OPENAI_CACHE_MIN:
            return 0
        block_chars = _OPENAI_CACHE_BLOCK * CHARS_PER_TOKEN
        n_blocks = len(canon) // block_chars
        h = hashlib.sha256(model.encode())
        hashes: list[bytes] = []
        for i in range(n_blocks):
            h.update(canon[i * block_chars : (i + 1) * block_chars].encode("utf-8", "surrogatepass"))
            hashes.append(h.copy().digest())
        now = self._time()
        seen = self._openai_seen
        hit = 0
        for i, digest in enumerate(hashes):
            if seen.get(digest, -1.0) >= now:
                hit = i + 1
            else:
                break
        expires = now + _OPENAI_CACHE_TTL
        seen.update(dict.fromkeys(hashes, expires))  # used now: each block's life starts again
        cached = hit * _OPENAI_CACHE_BLOCK
        return min(cached, prompt_tokens) if cached >= _OPENAI_CACHE_MIN else 0

    @staticmethod
    def _content_text(content: Any) -> str:
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts: list[str] = []
            for part in content:
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict):
                    kind = part.get("type", "")
                    if isinstance(part.get("text"), str):
                        parts.append(part["text"])
                    elif kind in ("image_url", "input_image", "image"):
                        # An image costs a fixed 85 tokens here, whatever its size.
                        ref = canonical(part)
                        parts.append(("<image:" + hashlib.sha256(ref.encode()).hexdigest())[: 85 * CHARS_PER_TOKEN].ljust(85 * CHARS_PER_TOKEN, "."))
                    else:
                        parts.append(canonical(part))
                else:
                    parts.append(canonical(part))
            return "".join(parts)
        return canonical(content)

    def _chat_prompt(self, body: dict[str, Any]) -> str:
        segments: list[str] = []
        if body.get("tools"):
            segments.append("<|tools|>" + canonical(body["tools"]) + "<|end|>")
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") != "text":
            segments.append("<|format|>" + canonical(fmt) + "<|end|>")
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            text = self._content_text(message.get("content"))
            if message.get("tool_calls"):
                text += canonical(message["tool_calls"])
            segments.append(f"<|im_start|>{message.get('role', 'user')}\n{text}<|im_end|>\n")
        segments.append("<|im_start|>assistant")
        return "".join(segments)

    def _responses_prompt(self, body: dict[str, Any]) -> str:
        segments: list[str] = []
        if body.get("tools"):
            segments.append("<|tools|>" + canonical(body["tools"]) + "<|end|>")
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") != "text":
            segments.append("<|format|>" + canonical(fmt) + "<|end|>")
        if isinstance(body.get("instructions"), str):
            segments.append(f"<|im_start|>developer\n{body['instructions']}<|im_end|>\n")
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        for item in items or []:
            if not isinstance(item, dict):
                continue
            if "role" in item:
                text = self._content_text(item.get("content"))
                segments.append(f"<|im_start|>{item['role']}\n{text}<|im_end|>\n")
            else:
                segments.append(f"<|im_start|>{item.get('type', 'item')}\n{canonical(item)}<|im_end|>\n")
        segments.append("<|im_start|>assistant")
        return "".join(segments)

    # ------------------------------------------------------------------ Anthropic prompt caching

    def _anthropic_prompt(self, body: dict[str, Any]) -> _AnthropicPrompt:
        blocks: list[tuple[str, str | None]] = []

        def ttl_of(block: Any) -> str | None:
            cc = block.get("cache_control") if isinstance(block, dict) else None
            if isinstance(cc, dict) and cc.get("type", "ephemeral") == "ephemeral":
                return "1h" if cc.get("ttl") == "1h" else "5m"
            return None

        for tool in body.get("tools") or []:
            blocks.append(("<tool>" + canonical({k: v for k, v in tool.items() if k != "cache_control"}) if isinstance(tool, dict) else canonical(tool), ttl_of(tool)))
        system = body.get("system")
        if isinstance(system, str) and system:
            blocks.append(("<system>" + system, None))
        elif isinstance(system, list):
            for i, block in enumerate(system):
                text = self._content_text([block])
                blocks.append((("<system>" if i == 0 else "") + text, ttl_of(block)))
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            marker = "\n\nHuman: " if message.get("role") == "user" else "\n\nAssistant: "
            content = message.get("content")
            if isinstance(content, str):
                blocks.append((marker + content, None))
                continue
            for i, block in enumerate(content or []):
                if isinstance(block, dict) and block.get("type") not in ("text", "image", "document"):
                    text = canonical({k: v for k, v in block.items() if k != "cache_control"})
                else:
                    text = self._content_text([block])
                blocks.append(((marker if i == 0 else "") + text, ttl_of(block)))
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        if isinstance(fmt, dict):
            blocks.append(("<format>" + canonical(fmt), None))
        auto = body.get("cache_control")
        if isinstance(auto, dict) and blocks:
            # Automatic caching: a breakpoint on the last cacheable block.
            last_text, last_ttl = blocks[-1]
            blocks[-1] = (last_text, last_ttl or ("1h" if auto.get("ttl") == "1h" else "5m"))
        overhead = 3  # "\n\nAssistant:" after the last block: never part of a cached prefix
        return _AnthropicPrompt(
            total=sum(count_text_tokens(b) for b, _ in blocks) + overhead, blocks=blocks, overhead=overhead
        )

    def _anthropic_cache(self, model: str, prompt: _AnthropicPrompt) -> tuple[int, int, int]:
        """(cache read, 5-minute writes, 1-hour writes) for a prompt, updating the cache."""
        breakpoints = [i for i, (_, ttl) in enumerate(prompt.blocks) if ttl is not None]
        if len(breakpoints) > _ANTHROPIC_MAX_BREAKPOINTS:
            raise BadRequest(f"A maximum of {_ANTHROPIC_MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(breakpoints)}.")
        if not self.prompt_cache or not breakpoints:
            return 0, 0, 0
        h = hashlib.sha256(model.encode())
        hashes: list[bytes] = []
        positions: list[int] = []
        pos = 0
        for text, _ in prompt.blocks:
            h.update(text.encode("utf-8", "surrogatepass") + b"\x1e")
            hashes.append(h.copy().digest())
            pos += count_text_tokens(text)
            positions.append(pos)
        now = self._time()
        seen = self._anthropic_seen
        hit = -1
        for bp in breakpoints:
            for j in range(bp, max(-1, bp - _ANTHROPIC_LOOKBACK_BLOCKS - 1), -1):
                if seen.get(hashes[j], (-1.0, 0.0))[0] >= now:
                    hit = max(hit, j)
                    break
        if hit >= 0:
            # A read refreshes the entry for its own ttl.
            seen[hashes[hit]] = (now + seen[hashes[hit]][1], seen[hashes[hit]][1])
        read = positions[hit] if hit >= 0 else 0
        last = read
        w5 = w1 = 0
        for bp in breakpoints:
            if bp <= hit or positions[bp] < _ANTHROPIC_CACHE_MIN:
                continue
            segment = positions[bp] - last
            if prompt.blocks[bp][1] == "1h":
                w1 += segment
            else:
                w5 += segment
            last = positions[bp]
            ttl = _ANTHROPIC_TTL[prompt.blocks[bp][1] or "5m"]
            seen[hashes[bp]] = (now + ttl, ttl)
        return read, w5, w1
