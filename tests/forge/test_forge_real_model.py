"""One real forge on the embedded Qwen2.5-Coder model: the tool it writes passes in the sandbox and answers."""
from __future__ import annotations

import pytest

from forge.models import ForgeAttempt, ForgeRequest, Tool
from forge.services import forge_for_graph, tool_call
from personas.inference import ModelManager, ModelsConfig
from personas.llm import model_manager, set_model_manager

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def embedded_models(tmp_path_factory):
    """The real embedded backend ([models] backend = "embedded"), installed as the process's manager."""
    config = ModelsConfig.from_dict({"backend": "embedded", "embedded": {"n_ctx": 4096, "max_tokens": 384}})
    manager = ModelManager(config, var_dir=tmp_path_factory.mktemp("models"))
    yield manager
    manager.close()


def test_a_real_forge_registers_a_working_tool(embedded_models, personas_seeded):
    set_model_manager(embedded_models)
    try:
        assert model_manager().backend == "embedded"
        outcome = forge_for_graph(run_id=None, spec="add two integers and return their sum")
    finally:
        set_model_manager(None)
    request = ForgeRequest.objects.get()
    attempts = list(ForgeAttempt.objects.filter(request=request).order_by("number"))
    report = "\n\n".join(f"#{a.number} {a.error}\n{a.reply}\n{a.stdout}{a.stderr}" for a in attempts)
    assert outcome["status"] == "created", report
    assert attempts and attempts[-1].passed and all(a.reply for a in attempts)  # real generated text
    tool = Tool.objects.get(name=outcome["tool"])
    params = tool.current_version.schema["function"]["parameters"]
    names = list(params["properties"])
    assert len(names) == 2, tool.current_version.code
    call = tool_call(name=tool.name, arguments={names[0]: 1234, names[1]: 4321})
    assert call.ok and call.result == 5555, (call.error, tool.current_version.code)
