"""Local discovery: a YAML or JSON file mapping model names to `host:port` endpoints.

Two spellings, both accepted:

    models:                                  # what `localmodel up` writes
      - name: gemma-3-270m
        endpoints: ["127.0.0.1:40123", {address: "127.0.0.1:40124", ready: false}]
        loadBalancing: prefixAffinity        # optional, default leastInFlight
        minReplicas: 0                       # optional
        scaleDownDelaySeconds: 120           # optional, default 600

      - name: gpt-4                          # a LocalAI alias: answered by gemma-3-270m
        alias: gemma-3-270m

    gemma-3-270m: ["127.0.0.1:40123"]        # plain mapping: name → endpoints

The optional keys mean what they mean under a LocalModel's `spec.deployment` and are validated by its
schema. The file is re-read when it changes (polled), so a supervisor can add or move models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import yaml

from localmodel_router.discovery import Discovery
from localmodel_router.errors import ConfigurationError
from localmodel_router.table import ModelSettings, ModelTable, Scaler, split_address
from localmodel_runtime.config import ModelConfigError, parse_deployment_spec

log = logging.getLogger("localmodel.router")

TableData = dict[str, tuple[ModelSettings, list[tuple[str, bool]]]]


class TableError(ConfigurationError):
    """The local table is invalid; the message names the file and the problem in one line."""


def _endpoint(raw: Any, where: str) -> tuple[str, bool]:
    if isinstance(raw, str):
        address, ready = raw, True
    elif isinstance(raw, dict) and isinstance(raw.get("address"), str):
        address, ready = raw["address"], bool(raw.get("ready", True))
    else:
        raise TableError(f"{where}: an endpoint is a 'host:port' string or {{address, ready}}")
    try:
        split_address(address)
    except ValueError as exc:
        raise TableError(f"{where}: {exc}") from None
    return address, ready


def _settings(raw: dict[str, Any], where: str) -> ModelSettings:
    """The flat keys of a table entry, read as the `spec.deployment` they stand for."""
    autoscaling = {key: raw[key] for key in ("minReplicas", "scaleDownDelaySeconds") if key in raw}
    deployment = {"loadBalancing": raw["loadBalancing"]} if "loadBalancing" in raw else {}
    try:
        spec = parse_deployment_spec({**deployment, "autoscaling": autoscaling}, where)
    except ModelConfigError as exc:
        raise TableError(str(exc)) from None
    return ModelSettings.from_deployment(spec)


def parse_table(data: Any, source: str) -> TableData:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TableError(f"{source}: expected a mapping at the top")
    models: TableData = {}
    if "models" in data and isinstance(data["models"], list):
        for index, item in enumerate(data["models"]):
            where = f"{source}: models[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise TableError(f"{where}: each model needs a 'name'")
            if "alias" in item:
                continue  # read by parse_aliases
            endpoints = item.get("endpoints", [])
            if not isinstance(endpoints, list):
                raise TableError(f"{where}: 'endpoints' must be a list")
            if item["name"] in models:
                raise TableError(f"{where}: model {item['name']!r} is listed twice")
            models[item["name"]] = (_settings(item, where), [_endpoint(e, where) for e in endpoints])
        return models
    for name, endpoints in data.items():
        where = f"{source}: {name}"
        if not isinstance(endpoints, list):
            raise TableError(f"{where}: expected a list of endpoints")
        models[str(name)] = (ModelSettings(), [_endpoint(e, where) for e in endpoints])
    return models


def parse_aliases(data: Any, source: str) -> dict[str, str]:
    """The `models` items that are LocalAI aliases — `{name: gpt-4, alias: gemma-3-270m}` — as name →
    target; parse_table has checked the names."""
    aliases: dict[str, str] = {}
    items = data.get("models") if isinstance(data, dict) else None
    for index, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and "alias" in item:
            if not isinstance(item["alias"], str) or not item["alias"] or item["alias"] == item["name"]:
                raise TableError(f"{source}: models[{index}]: 'alias' names another model")
            aliases[item["name"]] = item["alias"]
    return aliases


def load_table(path: Path) -> TableData:
    return read_table(path)[0]


def read_table(path: Path) -> tuple[TableData, dict[str, str]]:
    """The models and the aliases of a local table file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError(f"cannot read local table {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise TableError(f"{path}: invalid YAML/JSON: {str(exc).splitlines()[0]}") from None
    return parse_table(data, str(path)), parse_aliases(data, str(path))


class LocalDiscovery(Discovery):
    def __init__(self, path: Path, poll_interval: float = 1.0, scaler: Scaler | None = None) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.scaler = scaler
        self._task: asyncio.Task[None] | None = None
        self._stamp: tuple[int, int] | None = None

    def _changed(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    async def start(self, table: ModelTable) -> None:
        self._changed()
        self._load(table)
        table.synced = True
        self._task = asyncio.get_running_loop().create_task(self._poll(table))

    def _load(self, table: ModelTable) -> None:
        models, aliases = read_table(self.path)
        table.replace_all(models)
        table.replace_aliases(aliases)

    async def _poll(self, table: ModelTable) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self._changed():
                continue
            try:
                self._load(table)
                log.info("reloaded %s", self.path)
            except TableError as exc:
                log.error("keeping the previous table: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
