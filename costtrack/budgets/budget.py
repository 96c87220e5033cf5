"""A budget: an amount per period and scope, its thresholds, and BudgetExceeded."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..alerts import Sink, as_sink
from ..errors import ConfigError, CosttrackError
from ..format import budget as format_budget

if TYPE_CHECKING:
    from ..records import CallRecord


UTC = timezone.utc
ENV_MONTHLY_BUDGET = "COSTTRACK_MONTHLY_BUDGET_USD"
PERIODS = ("month", "week", "day")
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


# --------------------------------------------------------------------------- periods and amounts


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the calendar month, ISO week (Monday) or day that contains `at`."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if period == "month":
        return day.replace(day=1), datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "day":
        return day, day + timedelta(days=1)
    raise ConfigError(f"budget period {period!r} is not one of month, week, day")


def parse_usd(text: str, what: str = "budget") -> float:
    """A positive USD amount from text such as "50", "$1,000.50"; ConfigError otherwise."""
    cleaned = str(text).strip().lstrip("$").replace(",", "").replace("_", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not an amount in USD: use a number such as 50 or 1000.50") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} {text!r} must be a positive amount in USD, such as 50")
    return value


def _amount(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"Budget {name}={value!r} is not a number: give USD, e.g. {name}=50")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Budget {name}={value!r} must be a positive amount in USD")
    return value


_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")


def _undated(model: str) -> str:
    """A model name less its snapshot date (OpenAI's -2024-07-18, Anthropic's -20250929)."""
    return _DATED.sub("", model)


def _tag_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def threshold_label(threshold: float) -> str:
    return f"{threshold:g}"


def one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return f"{type(orig if orig is not None else exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- Budget


class Budget:
    """A spend limit for one period (a calendar month, ISO week or day, in UTC), optionally scoped.

    Args:
        monthly_usd: the amount per `period` (USD); or give `weekly_usd` / `daily_usd`.
        period: "month" (default), "week" or "day"; implied by `weekly_usd` / `daily_usd`.
        thresholds: fractions of the amount that raise an alert, once each per period
            (default 0.5, 0.8, 1.0; values above 1 are allowed, e.g. 1.2).
        endpoint, model, user, tag: the scope; only matching records count. `model`
            matches the model asked for or answered, exactly; `tag` is "key=value", a
            (key, value) pair or a one-item dict, compared as text.
        on_alert / sinks: where alerts go: callables taking an :class:`~costtrack.alerts.Alert`,
            webhook URLs, "logging". Default: logging. ``$COSTTRACK_ALERT_WEBHOOK`` is added to every budget.
        hard_limit: refuse (raise :class:`BudgetExceeded`) a call that would pass the amount.
        projection: alert once when the period's end, projected from the recent rate, passes the amount.
        name: the budget's key in the alert state (default: period, amount and scope). Rename it and
            its alerts fire again.
    """

    __slots__ = (
        "_key",
        "_tag_value",
        "amount_usd",
        "endpoint",
        "hard_limit",
        "model",
        "name",
        "period",
        "projection",
        "sinks",
        "tag",
        "thresholds",
        "user",
    )  # fmt: skip

    def __init__(
        self,
        monthly_usd: float | None = None,
        *,
        period: str | None = None,
        weekly_usd: float | None = None,
        daily_usd: float | None = None,
        thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
        endpoint: str | None = None,
        model: str | None = None,
        user: str | None = None,
        tag: str | tuple[str, Any] | Mapping[str, Any] | None = None,
        on_alert: Sink | str | None = None,
        sinks: Iterable[Sink | str] = (),
        hard_limit: bool = False,
        projection: bool = True,
        name: str | None = None,
    ) -> None:
        given = [(n, v) for n, v in (("monthly_usd", monthly_usd), ("weekly_usd", weekly_usd), ("daily_usd", daily_usd)) if v is not None]
        if len(given) != 1:
            raise ConfigError("a Budget needs exactly one amount: monthly_usd=..., weekly_usd=... or daily_usd=...")
        which, value = given[0]
        implied = {"monthly_usd": None, "weekly_usd": "week", "daily_usd": "day"}[which]
        if period is not None and period not in PERIODS:
            raise ConfigError(f"Budget period={period!r} is not one of 'month', 'week', 'day'")
        if implied is not None and period is not None and period != implied:
            raise ConfigError(f"Budget {which}= is a {implied}ly amount but period={period!r}: drop one")
        self.amount_usd = _amount(value, which)
        self.period = implied or period or "month"
        ts: list[float] = []
        if isinstance(thresholds, (int, float, str)):
            raise ConfigError(f"Budget thresholds={thresholds!r}: give a list of fractions, e.g. [0.8] or [0.5, 0.8, 1.0]")
        for t in thresholds:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise ConfigError(f"Budget threshold {t!r} is not a positive fraction of the budget (e.g. 0.8 for 80%)")
            if t > 10:
                raise ConfigError(f"Budget threshold {t!r} looks like a percentage: give fractions, e.g. 0.8 for 80%")
            ts.append(float(t))
        self.thresholds = tuple(sorted(set(ts)))
        for field_name, field_value in (("endpoint", endpoint), ("model", model), ("user", user), ("name", name)):
            if field_value is not None and (not isinstance(field_value, str) or not field_value):
                raise ConfigError(f"Budget {field_name}={field_value!r} must be a non-empty string")
        self.endpoint = endpoint
        self.model = model
        self.user = user
        self.tag = _parse_tag(tag)
        # The value as given ({key: value} or (key, value)): a list, an object or None is matched as JSON, not text
        self._tag_value = _given_value(tag)
        items = ([on_alert] if on_alert is not None else []) + list(sinks)
        self.sinks: tuple[Sink, ...] = tuple(as_sink(s) for s in items)
        self.hard_limit = bool(hard_limit)
        self.projection = bool(projection)
        self.name = name
        self._key = self._make_key()

    # -- identity

    @property
    def scope(self) -> dict[str, str]:
        """The scope as text, e.g. {"endpoint": "/api/chat"}; empty for every call."""
        out: dict[str, str] = {}
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.model is not None:
            out["model"] = self.model
        if self.user is not None:
            out["user"] = self.user
        if self.tag is not None:
            out["tag"] = f"{self.tag[0]}={self.tag[1]}"
        return out

    @property
    def key(self) -> str:
        """The budget's identity in the alert state: `name`, else "period:amount[:scope]"."""
        return self._key

    def _make_key(self) -> str:
        if self.name:
            key = self.name
        else:
            scope = ",".join(f"{k}={v}" for k, v in self.scope.items())
            key = f"{self.period}:{self.amount_usd:g}" + (f":{scope}" if scope else "")
        if len(key) > 255:
            key = key[:230] + ":" + hashlib.sha256(key.encode()).hexdigest()[:16]
        return key

    @property
    def amount_field(self) -> str:
        return {"month": "monthly_usd", "week": "weekly_usd", "day": "daily_usd"}[self.period]

    def describe(self) -> str:
        """E.g. "$50.00/month (endpoint=/api/chat)"."""
        scope = ", ".join(f"{k}={v}" for k, v in self.scope.items())
        return f"{format_budget(self.amount_usd)}/{self.period}" + (f" ({scope})" if scope else "")

    def __repr__(self) -> str:
        parts = [f"{self.amount_field}={self.amount_usd:g}"]
        parts += [f"{k}={v!r}" for k, v in self.scope.items()]
        if self.hard_limit:
            parts.append("hard_limit=True")
        if self.name:
            parts.append(f"name={self.name!r}")
        return f"Budget({', '.join(parts)})"

    # -- scope

    def matches_record(self, record: CallRecord) -> bool:
        """Whether a record counts against this budget (its cost aside)."""
        if self.endpoint is not None and record.endpoint != self.endpoint:
            return False
        if self.user is not None and record.user != self.user:
            return False
        if self.model is not None and self.model != record.model and self.model != record.model_requested:
            return False
        if self.tag is not None:
            key, value = self.tag
            tags = record.tags
            if key not in tags or _tag_text(tags[key]) != value:
                return False
        return True

    def matches_call(self, endpoint: str, user: str | None, tags: Mapping[str, Any], model: str | None) -> bool:
        """Whether a call about to be sent is in scope; `model` is the one asked for."""
        return self.matches_context(endpoint, user, tags) and self.matches_requested(model)

    def matches_requested(self, model: Any) -> bool:
        """Whether a call asking for `model` may count against this budget: the budget's model, or its undated
        name when the budget names a dated snapshot (`gpt-4o-mini` is answered by `gpt-4o-mini-2024-07-18`)."""
        return self.model is None or model == self.model or (type(model) is str and _undated(self.model) == model)

    def matches_context(self, endpoint: str, user: str | None, tags: Mapping[str, Any]) -> bool:
        """Whether a call about to be sent is in scope as far as its endpoint, user and tags tell (not its model)."""
        if self.endpoint is not None and endpoint != self.endpoint:
            return False
        if self.user is not None and user != self.user:
            return False
        if self.tag is not None:
            key, value = self.tag
            if key not in tags or _tag_text(tags[key]) != value:
                return False
        return True

    def sql_conditions(self, dialect: str = "") -> list[Any]:
        """SQLAlchemy conditions on the records table for this scope (`dialect`: the database's, e.g. "sqlite")."""
        from sqlalchemy import and_, func, literal, or_
        from sqlalchemy.dialects.postgresql import JSONB

        from ..store.schema import records as t

        conds: list[Any] = []
        if self.endpoint is not None:
            conds.append(t.c.endpoint == self.endpoint)
        if self.user is not None:
            conds.append(t.c.user == self.user)
        if self.model is not None:
            conds.append(or_(t.c.model == self.model, t.c.model_requested == self.model))
        if self.tag is not None:
            key, value = self.tag
            given = self._tag_value
            path = '$."' + key.replace('"', '\\"') + '"'
            if given is None or isinstance(given, (list, dict)):
                # SQLite's json_extract gives a JSON null as NULL and a list or object minified; Postgres' ->> writes
                # them spaced: compared as JSON (a budget on such a tag counted $0 after every refresh on SQLite).
                if dialect == "sqlite":
                    kind = func.json_type(t.c.tags, path)
                    conds.append(kind == "null" if given is None else and_(
                        kind.in_(("array", "object")),
                        func.json_extract(t.c.tags, path) == json.dumps(given, separators=(",", ":"))))
                else:
                    conds.append(func.jsonb_typeof(t.c.tags[key]) == "null" if given is None
                                 else t.c.tags[key] == literal(given, JSONB))
                return conds
            text = t.c.tags[key].as_string() == value
            if dialect == "sqlite" and value in ("true", "false"):
                # SQLite's json_extract gives a JSON true as 1, so a boolean tag never equalled "true": its type
                # says it (the spend of a budget on a boolean tag was $0 after every refresh).
                text = or_(text, func.json_type(t.c.tags, path) == value)
            conds.append(text)
        return conds


_TEXT = object()  # a tag given as text ('key=value'): its value is that text, whatever it reads like


def _given_value(tag: Any) -> Any:
    """The tag's value as given in a mapping or pair (for JSON matching), or _TEXT."""
    if isinstance(tag, Mapping) and len(tag) == 1:
        return next(iter(tag.values()))
    if isinstance(tag, tuple) and len(tag) == 2:
        return tag[1]
    return _TEXT


def _parse_tag(tag: Any) -> tuple[str, str] | None:
    if tag is None:
        return None
    if isinstance(tag, str):
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ConfigError(f"Budget tag={tag!r} is not 'key=value'")
        return key, value
    if isinstance(tag, Mapping):
        if len(tag) != 1:
            raise ConfigError(f"Budget tag={dict(tag)!r} must have exactly one key (one budget per tag)")
        ((key, value),) = tag.items()
        return str(key), _tag_text(value)
    if isinstance(tag, tuple) and len(tag) == 2:
        return str(tag[0]), _tag_text(tag[1])
    raise ConfigError(f"Budget tag={tag!r} must be 'key=value', a (key, value) pair or {{key: value}}")


# --------------------------------------------------------------------------- the exception


class BudgetExceeded(CosttrackError):
    """A call was refused before it was sent: it would pass a budget with ``hard_limit=True``.

    The one exception costtrack raises into the app's calls on purpose. Nothing was
    sent and nothing was billed. Attributes: `budget` (the Budget), `spend_usd`
    (its period's spend so far), `reserved_usd` (estimates of this process's calls in
    flight), `estimate_usd` (this call's estimate), `period_start`, `period_end`.

    For Anthropic clients the exception raised is a subclass that is also an
    ``anthropic.AnthropicError``, so the SDK passes it on as is instead of wrapping it
    in a retried APIConnectionError; ``except costtrack.BudgetExceeded`` catches both.
    """

    def __init__(
        self,
        message: str,
        *,
        budget: Budget | None = None,
        spend_usd: float = 0.0,
        reserved_usd: float = 0.0,
        estimate_usd: float = 0.0,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.spend_usd = spend_usd
        self.reserved_usd = reserved_usd
        self.estimate_usd = estimate_usd
        self.period_start = period_start
        self.period_end = period_end


_sdk_exceptions: dict[str, type[BudgetExceeded]] = {}


def exception_class(api: str) -> type[BudgetExceeded]:
    """BudgetExceeded, or for the Anthropic SDK a subclass it will not wrap and retry."""
    if api != "anthropic":
        return BudgetExceeded
    cls = _sdk_exceptions.get(api)
    if cls is None:
        try:
            import anthropic

            base: type[Exception] = anthropic.AnthropicError
        except Exception:  # noqa: BLE001  # pragma: no cover - the SDK is there: the client came from it
            return BudgetExceeded
        cls = type("BudgetExceeded", (BudgetExceeded, base), {"__module__": __name__, "__doc__": BudgetExceeded.__doc__})
        _sdk_exceptions[api] = cls
    return cls


