"""Routing policies: pick the model (and client) for each call, and tag the decision.

    router = costtrack.route(
        costtrack.Privacy(contains_pii, local=(ollama, "llama3.2")),    # PII never leaves the machine
        costtrack.DevProd(dev="gpt-4o-mini"),                         # COSTTRACK_ENV=dev: the cheap model
        costtrack.ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2),
    )
    client = costtrack.wrap(OpenAI(), router=router)

Policies are small objects combined in order (`route(a, b)` or `a | b`). Each sees the
request with the model chosen so far and may change it, or say nothing; a *final*
decision (Privacy sending a request to the local client) ends the routing. Decisions
are recorded as tags on the call's records: `route` (the labels of the decisions
taken, joined by "/": "cheap", "local", "dev/cheap", ...), and `ab_test` / `ab_arm`.

Routing is installed like the fallback: on the copy `wrap()` returns, per resource
instance (`create`, `parse` of chat.completions, responses, messages). A routed call
goes to the chosen model on the wrapped client (through its fallback chain, if the
chosen model is in it), or to another client given as a `(client, model)` pair,
wrapped with the same tracker.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import random as _random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .call_context import context, current
from .callbacks import plain_answer, require_plain
from .errors import ConfigError
from .fallback import CheapFirst, Clients, check_entry, patch_resources, resolve_path, reusable
from .fallback import install as install_fallback

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = [
    "ABTest", "Decision", "DevProd", "Policy", "Privacy", "RouteRequest", "Router", "Tiered",
    "install_policies", "route",
]  # fmt: skip

Target = Any  # a model name, or a (client, model name) pair

#: `COSTTRACK_ENV` values (case-insensitive) that DevProd treats as development; anything else is production.
DEV_ENVS = frozenset({"dev", "development", "local", "test", "testing"})


@dataclass(frozen=True)
class RouteRequest:
    """What a policy sees: the call's operation, the model chosen so far, the messages and the context user.

    `messages` is the conversation in chat form, system prompt included: OpenAI chat
    `messages` as given; Responses `instructions` + `input` (a string input becomes one
    user message); Anthropic `system` + `messages`. `kwargs` are the call's arguments.
    """

    operation: str
    model: str | None
    requested: str | None
    messages: list[Any]
    user: str | None
    kwargs: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, operation: str, kwargs: Mapping[str, Any]) -> RouteRequest:
        model = kwargs.get("model")
        model = model if isinstance(model, str) else None
        return cls(operation, model, model, _messages(operation, kwargs), current().user, kwargs)


def _messages(operation: str, kwargs: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    if operation == "responses":
        if kwargs.get("instructions"):
            out.append({"role": "system", "content": kwargs["instructions"]})
        given = kwargs.get("input")
        if isinstance(given, str):
            out.append({"role": "user", "content": given})
        elif isinstance(given, (list, tuple)):
            out.extend(given)
        return out
    if operation == "messages" and kwargs.get("system"):
        out.append({"role": "system", "content": kwargs["system"]})
    given = kwargs.get("messages")
    if isinstance(given, (list, tuple)):
        out.extend(given)
    elif given is not None:
        try:
            out.extend(given)
        except TypeError:
            pass
    return out


@dataclass(frozen=True)
class Decision:
    """A policy's answer: the target (None: keep the model), tags to record, and whether routing stops here."""

    target: Target | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    final: bool = False


def _model_of(target: Target) -> str:
    return target if isinstance(target, str) else target[1]


def _check_target(target: Any, where: str) -> Target:
    client, model = check_entry(target, where)
    return model if client is None else (client, model)


class Policy(ABC):
    """Base of the routing policies: `decide(request)`; `a | b` combines them into a Router."""

    @abstractmethod
    def decide(self, request: RouteRequest) -> Decision | None:
        ...

    def targets(self) -> list[Target]:
        """Every target this policy may pick (checked and wrapped at install time)."""
        return []

    def __or__(self, other: Any) -> Router:
        return Router(self, other)

    def __ror__(self, other: Any) -> Router:
        return Router(other, self)


class Tiered(Policy):
    """A classifier picks the tier of each request: "cheap" or "strong" (or your own labels).

        Tiered(lambda messages: "strong" if needs_reasoning(messages) else "cheap",
               cheap="gpt-4o-mini", strong="gpt-4o")

    `classify(messages)` gets the conversation (see RouteRequest.messages); with
    `on_request=True` it gets the whole RouteRequest instead. Extra tiers: `tiers={"mid": "gpt-4.1-mini"}`.
    Tag: `route` = the tier.
    """

    def __init__(
        self,
        classify: Callable[[Any], str],
        *,
        cheap: Target,
        strong: Target,
        tiers: Mapping[str, Target] | None = None,
        on_request: bool = False,
    ) -> None:
        if not callable(classify):
            raise ConfigError("Tiered: classify must be a callable, classify(messages) -> 'cheap' or 'strong'")
        require_plain(classify, "Tiered: classify")
        table = {"cheap": cheap, "strong": strong, **dict(tiers or {})}
        self.tiers = {str(label): _check_target(target, f"Tiered tier {label!r}") for label, target in table.items()}
        self.classify = classify
        self.on_request = on_request

    def __repr__(self) -> str:
        return f"Tiered({', '.join(f'{k}={_model_of(v)!r}' for k, v in self.tiers.items())})"

    def decide(self, request: RouteRequest) -> Decision:
        label = plain_answer(self.classify(request if self.on_request else request.messages), "Tiered: classify")
        if label not in self.tiers:
            raise ConfigError(f"Tiered: the classifier returned {label!r}; expected one of {', '.join(self.tiers)}")
        return Decision(self.tiers[label], {"route": label})

    def targets(self) -> list[Target]:
        return list(self.tiers.values())


class Privacy(Policy):
    """Keep private requests on a local model: `is_private(messages)` True sends the call to `local`, final.

        Privacy(contains_pii, local=(OpenAI(base_url="http://localhost:11434/v1", api_key="ollama"), "llama3.2"))

    Tag: `route` = "local" (the decision is final: no later policy can send it elsewhere),
    else "api" (later policies decide the model).
    """

    def __init__(self, is_private: Callable[[Any], bool], *, local: Target, on_request: bool = False) -> None:
        if not callable(is_private):
            raise ConfigError("Privacy: is_private must be a callable, is_private(messages) -> bool")
        require_plain(is_private, "Privacy: is_private")
        self.is_private = is_private
        self.local = _check_target(local, "Privacy local")
        self.on_request = on_request

    def __repr__(self) -> str:
        return f"Privacy(local={_model_of(self.local)!r})"

    def decide(self, request: RouteRequest) -> Decision:
        if plain_answer(self.is_private(request if self.on_request else request.messages), "Privacy: is_private"):
            return Decision(self.local, {"route": "local"}, final=True)
        return Decision(None, {"route": "api"})

    def targets(self) -> list[Target]:
        return [self.local]


class DevProd(Policy):
    """One model in development, another (or the requested one) in production.

    The environment is `env=` when given, else `$COSTTRACK_ENV` read at each call, else
    "prod". "dev", "development", "local", "test", "testing" mean development.
    Tag: `route` = "dev" or "prod".
    """

    def __init__(self, *, dev: Target, prod: Target | None = None, env: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.dev = _check_target(dev, "DevProd dev")
        self.prod = None if prod is None else _check_target(prod, "DevProd prod")
        if env is not None and (not isinstance(env, str) or not env.strip()):
            raise ConfigError(f"DevProd: env must be a non-empty string such as 'dev' or 'prod', not {env!r}")
        self.env = env
        self.environ = environ if environ is not None else os.environ

    def __repr__(self) -> str:
        return f"DevProd(dev={_model_of(self.dev)!r}, prod={None if self.prod is None else _model_of(self.prod)!r})"

    def stage(self) -> str:
        """ "dev" or "prod", for the environment in force now."""
        env = self.env if self.env is not None else self.environ.get("COSTTRACK_ENV", "prod")
        return "dev" if env.strip().lower() in DEV_ENVS else "prod"

    def decide(self, request: RouteRequest) -> Decision:
        stage = self.stage()
        return Decision(self.dev if stage == "dev" else self.prod, {"route": stage})

    def targets(self) -> list[Target]:
        return [self.dev] + ([self.prod] if self.prod is not None else [])


class ABTest(Policy):
    """Send a share of the calls asking for `control` to `variant`; sticky per user.

        ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2)

    With a user (`costtrack.context(user=...)`), the arm is a hash of the experiment
    name and the user: the same user always gets the same arm, and about `share` of
    users get the variant. Without a user, `random()` (injectable) draws each call.
    Applies to calls whose model (so far) is the control's. Tags: `ab_test` = `name`
    (default "control-vs-variant"), `ab_arm` = "control" or "variant".
    """

    def __init__(
        self,
        *,
        control: Target,
        variant: Target,
        share: float,
        name: str | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        self.control = _check_target(control, "ABTest control")
        self.variant = _check_target(variant, "ABTest variant")
        if self.control == self.variant:
            raise ConfigError(f"ABTest: control and variant are the same ({_model_of(self.control)!r})")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise ConfigError(f"ABTest: share must be a number from 0 to 1 (the variant's share), not {share!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"ABTest: name must be a non-empty string, not {name!r}")
        if random is not None and not callable(random):
            raise ConfigError("ABTest: random must be a callable returning a float in [0, 1)")
        self.share = float(share)
        self.name = name or f"{_model_of(self.control)}-vs-{_model_of(self.variant)}"
        self.random = random or _random.random

    def __repr__(self) -> str:
        return f"ABTest({self.name!r}, share={self.share})"

    def bucket(self, user: str) -> float:
        """The user's position in [0, 1) for this experiment: a stable hash of name and user."""
        digest = hashlib.blake2b(f"{self.name}\x00{user}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    def arm(self, user: str | None = None) -> str:
        """ "variant" or "control" for a user (sticky), or a fresh draw without one."""
        position = self.bucket(user) if user is not None else self.random()
        return "variant" if position < self.share else "control"

    def decide(self, request: RouteRequest) -> Decision | None:
        if request.model != _model_of(self.control):
            return None
        arm = self.arm(request.user)
        return Decision(self.variant if arm == "variant" else self.control, {"ab_test": self.name, "ab_arm": arm})

    def targets(self) -> list[Target]:
        return [self.control, self.variant]


class _Callable(Policy):
    """A plain function as a policy: fn(request) -> Decision, a target, or None."""

    def __init__(self, fn: Callable[[RouteRequest], Any]) -> None:
        require_plain(fn, "a routing function")
        self.fn = fn

    def __repr__(self) -> str:
        return f"policy({getattr(self.fn, '__name__', self.fn)!r})"

    def decide(self, request: RouteRequest) -> Decision | None:
        out = plain_answer(self.fn(request), "a routing function")
        if out is None or isinstance(out, Decision):
            return out
        return Decision(_check_target(out, "routing function"))


@dataclass(frozen=True)
class Plan:
    """What a Router decided for one call: the target (None: unchanged) and the tags to record."""

    target: Target | None
    tags: dict[str, Any]


class Router(Policy):
    """Policies applied in order; the first final decision ends the routing.

    `route` tags of successive decisions are joined with "/" ("api/cheap"); other tags merge.
    """

    def __init__(self, *policies: Any) -> None:
        flat: list[Policy] = []
        for policy in policies:
            if isinstance(policy, Router):
                flat.extend(policy.policies)
            elif isinstance(policy, Policy):
                flat.append(policy)
            elif isinstance(policy, CheapFirst):
                raise ConfigError("route(): CheapFirst is a fallback, not a routing policy; pass it as wrap(fallback=...)")
            elif callable(policy):
                flat.append(_Callable(policy))
            else:
                raise ConfigError(
                    f"route(): {policy!r} is not a routing policy (Tiered, Privacy, DevProd, ABTest, or a function)"
                )
        if not flat:
            raise ConfigError("route(): no policies given")
        self.policies: tuple[Policy, ...] = tuple(flat)

    def __repr__(self) -> str:
        return f"route({', '.join(map(repr, self.policies))})"

    def plan(self, request: RouteRequest) -> Plan:
        target: Target | None = None
        tags: dict[str, Any] = {}
        routes: list[str] = []
        for policy in self.policies:
            decision = policy.decide(request)
            if decision is None:
                continue
            for key, value in decision.tags.items():
                if key == "route":
                    routes.append(str(value))
                else:
                    tags[key] = value
            if decision.target is not None:
                target = decision.target
                request = RouteRequest(
                    request.operation, _model_of(target), request.requested, request.messages, request.user, request.kwargs
                )
            if decision.final:
                break
        if routes:
            tags["route"] = "/".join(routes)
        return Plan(target, tags)

    def decide(self, request: RouteRequest) -> Decision | None:
        plan = self.plan(request)
        return Decision(plan.target, plan.tags)

    def targets(self) -> list[Target]:
        return [t for policy in self.policies for t in policy.targets()]


def route(*policies: Any) -> Router:
    """Combine routing policies, applied in order: `wrap(client, router=costtrack.route(a, b, c))`."""
    return Router(*policies)


# --------------------------------------------------------------------------- installing


_OPERATIONS = {("chat", "completions"): "chat.completions", ("responses",): "responses", ("messages",): "messages",
               ("beta", "messages"): "messages"}  # fmt: skip

# What routing replaces: the fallback's methods, plus the `.stream()` helpers of Responses and Messages, which
# send their request later, when the app enters the returned manager (chat.completions.stream calls `create`).
ROUTED = {
    "openai": ((("chat", "completions"), ("create", "parse")), (("responses",), ("create", "parse", "stream"))),
    "anthropic": ((("messages",), ("create", "parse", "stream")), (("beta", "messages"), ("create", "parse", "stream"))),
}


def _tag_lazy_request(manager: Any, tags: Mapping[str, Any]) -> None:
    """A `.stream()` manager sends its request when entered: apply the route's tags then (best effort).

    The SDKs keep that request as a private callable (sync) or coroutine (async) `__api_request`.
    """
    for name, value in list(vars(manager).items()):
        if not name.endswith("__api_request"):
            continue
        if inspect.iscoroutine(value):

            async def send_async(request: Any = value) -> Any:
                with context(tags=tags):
                    return await request

            setattr(manager, name, send_async())
        elif callable(value):

            def send(request: Any = value) -> Any:
                with context(tags=tags):
                    return request()

            setattr(manager, name, send)
        return


def _router_wrapper(
    current: Callable[..., Any], operation: str, router: Router, resolve: Callable[[Target], Callable[..., Any]],
    is_async: bool, lazy: bool,
) -> Callable[..., Any]:  # fmt: skip
    def prepare(kwargs: dict[str, Any]) -> tuple[Callable[..., Any], dict[str, Any], dict[str, Any]]:
        if not isinstance(kwargs.get("model"), str):  # e.g. responses.stream(response_id=...): nothing to route
            return current, kwargs, {}
        kwargs = reusable(kwargs)  # the policy reads the messages, and the call sends them
        plan = router.plan(RouteRequest.of(operation, kwargs))
        if plan.target is None:
            return current, kwargs, plan.tags
        return resolve(plan.target), {**kwargs, "model": _model_of(plan.target)}, plan.tags

    if lazy:  # .stream(): returns a manager at once (sync, even on async clients); the request is sent later

        @functools.wraps(current)
        def stream(**kwargs: Any) -> Any:
            method, args, tags = prepare(kwargs)
            manager = method(**args)
            if tags:
                _tag_lazy_request(manager, tags)
            return manager

        return stream

    if is_async:

        @functools.wraps(current)
        async def acreate(**kwargs: Any) -> Any:
            method, args, tags = prepare(kwargs)
            if not tags:
                return await method(**args)
            with context(tags=tags):
                return await method(**args)

        return acreate

    @functools.wraps(current)
    def create(**kwargs: Any) -> Any:
        method, args, tags = prepare(kwargs)
        if not tags:
            return method(**args)
        with context(tags=tags):
            return method(**args)

    return create


def install_router(client: Any, router: Any, *, api: str, tracker: Tracker | None,
                   options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Install routing on a wrapped client's resources (this instance only)."""
    router = router if isinstance(router, Router) else Router(router)
    clients = Clients(client, api, tracker, "route", options)
    others = {id(t[0]): clients.get(t[0]) for t in router.targets() if not isinstance(t, str)}
    is_async = clients.is_async

    def make(path: Sequence[str], name: str, current: Callable[..., Any]) -> Callable[..., Any]:
        def resolve(target: Target) -> Callable[..., Any]:
            if isinstance(target, str):
                return current
            other = others.get(id(target[0])) or clients.get(target[0])
            return getattr(resolve_path(other, path), name)  # type: ignore[no-any-return]

        return _router_wrapper(current, _OPERATIONS[tuple(path)], router, resolve, is_async, name == "stream")

    patch_resources(client, api, make, ROUTED)


def install_policies(client: Any, *, api: str, provider: str, tracker: Tracker | None,
                     fallback: Any = None, router: Any = None, options: Mapping[str, Any] | None = None) -> Any:  # fmt: skip
    """Called by wrap(): install the fallback chain, then routing in front of it, on the wrapped copy.

    Copies made later (`client.with_options(...)`, `client.copy(...)`) get them too. `options` are the
    wrap's endpoint, tags and cache, which calls sent to another client of a chain or route get too.
    """
    if fallback is None and router is None:
        return client
    if fallback is not None and not isinstance(fallback, CheapFirst):
        raise ConfigError(f"wrap(fallback=...): expected a costtrack.CheapFirst, not {type(fallback).__qualname__}")
    if router is not None and not isinstance(router, Router):
        router = Router(*router) if isinstance(router, (list, tuple)) else Router(router)
    if fallback is not None:
        install_fallback(client, fallback, api=api, provider=provider, tracker=tracker, options=options)
    if router is not None:
        install_router(client, router, api=api, tracker=tracker, options=options)

    copy = client.copy  # the bound SDK method, before the instance attribute below hides it

    @functools.wraps(copy)
    def copy_with_policies(*args: Any, **kwargs: Any) -> Any:
        return install_policies(copy(*args, **kwargs), api=api, provider=provider, tracker=tracker,
                                fallback=fallback, router=router, options=options)  # fmt: skip

    client.copy = copy_with_policies
    client.with_options = copy_with_policies
    return client
