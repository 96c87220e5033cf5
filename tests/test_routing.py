"""Routing policies: tiered, privacy, dev/prod, A/B; what is sent where, and the decisions recorded as tags."""

from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest

import costtrack
from costtrack.errors import ConfigError
from costtrack.fallback import CheapFirst
from costtrack.routing import ABTest, Decision, DevProd, Privacy, Router, RouteRequest, Tiered, route
from costtrack.simulator import (
    Simulator,
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    openai_client,
)


def sent(sim: Simulator) -> list[str]:
    return [json.loads(request.content)["model"] for request in sim.requests]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def in_order(records):
    return sorted(records, key=lambda r: r.timestamp)


def hard(messages) -> str:
    """A toy classifier: long or 'prove'/'analyze' questions need the strong model."""
    text = " ".join(str(m.get("content", "")) for m in messages)
    return "strong" if len(text) > 200 or re.search(r"\b(prove|analyze)\b", text) else "cheap"


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def contains_pii(messages) -> bool:
    return any(EMAIL.search(str(m.get("content", ""))) for m in messages)


def local_pair(sim: Simulator, is_async: bool = False):
    make = async_openai_client if is_async else openai_client
    return make(sim, base_url="http://localhost:11434/v1", api_key="ollama"), "llama3.2"


# --------------------------------------------------------------------------- tiered


def test_tiered_routing_picks_the_tier_and_records_it(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=Tiered(hard, cheap="gpt-4o-mini", strong="gpt-4o"))
    easy = client.chat.completions.create(model="gpt-4o", messages=ask("What is 2 + 2?"))
    tough = client.chat.completions.create(model="gpt-4o-mini", messages=ask("Please analyze this contract."))
    assert (easy.model, tough.model) == ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06")
    assert sent(sim) == ["gpt-4o-mini", "gpt-4o"]
    first, second = in_order(records())
    assert (first.model_requested, first.tags) == ("gpt-4o-mini", {"route": "cheap"})
    assert (second.model_requested, second.tags) == ("gpt-4o", {"route": "strong"})


def test_messages_given_as_a_generator_are_read_by_the_policy_and_still_sent(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=Tiered(hard, cheap="gpt-4o-mini", strong="gpt-4o"))
    client.chat.completions.create(model="gpt-4o", messages=(m for m in ask("Please analyze this contract.")))
    [body] = [json.loads(request.content) for request in sim.requests]
    assert body["model"] == "gpt-4o" and body["messages"] == ask("Please analyze this contract.")


def test_tiered_extra_tiers_and_the_whole_request(tracker, records):
    sim = Simulator()
    policy = Tiered(
        lambda request: "mid" if request.operation == "responses" else "cheap",
        cheap="gpt-4o-mini", strong="gpt-4o", tiers={"mid": "gpt-4.1-mini"}, on_request=True,
    )  # fmt: skip
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=policy)
    client.responses.create(model="gpt-4o", input="Summarize.")
    client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert sent(sim) == ["gpt-4.1-mini", "gpt-4o-mini"]
    assert [r.tags["route"] for r in in_order(records())] == ["mid", "cheap"]


def test_tiered_classifier_with_an_unknown_label_is_a_clear_error(tracker):
    client = costtrack.wrap(openai_client(Simulator()), tracker=tracker, router=Tiered(lambda m: "medium", cheap="a", strong="b"))
    with pytest.raises(ConfigError, match="returned 'medium'; expected one of cheap, strong"):
        client.chat.completions.create(model="gpt-4o", messages=ask("hi"))


# --------------------------------------------------------------------------- privacy


def test_privacy_keeps_pii_on_the_local_client(tracker, records):
    local, api = Simulator(), Simulator()
    ollama = local_pair(local)
    client = costtrack.wrap(openai_client(api), tracker=tracker, router=Privacy(contains_pii, local=ollama))
    private = client.chat.completions.create(model="gpt-4o", messages=ask("Email jane.doe@example.com the invoice."))
    public = client.chat.completions.create(model="gpt-4o", messages=ask("What is an invoice?"))
    assert type(private) is openai.types.chat.ChatCompletion and private.model == "llama3.2"
    assert public.model == "gpt-4o-2024-08-06"
    assert sent(local) == ["llama3.2"] and sent(api) == ["gpt-4o"]
    first, second = in_order(records())
    assert (first.provider, first.model_requested, first.tags) == ("ollama", "llama3.2", {"route": "local"})
    assert (second.provider, second.model_requested, second.tags) == ("openai", "gpt-4o", {"route": "api"})


def test_a_call_routed_to_another_client_keeps_the_wraps_endpoint_tags_and_cache(tracker, records):
    local, api = Simulator(), Simulator()
    client = costtrack.wrap(openai_client(api), tracker=tracker, endpoint="/api/chat", tags={"team": "support"},
                            cache=costtrack.MemoryCache(ttl=60), router=Privacy(contains_pii, local=local_pair(local)))  # fmt: skip
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=ask("Email jane.doe@example.com the invoice."))
    assert sent(local) == ["llama3.2"] and sent(api) == []  # the second one was a cache hit
    live, hit = in_order(records())
    for rec in (live, hit):
        assert (rec.endpoint, rec.tags) == ("/api/chat", {"team": "support", "route": "local"})
    assert (live.cache_hit, hit.cache_hit) == (False, True)


def test_privacy_sees_the_system_prompt(tracker, records):
    local, api = Simulator(), Simulator()
    ollama = local_pair(local)
    client = costtrack.wrap(openai_client(api), tracker=tracker, router=Privacy(contains_pii, local=ollama))
    client.responses.create(model="gpt-4o", instructions="The user is bob@example.org.", input="Hello")
    assert sent(local) == ["llama3.2"] and sent(api) == []


def test_privacy_is_final(tracker, records):
    local, api = Simulator(), Simulator()
    router = Privacy(contains_pii, local=local_pair(local)) | Tiered(lambda m: "strong", cheap="gpt-4o-mini", strong="gpt-4o")
    client = costtrack.wrap(openai_client(api), tracker=tracker, router=router)
    client.chat.completions.create(model="gpt-4o-mini", messages=ask("Reach me at a@b.co"))
    client.chat.completions.create(model="gpt-4o-mini", messages=ask("No secrets here"))
    assert sent(local) == ["llama3.2"] and sent(api) == ["gpt-4o"]
    assert [r.tags["route"] for r in in_order(records())] == ["local", "api/strong"]


async def test_async_privacy_split(tracker, records):
    local, api = Simulator(), Simulator()
    client = costtrack.wrap(
        async_openai_client(api), tracker=tracker, router=Privacy(contains_pii, local=local_pair(local, is_async=True))
    )
    answer = await client.chat.completions.create(model="gpt-4o", messages=ask("my mail is x@y.com"))
    assert answer.model == "llama3.2"
    assert sent(local) == ["llama3.2"] and sent(api) == []
    await tracker.aflush()
    [rec] = tracker.records()
    assert rec.provider == "ollama" and rec.tags == {"route": "local"}


# --------------------------------------------------------------------------- dev / prod


@pytest.mark.parametrize(
    "env, model, stage",
    [("dev", "gpt-4o-mini", "dev"), ("development", "gpt-4o-mini", "dev"), ("prod", "gpt-4o", "prod"), ("staging", "gpt-4o", "prod")],
)
def test_dev_prod_by_explicit_env(tracker, records, env, model, stage):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=DevProd(dev="gpt-4o-mini", env=env))
    client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert sent(sim) == [model]
    [rec] = records()
    assert rec.tags == {"route": stage}


def test_dev_prod_reads_costtrack_env_at_each_call(tracker, records, monkeypatch):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=DevProd(dev="gpt-4o-mini", prod="gpt-4.1"))
    monkeypatch.delenv("COSTTRACK_ENV", raising=False)
    client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    monkeypatch.setenv("COSTTRACK_ENV", "DEV")
    client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert sent(sim) == ["gpt-4.1", "gpt-4o-mini"]
    assert [r.tags["route"] for r in in_order(records())] == ["prod", "dev"]


def test_dev_prod_with_anthropic(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(
        anthropic_client(sim), tracker=tracker, router=DevProd(dev="claude-haiku-4-5", environ={"COSTTRACK_ENV": "local"})
    )
    message = client.messages.create(model="claude-opus-4-5", max_tokens=20, messages=ask("hi"))
    assert type(message) is anthropic.types.Message and message.model == "claude-haiku-4-5-20251001"
    assert sent(sim) == ["claude-haiku-4-5"]


# --------------------------------------------------------------------------- A/B


def test_ab_assignment_is_sticky_and_the_share_holds_over_10000_users():
    ab = ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2)
    users = [f"user-{i}" for i in range(10_000)]
    arms = [ab.arm(user) for user in users]
    share = arms.count("variant") / len(users)
    assert abs(share - 0.2) < 0.015  # 3.75 standard deviations at n=10,000
    assert [ab.arm(user) for user in users] == arms  # sticky
    assert [ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2).arm(u) for u in users] == arms  # across processes
    # Another experiment assigns independently: the overlap is about share * share.
    other = ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2, name="prompt-v2")
    both = sum(1 for user, arm in zip(users, arms) if arm == "variant" and other.arm(user) == "variant")
    assert abs(both / len(users) - 0.04) < 0.01
    # Raising the share only moves users from control to variant.
    wider = ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.5)
    assert all(wider.arm(user) == "variant" for user, arm in zip(users, arms) if arm == "variant")
    assert ABTest(control="a", variant="b", share=0.0).arm("u") == "control"
    assert ABTest(control="a", variant="b", share=1.0).arm("u") == "variant"


def test_ab_without_a_user_draws_from_the_injected_random():
    draws = iter([0.05, 0.95, 0.19999, 0.2])
    ab = ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.2, random=lambda: next(draws))
    assert [ab.arm() for _ in range(4)] == ["variant", "control", "variant", "control"]


def test_ab_calls_are_routed_and_tagged_per_user(tracker, records):
    sim = Simulator()
    ab = ABTest(control="gpt-4o", variant="gpt-4o-mini", share=0.5, name="mini-trial")
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=ab)
    users = [f"u{i}" for i in range(8)]
    expected = {user: ab.arm(user) for user in users}
    assert set(expected.values()) == {"control", "variant"}
    for user in users + users:
        with costtrack.context(user=user):
            client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    client.chat.completions.create(model="gpt-4.1", messages=ask("not in the test"))
    models = {"control": "gpt-4o", "variant": "gpt-4o-mini"}
    assert sent(sim) == [models[expected[u]] for u in users + users] + ["gpt-4.1"]
    recs = in_order(records())
    for rec, user in zip(recs, users + users):
        assert rec.user == user
        assert rec.tags == {"ab_test": "mini-trial", "ab_arm": expected[user]}
        assert rec.model_requested == models[expected[user]]
    assert recs[-1].tags == {}  # a call for another model is not part of the experiment


async def test_async_ab_with_anthropic(tracker, records):
    sim = Simulator()
    router = route(ABTest(control="claude-opus-4-5", variant="claude-haiku-4-5", share=1.0))
    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, router=router)
    with costtrack.context(user="ann"):
        await client.messages.create(model="claude-opus-4-5", max_tokens=20, messages=ask("hi"))
    assert sent(sim) == ["claude-haiku-4-5"]
    await tracker.aflush()
    [rec] = tracker.records()
    assert rec.tags == {"ab_test": "claude-opus-4-5-vs-claude-haiku-4-5", "ab_arm": "variant"}


def test_streams_are_routed_and_tagged(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=ABTest(control="gpt-4o", variant="gpt-4o-mini", share=1.0))
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=ask("hi"), stream=True))
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"
    [rec] = records()
    assert rec.tags["ab_arm"] == "variant" and rec.status == "ok"


# --------------------------------------------------------------------------- composition


def test_policies_compose_in_order(tracker, records):
    local, api = Simulator(), Simulator()
    router = route(
        Privacy(contains_pii, local=local_pair(local)),
        DevProd(dev="gpt-4o-mini", env="prod"),
        Tiered(hard, cheap="gpt-4o-mini", strong="gpt-4o"),
        ABTest(control="gpt-4o", variant="gpt-4.1", share=1.0, name="4.1"),
    )
    client = costtrack.wrap(openai_client(api), tracker=tracker, router=router)
    with costtrack.context(user="u1"):
        client.chat.completions.create(model="gpt-4o", messages=ask("prove it"))
        client.chat.completions.create(model="gpt-4o", messages=ask("hello"))
        client.chat.completions.create(model="gpt-4o", messages=ask("to me@example.com"))
    assert sent(api) == ["gpt-4.1", "gpt-4o-mini"] and sent(local) == ["llama3.2"]
    recs = in_order(records())
    assert [r.tags for r in recs] == [
        {"route": "api/prod/strong", "ab_test": "4.1", "ab_arm": "variant"},
        {"route": "api/prod/cheap"},
        {"route": "local"},
    ]


def test_router_in_front_of_the_fallback(tracker, records):
    sim = Simulator()
    sim.script(429)
    client = costtrack.wrap(
        openai_client(sim), tracker=tracker,
        router=Tiered(hard, cheap="gpt-4o-mini", strong="gpt-4o"),
        fallback=CheapFirst(["gpt-4.1-nano", "gpt-4o-mini"]),
    )  # fmt: skip
    client.chat.completions.create(model="gpt-4o", messages=ask("hello"))  # routed to gpt-4o-mini: in the chain
    client.chat.completions.create(model="gpt-4o-mini", messages=ask("please analyze"))  # routed to gpt-4o: not in it
    assert sent(sim) == ["gpt-4.1-nano", "gpt-4o-mini", "gpt-4o"]
    first, second, third = in_order(records())
    assert first.tags == {"route": "cheap", "fallback_chain": "gpt-4.1-nano>gpt-4o-mini", "fallback_requested": "gpt-4o-mini",
                          "fallback_reason": "rate_limit_exceeded"}  # fmt: skip
    assert (second.attempt, second.tags["route"]) == (2, "cheap")
    assert third.tags == {"route": "strong"} and third.attempt == 1


def test_a_function_is_a_policy():
    def pin(request: RouteRequest):
        return "gpt-4o-mini" if request.user == "free-tier" else None

    router = route(pin)
    request = RouteRequest("chat.completions", "gpt-4o", "gpt-4o", [], "free-tier", {})
    assert router.plan(request).target == "gpt-4o-mini"
    assert route(lambda r: Decision("x", {"route": "custom"})).plan(request).tags == {"route": "custom"}



def test_async_classifiers_are_refused_where_routing_decides_at_once(recwarn):
    """An async `is_private` was never awaited: its coroutine passed for True and every call went to the local model."""

    async def is_private(messages):
        return False

    class Check:
        async def __call__(self, messages):
            return False

    local = ("local", "llama3.2")
    for make in (lambda fn: Privacy(fn, local="llama3.2"), lambda fn: Tiered(fn, cheap="a", strong="b"), route):
        for fn in (is_private, Check()):
            with pytest.raises(ConfigError, match="must be a plain function, not an async one"):
                make(fn)
    request = RouteRequest("chat.completions", "gpt-4o", "gpt-4o", [], None, {})
    for policy in (Privacy(lambda m: is_private(m), local=local[1]), route(lambda r: is_private(r))):
        with pytest.raises(ConfigError, match="returned an awaitable; it must be a plain function"):
            (policy if isinstance(policy, Router) else route(policy)).plan(request)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]

def test_copies_keep_the_router(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=DevProd(dev="gpt-4o-mini", env="dev"))
    client.with_options(max_retries=0).chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert sent(sim) == ["gpt-4o-mini"]


def test_router_is_installed_on_the_copy_only(tracker):
    original = openai_client(Simulator())
    client = costtrack.wrap(original, tracker=tracker, router=DevProd(dev="gpt-4o-mini", env="dev"))
    assert type(client) is openai.OpenAI
    assert "create" in vars(client.chat.completions) and "create" not in vars(original.chat.completions)
    assert type(client.chat.completions).create is openai.resources.chat.Completions.create


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ABTest(control="gpt-4o", variant="gpt-4o-mini", share=1.5), "share must be a number from 0 to 1"),
        (lambda: ABTest(control="gpt-4o", variant="gpt-4o-mini", share=-0.1), "share must be a number from 0 to 1"),
        (lambda: ABTest(control="gpt-4o", variant="gpt-4o-mini", share=True), "share must be a number"),
        (lambda: ABTest(control="gpt-4o", variant="gpt-4o-mini", share="0.2"), "share must be a number"),
        (lambda: ABTest(control="gpt-4o", variant="gpt-4o", share=0.2), "same"),
        (lambda: ABTest(control=42, variant="gpt-4o", share=0.2), "is not a model"),
        (lambda: Tiered("not callable", cheap="a", strong="b"), "classify must be a callable"),
        (lambda: Tiered(hard, cheap="a", strong=None), "is not a model"),
        (lambda: Privacy(contains_pii, local=(object(), "llama3.2")), "SDK client"),
        (lambda: DevProd(dev=3.5), "is not a model"),
        (lambda: DevProd(dev="a", env=""), "env must be a non-empty string"),
        (lambda: route(), "no policies"),
        (lambda: route("gpt-4o"), "is not a routing policy"),
        (lambda: route(CheapFirst(["a", "b"])), "fallback, not a routing policy"),
    ],
)
def test_bad_configuration_is_a_config_error(make, message):
    with pytest.raises(ConfigError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_router_targets_are_checked_at_wrap_time(tracker):
    sync_local = openai_client(Simulator(), base_url="http://localhost:11434/v1")
    with pytest.raises(ConfigError, match="not async"):
        costtrack.wrap(async_openai_client(Simulator()), tracker=tracker, router=Privacy(contains_pii, local=(sync_local, "llama3.2")))
    with pytest.raises(ConfigError, match="same SDK"):
        costtrack.wrap(anthropic_client(Simulator()), tracker=tracker, router=Privacy(contains_pii, local=(sync_local, "llama3.2")))


def test_router_accepts_a_list_of_policies(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(
        openai_client(sim), tracker=tracker,
        router=[DevProd(dev="gpt-4o-mini", env="dev"), ABTest(control="gpt-4o-mini", variant="gpt-4.1-nano", share=1.0)],
    )  # fmt: skip
    client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert sent(sim) == ["gpt-4.1-nano"]
    assert isinstance(route(DevProd(dev="a")) | ABTest(control="a", variant="b", share=0.1), Router)


# --------------------------------------------------------------------------- .stream() helpers


def test_messages_stream_helper_is_routed_and_tagged(tracker, records):
    api = Simulator()
    router = DevProd(dev="claude-haiku-4-5", env="dev")
    client = costtrack.wrap(anthropic_client(api), tracker=tracker, router=router)
    manager = client.messages.stream(model="claude-opus-4-5", max_tokens=20, messages=ask("hi"))
    assert sent(api) == []  # sent when the manager is entered
    with manager as stream:
        final = stream.get_final_message()
    assert final.model == "claude-haiku-4-5-20251001" and sent(api) == ["claude-haiku-4-5"]
    [rec] = records()
    assert rec.tags == {"route": "dev"} and rec.status == "ok"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_beta_messages_are_routed_too(tracker, records, is_async):
    """client.beta.messages skipped routing (review finding): a PII request went to the API, not the local model."""
    sim = Simulator()
    make = async_anthropic_client if is_async else anthropic_client
    local = make(sim, base_url="http://localhost:8080")
    client = costtrack.wrap(make(sim), tracker=tracker, router=Privacy(contains_pii, local=(local, "local-model")))
    pii = ask("Write to jane@example.com about her claim.")
    answer = client.beta.messages.create(model="claude-opus-4-5", max_tokens=20, messages=pii)
    answer = await answer if is_async else answer
    manager = client.beta.messages.stream(model="claude-opus-4-5", max_tokens=20, messages=pii)
    if is_async:
        async with manager as stream:
            await stream.get_final_message()
    else:
        with manager as stream:
            stream.get_final_message()
    assert [r.url.host for r in sim.requests] == ["localhost", "localhost"] and sent(sim) == ["local-model"] * 2
    assert [r.tags for r in records()] == [{"route": "local"}] * 2


async def test_async_messages_stream_helper_is_routed_and_tagged(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(async_anthropic_client(sim), tracker=tracker, router=DevProd(dev="claude-haiku-4-5", env="dev"))
    async with client.messages.stream(model="claude-opus-4-5", max_tokens=20, messages=ask("hi")) as stream:
        final = await stream.get_final_message()
    assert final.model == "claude-haiku-4-5-20251001" and sent(sim) == ["claude-haiku-4-5"]
    await tracker.aflush()
    [rec] = tracker.records()
    assert rec.tags == {"route": "dev"}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_messages_stream_helper_routed_into_the_fallback_chain(tracker, records, is_async):
    """The route picks a model of the chain; the chain's manager runs it; every attempt carries both tags."""
    sim = Simulator()
    sim.script(529)
    make = async_anthropic_client if is_async else anthropic_client
    client = costtrack.wrap(make(sim), tracker=tracker, router=DevProd(dev="claude-haiku-4-5", env="dev"),
                            fallback=CheapFirst(["claude-haiku-4-5", "claude-sonnet-4-5"]))  # fmt: skip
    manager = client.messages.stream(model="claude-opus-4-5", max_tokens=20, messages=ask("hi"))
    if is_async:
        async with manager as stream:
            final = await stream.get_final_message()
        await tracker.aflush()
    else:
        with manager as stream:
            final = stream.get_final_message()
    assert final.model.startswith("claude-sonnet-4-5") and sent(sim) == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    first, second = in_order(tracker.records())
    assert first.tags["route"] == second.tags["route"] == "dev"
    assert first.tags["fallback_reason"] == "overloaded_error" and second.status == "ok" and second.attempt == 2


def test_responses_stream_helper_keeps_pii_local(tracker, records):
    local, api = Simulator(), Simulator()
    client = costtrack.wrap(openai_client(api), tracker=tracker, router=Privacy(contains_pii, local=local_pair(local)))
    with client.responses.stream(model="gpt-4o", input="write to jo@example.com") as stream:
        final = stream.get_final_response()
    assert final.model == "llama3.2"
    assert sent(local) == ["llama3.2"] and sent(api) == []
    [rec] = records()
    assert (rec.provider, rec.tags) == ("ollama", {"route": "local"})


def test_chat_stream_helper_is_routed_once(tracker, records):
    sim = Simulator()
    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=ABTest(control="gpt-4o", variant="gpt-4o-mini", share=1.0))
    with client.chat.completions.stream(model="gpt-4o", messages=ask("hi")) as stream:
        final = stream.get_final_completion()
    assert final.model == "gpt-4o-mini-2024-07-18" and sent(sim) == ["gpt-4o-mini"]
    [rec] = records()
    assert rec.tags == {"ab_test": "gpt-4o-vs-gpt-4o-mini", "ab_arm": "variant"}


# --------------------------------------------------------------------------- clients a route builds per call


def test_a_route_building_a_client_per_call_sends_each_call_to_that_client_and_frees_them(tracker, records):
    """Clients were cached by id(): a freed client's id, reused by a later one, got the old wrapped copy (another
    tenant's base URL and key: review finding, 2 of 400 calls), and no wrapped copy was ever freed."""
    import gc
    import weakref

    sim = Simulator()
    made: list[weakref.ref[openai.OpenAI]] = []

    def per_tenant(request: RouteRequest) -> tuple[openai.OpenAI, str]:
        client = openai_client(sim, base_url=f"https://{request.user}.example.com/v1", api_key=f"sk-{request.user}")
        made.append(weakref.ref(client))
        return client, "gpt-4o-mini"

    def live_clients() -> int:
        gc.collect()
        return sum(isinstance(o, openai.OpenAI) for o in gc.get_objects())

    client = costtrack.wrap(openai_client(sim), tracker=tracker, router=route(per_tenant))
    before = live_clients()
    for i in range(60):
        with costtrack.context(user=f"t{i}"):
            client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert [r.url.host for r in sim.requests] == [f"t{i}.example.com" for i in range(60)]
    assert [r.headers["authorization"] for r in sim.requests] == [f"Bearer sk-t{i}" for i in range(60)]
    assert sum(ref() is not None for ref in made) <= 1  # each freed once its call is done
    assert live_clients() - before <= 2  # and so is its wrapped copy (one per call was kept for good)
    assert len(records()) == 60
