"""The recommendation: API or self-hosted, and the reasons, from the cost, capacity, privacy and latency."""

from __future__ import annotations

import math
from typing import Literal

from .inputs import Scenario
from .outputs import CloudCost, LocalCost

__all__ = ["recommend"]


def recommend(s: Scenario, cloud: CloudCost, local: LocalCost, breakeven_rpd: float | None,
              breakeven_tokens: float | None, capacity_rpd: float | None) -> tuple[Literal["api", "self-hosted"], list[str]]:  # fmt: skip
    """API or self-hosted for `s`, and the reasons: cost and breakeven, capacity, privacy, latency, scale."""
    from ...format import count, usd

    w = s.workload
    volume = (f"{count(w.requests_per_day)} requests/day" if w.requests_per_day is not None
              else f"{count(w.monthly_tokens_total)} tokens/month")  # fmt: skip
    cheaper: Literal["api", "self-hosted"] = "self-hosted" if local.monthly_usd <= cloud.monthly_usd else "api"
    gpus = f"{local.gpus} x {s.hardware.name}"
    if breakeven_rpd is not None:
        at = f"{count(math.ceil(breakeven_rpd))} requests/day"
    elif breakeven_tokens is not None and w.requests_per_day is None:
        at = f"{count(math.ceil(breakeven_tokens))} tokens/month"
    else:
        at = None
    if cheaper == "self-hosted":
        cost = (f"volume: at {volume} self-hosting ({gpus}) costs {usd(local.monthly_usd)}/month against "
                f"{usd(cloud.monthly_usd)}/month on {s.api.model}"
                + (f"; it breaks even from {at}" if at else ""))  # fmt: skip
    elif at is not None:
        cost = (f"volume: at {volume} {s.api.model} costs {usd(cloud.monthly_usd)}/month against "
                f"{usd(local.monthly_usd)}/month self-hosted ({gpus}); self-hosting breaks even from {at}")
    elif local.capacity_checked and capacity_rpd is not None:
        cost = (f"volume: {s.api.model} is cheaper at every volume: one {s.hardware.name} costs "
                f"{usd(local.monthly_per_gpu_usd)}/month but saturates at {count(capacity_rpd)} requests/day, "
                f"before it pays for itself")
    elif local.capacity_checked:
        cost = (f"volume: {s.api.model} is cheaper at every volume: each {s.hardware.name} saturates before "
                f"it pays for itself ({usd(local.monthly_per_gpu_usd)}/month)")
    else:
        cost = f"volume: {s.api.model} costs nothing at {volume}, so self-hosting never pays off"

    reasons: list[str] = []
    recommendation = cheaper
    if s.private_data:
        recommendation = "self-hosted"
        extra = local.monthly_usd - cloud.monthly_usd
        reasons.append(
            "privacy: the data must not leave your infrastructure (--private-data), so self-host"
            + (f" even though it costs {usd(extra)}/month more" if extra > 0 else "")
        )
    if s.latency_critical:
        if recommendation == "api":
            recommendation = "self-hosted"
            extra = local.monthly_usd - cloud.monthly_usd
            reasons.append(
                "latency: self-hosting avoids the network round trip and the provider's queue "
                f"(--latency-critical), for {usd(extra)}/month more"
            )
        else:
            reasons.append("latency: self-hosting also avoids the network round trip and the provider's queue")
    reasons.append(cost)
    if not local.capacity_checked:
        reasons.append(
            "capacity: not checked, one GPU is assumed to carry the peak; give --gpu-requests-per-s or "
            "--gpu-tokens-per-s (or benchmark records with --from-db) to size it"
        )
    elif local.gpus > 1:
        reasons.append(
            f"capacity: the peak ({s.peak_factor:g}x the average over {s.hours_per_day:g} h/day) needs "
            f"{local.gpus} GPUs"
        )
    if recommendation == "self-hosted" and not s.private_data:
        reasons.append("operations: self-hosting adds DevOps time, monitoring and on-call that are not costed here")
    elif recommendation == "api" and cloud.monthly_usd < 500:
        reasons.append(
            f"scale: {usd(cloud.monthly_usd)}/month of API spend is under the $500/month below which "
            "self-hosting's operational overhead is rarely worth it"
        )
    return recommendation, reasons
