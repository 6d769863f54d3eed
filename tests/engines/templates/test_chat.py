"""Chat templates render like transformers does, inside a sandbox."""

from __future__ import annotations

import pytest

from engines.errors import BadRequest, ChatTemplateError
from engines.templates.chat import (
    CHOOSABLE,
    compile_template,
    family_template,
    load_builtin_template,
    pick_template,
    render_chat,
)
from engines.types import ChatMessage


def _render(template: str, *messages: tuple[str, str], add_generation_prompt: bool = True) -> str:
    msgs = [ChatMessage(role, content) for role, content in messages]  # type: ignore[arg-type]
    return render_chat(
        template, msgs, bos_token="<bos>", eos_token="<eos>", add_generation_prompt=add_generation_prompt
    )


@pytest.fixture(scope="module")
def gemma() -> str:
    return load_builtin_template("gemma3")


def test_gemma_system_is_prepended_to_first_user_turn(gemma: str) -> None:
    out = _render(gemma, ("system", "Be brief."), ("user", "  Hi there \n"))
    assert out == "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_multi_turn_maps_assistant_to_model(gemma: str) -> None:
    out = _render(gemma, ("user", "Hi"), ("assistant", "Hello! \n"), ("user", "Bye"), add_generation_prompt=False)
    assert out == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
    )


def test_gemma_roles_must_alternate(gemma: str) -> None:
    with pytest.raises(BadRequest, match="Conversation roles must alternate"):
        _render(gemma, ("user", "a"), ("user", "b"))


def test_raise_exception_message_surfaces() -> None:
    with pytest.raises(BadRequest, match="no tools here"):
        _render("{{ raise_exception('no tools here') }}", ("user", "x"))


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ raise_exception.__globals__['os'] }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{% set x = messages.append({'role': 'user'}) %}",
        "{{ messages[0].update({'content': 'pwned'}) }}",
    ],
)
def test_sandbox_blocks_escapes(template: str) -> None:
    with pytest.raises(ChatTemplateError):
        _render(template, ("user", "x"))


def test_unsafe_attribute_renders_as_nothing() -> None:
    # The sandbox hands back an undefined value instead of the function's globals.
    assert _render("[{{ raise_exception.__globals__ }}]", ("user", "x")) == "[]"


def test_syntax_error_is_a_template_error() -> None:
    with pytest.raises(ChatTemplateError, match="does not parse"):
        compile_template("{% for m in messages %}")


def test_template_bug_does_not_escape_as_a_raw_exception() -> None:
    with pytest.raises(ChatTemplateError):
        _render("{{ messages[5]['content'] }}", ("user", "x"))


def test_transformers_extras() -> None:
    template = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m | tojson }}{% endfor %}"
        "{% generation %}[{{ strftime_now('%Y') | length }}]{% endgeneration %}"
    )
    out = _render(template, ("user", "<b>&</b> é"), ("assistant", "ignored"))
    assert out == '{"role": "user", "content": "<b>&</b> é"}[4]'


def test_templates_are_compiled_once() -> None:
    assert compile_template("{{ 1 }}") is compile_template("{{ 1 }}")


def test_unknown_or_unsafe_builtin_names() -> None:
    with pytest.raises(ChatTemplateError, match="no built-in"):
        load_builtin_template("nope")
    with pytest.raises(ChatTemplateError, match="invalid"):
        load_builtin_template("../errors")


def test_chatml_and_llama3_render_their_turns() -> None:
    chatml = _render(load_builtin_template("chatml"), ("system", "Be brief."), ("user", " Hi "))
    assert chatml == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    llama3 = _render(load_builtin_template("llama3"), ("user", "Hi"))
    assert llama3 == (
        "<bos><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_every_choosable_template_renders_a_conversation() -> None:
    for name in CHOOSABLE:
        out = _render(load_builtin_template(name), ("system", "S"), ("user", "Q"), ("assistant", "A"), ("user", "R"))
        assert "Q" in out and "R" in out, name


def test_family_template_knows_the_families_and_architectures() -> None:
    assert family_template("gemma-3") == "gemma3"
    assert family_template(None, "gemma2") == "gemma3"
    assert family_template("llama-3.2") == "llama3"
    assert family_template("qwen2.5") == family_template(None, "qwen2") == "chatml"
    assert family_template("mistral", "llama") is None  # "llama" alone names no one template


def test_pick_template_prefers_the_choice_then_the_file_then_the_catalog() -> None:
    chatml = load_builtin_template("chatml")
    assert pick_template("FILE", "CATALOG", "chatml") == (chatml, "ChatML (chosen at launch)")
    assert pick_template("FILE", "CATALOG", None) == ("FILE", "the file's own")
    assert pick_template(None, "CATALOG", "") == ("CATALOG", "the catalog's")
    assert pick_template(None, None, None) == ("", "")
