"""LocalAI's `alias:` models: the schema's rules, the router's table, its cluster and local sources,
local mode's split, and the operator's status for an alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from localmodel_operator.kube import Kube
from localmodel_operator.reconcile import Reconciler
from localmodel_operator.settings import settings_from_dict
from localmodel_operator.status import alias_conditions
from localmodel_router.k8s import ClusterState
from localmodel_router.local import LocalModeError, find_models, split_aliases
from localmodel_router.local_table import TableError, read_table
from localmodel_router.table import ModelSettings, ModelTable
from localmodel_runtime.config import ModelConfig, ModelConfigError, parse_model_configs, unsupported_keys
from tests.unit.test_operator_reconcile import FakeKube


def test_an_alias_follows_localais_rules() -> None:
    alias = ModelConfig.model_validate({"name": "gpt-4", "alias": "gemma"})
    assert alias.alias == "gemma" and unsupported_keys(alias) == []
    for body, message in [
        ("alias: gemma", "alias needs `name`"),
        ("name: gemma\nalias: gemma", "not itself"),
        ("name: gpt-4\nalias: gemma\nbackend: llama", "must not set backend"),
        ("name: gpt-4\nalias: gemma\nparameters: {model: x.gguf}", "must not set backend"),
    ]:
        with pytest.raises(ModelConfigError, match=message):
            parse_model_configs(body, "m.yaml")


def test_the_table_answers_an_alias_with_its_target() -> None:
    table = ModelTable()
    gemma = table.upsert_model("gemma", ModelSettings())
    table.set_alias("gpt-4", "gemma")
    table.set_alias("ghost", "missing")
    assert table.resolve("gpt-4") is gemma and table.resolve("gemma") is gemma
    assert table.resolve("ghost") is None
    # A model's own name wins over an alias of that name.
    own = table.upsert_model("gpt-4", ModelSettings())
    assert table.resolve("gpt-4") is own
    table.set_alias("gpt-4", None)
    table.remove_model("gpt-4")
    assert table.resolve("gpt-4") is None


def localmodel(
    name: str, spec: dict[str, Any], namespace: str = "ns", created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": name, "uid": name, "creationTimestamp": created}
    return {"metadata": meta, "spec": spec}


def test_alias_localmodels_become_table_aliases_not_models() -> None:
    table = ModelTable()
    state = ClusterState(table)
    state.apply_localmodel("ADDED", localmodel("gemma", {"parameters": {"model": "g.gguf"}}))
    state.apply_localmodel("ADDED", localmodel("chat", {"name": "gpt-4", "alias": "gemma"}))
    assert set(table.models) == {"gemma"} and table.resolve("gpt-4") is table.models["gemma"]
    # Renamed, then turned into a model of its own, then deleted.
    state.apply_localmodel("MODIFIED", localmodel("chat", {"name": "gpt-4o", "alias": "gemma"}))
    assert table.aliases == {"gpt-4o": "gemma"}
    state.apply_localmodel(
        "MODIFIED", localmodel("chat", {"name": "gpt-4o", "parameters": {"model": "x.gguf"}})
    )
    assert table.aliases == {} and set(table.models) == {"gemma", "gpt-4o"}
    state.apply_localmodel("MODIFIED", localmodel("chat", {"name": "gpt-4o", "alias": "gemma"}))
    assert set(table.models) == {"gemma"} and table.aliases == {"gpt-4o": "gemma"}
    state.apply_localmodel("DELETED", localmodel("chat", {}))
    assert table.aliases == {}


def test_the_oldest_alias_holds_a_name_and_a_relist_forgets_aliases_that_are_gone() -> None:
    table = ModelTable()
    state = ClusterState(table)
    state.apply_localmodel(
        "ADDED", localmodel("b", {"name": "fast", "alias": "llama"}, "two", "2026-02-01T00:00:00Z")
    )
    state.apply_localmodel(
        "ADDED", localmodel("a", {"name": "fast", "alias": "gemma"}, "one", "2026-01-01T00:00:00Z")
    )
    assert table.aliases == {"fast": "gemma"}
    state.replace("LocalModel", "one", [])
    assert table.aliases == {"fast": "llama"}
    state.replace("LocalModel", None, [])
    assert table.aliases == {}


def test_local_tables_and_local_mode_carry_aliases(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "models:\n  - {name: gemma, endpoints: ['127.0.0.1:1']}\n  - {name: gpt-4, alias: gemma}\n"
    )
    models, aliases = read_table(path)
    assert list(models) == ["gemma"] and aliases == {"gpt-4": "gemma"}
    path.write_text("models:\n  - {name: gpt-4, alias: gpt-4}\n")
    with pytest.raises(TableError, match="'alias' names another model"):
        read_table(path)

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "gemma.yaml").write_text("name: gemma\nparameters: {model: g.gguf}\n")
    (models_dir / "aliases.yaml").write_text("- name: gpt-4\n  alias: gemma\n")
    served, found = split_aliases(find_models(models_dir))
    assert [m.name for m in served] == ["gemma"] and found == {"gpt-4": "gemma"}
    (models_dir / "aliases.yaml").write_text("- name: gpt-4\n  alias: llama\n")
    with pytest.raises(LocalModeError, match="alias gpt-4 names llama, not a model served here"):
        split_aliases(find_models(models_dir))


def test_an_alias_localmodel_is_ready_with_nothing_to_run() -> None:
    ready, progressing, degraded = alias_conditions(3, "gemma")
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Alias")
    assert "gemma" in ready["message"] and progressing["status"] == "False" and degraded["status"] == "False"


async def test_the_operator_runs_nothing_for_an_alias_and_reports_it_ready() -> None:
    meta = {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 1}
    kube = FakeKube({"metadata": meta, "spec": {"name": "gpt-4", "alias": "gemma"}})
    await Reconciler(cast(Kube, kube), settings_from_dict({})).reconcile(kube.body)
    assert kube.applied == []
    status = kube.statuses[-1]
    assert status["modelName"] == "gpt-4" and status["unsupported"] == []
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "Ready": ("True", "Alias"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AsExpected"),
    }
