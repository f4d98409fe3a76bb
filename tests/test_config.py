"""A run's config: parsed once, defaults in one place, and the same refusals from Python and the CLI."""

from __future__ import annotations

import math

import pytest

from personagym import defaults
from personagym.errors import InvalidParameter, UserError
from personagym.llm import ModelSpec
from personagym.pipeline import RunConfig
from personagym.pipeline.roles import AGENT, EXAMPLES, GENERATOR, JUDGE


def test_specs_are_normalised_once_so_one_model_has_one_name_everywhere():
    config = RunConfig.of("OpenAI:gpt-4o-mini", judges="OpenAI:gpt-4o, openai:gpt-4o,Anthropic:claude-x", generator="OPENAI:g")
    assert [j.model for j in config.judges] == ["openai:gpt-4o", "anthropic:claude-x"]  # the repeat counts once
    stored = config.stored()
    assert stored["agent"] == "openai:gpt-4o-mini" and stored["generator"] == "openai:g"
    assert stored["judges"] == ["openai:gpt-4o", "anthropic:claude-x"]
    # Recipes (what agent-independent artifacts are keyed on) carry the normalised spec too.
    assert RunConfig.of("openai:a", generator="OpenAI:g").environments_recipe("c") == config.environments_recipe("c")


def test_each_role_knows_its_kind_sampling_and_endpoint():
    config = RunConfig.of("openai:bot", agent_base_url=["http://a/v1", "http://b/v1"], agent_temperature=0.3)
    assert (config.agent.kind, config.agent.base_url) == (AGENT, "http://a/v1,http://b/v1")
    assert config.agent.sampling.temperature == 0.3 and config.agent.sampling.top_p == defaults.AGENT_TOP_P
    assert config.generator.kind == GENERATOR and config.example_model.kind == EXAMPLES
    assert {j.kind for j in config.judges} == {JUDGE}


def test_defaults_come_from_one_place():
    config = RunConfig.of("openai:a")
    assert [j.model for j in config.judges] == list(defaults.JUDGES)
    assert config.generator.model == defaults.GENERATOR and config.example_model.model == defaults.EXAMPLE_MODEL
    assert config.questions_per_task == defaults.QUESTIONS_PER_TASK and config.judge_batch == defaults.JUDGE_BATCH
    assert config.agent.sampling.max_tokens == defaults.AGENT_MAX_TOKENS
    assert config.retry.max_attempts == defaults.MAX_ATTEMPTS and config.concurrency == defaults.CONCURRENCY


def test_models_fills_every_role_not_given():
    config = RunConfig.of(None, models="local", judges="openai:j")
    assert config.agent.model == "local" and config.generator.model == "local"
    assert [j.model for j in config.judges] == ["openai:j"]


def test_a_callable_agent_is_named_and_never_bound():
    async def mine(persona: str, question: str) -> str:
        return "hi"

    config = RunConfig.of(mine)
    assert config.agent_name.startswith("callable:") and config.agent_fn is mine
    assert config.agent not in config.model_roles()


@pytest.mark.parametrize(
    ("settings", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": -5}, "rpm"),
        ({"tpm": 0}, "tpm"),
        ({"tpm": math.inf}, "tpm"),
        ({"concurrency": 0}, "concurrency"),
        ({"questions_per_task": 0}, "questions_per_task"),
        ({"questions_per_task": True}, "questions_per_task"),
        ({"judge_batch": 99}, "judge_batch"),
        ({"max_environments": 0}, "max_environments"),
        ({"agent_temperature": math.nan}, "agent_temperature"),
        ({"agent_temperature": 2.5}, "agent_temperature"),
        ({"agent_top_p": 0}, "agent_top_p"),
        ({"agent_max_tokens": 0}, "agent_max_tokens"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": math.nan}, "timeout"),
        ({"batch_poll": -1}, "batch_poll"),
        ({"persona_field": "messages"}, "persona_field"),
        ({"judges": []}, "judges"),
        ({"judgs": "openai:x"}, "judgs"),
    ],
)
def test_bad_settings_are_refused_naming_the_parameter(settings, param):
    with pytest.raises(InvalidParameter) as info:
        RunConfig.of("openai:a", **settings)
    assert info.value.param == param and str(info.value).startswith(param + " ")


def test_a_bad_spec_is_refused_before_anything_runs():
    with pytest.raises(UserError, match="unknown provider 'gemini'"):
        RunConfig.of("openai:a", judges="gemini:pro")
    with pytest.raises(UserError, match="names no provider"):
        RunConfig.of("gpt-4o")


def test_a_config_is_plain_data_that_compares_by_value():
    assert RunConfig.of("openai:a", judges="openai:j") == RunConfig.of("OpenAI:a", judges=["openai:j"])
    assert RunConfig.of("openai:a").judges[0].spec == ModelSpec(*defaults.JUDGES[0].split(":"))
