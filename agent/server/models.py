"""Typed views of the job server's JSON (docs/protocol.md). Unknown fields are ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Tokens(_Model):
    access: str
    refresh: str | None = None


class TemplateRef(_Model):
    pk: int
    name: str = ""
    version: int = 1


class OutputRef(_Model):
    pk: int
    name: str
    type: str


class OutputInfo(_Model):
    pk: int
    name: str
    type: str
    job: int | None = None
    filename: str | None = None
    creation_time: datetime | None = None
    deletion_time: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.deletion_time is not None


class Job(_Model):
    pk: int
    template: TemplateRef
    parent: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_reason: str | None = None
    input_values: dict[str, Any] = Field(default_factory=dict)
    parameter_values: dict[str, Any] = Field(default_factory=dict)
    node: int | None = None
    outputs: list[OutputRef] = Field(default_factory=list)
    description: str | None = None
    is_cancelled: bool = False
    creator: int | str | None = None
    creation_time: datetime | None = None
    deletion_time: datetime | None = None

    @property
    def phase(self) -> str:
        """CREATED / STARTED / CANCELLED / FINISHED / ERRORED, derived as the server does."""
        if self.start_time is None:
            return "CREATED"
        if self.end_time is None:
            return "CANCELLED" if self.error_reason else "STARTED"
        return "ERRORED" if self.error_reason else "FINISHED"


class TemplateParameter(_Model):
    types: list[str] = Field(default_factory=list)
    help: str = ""
    default: Any = None
    default_type: str | None = None
    const: bool = False


class Template(_Model):
    pk: int
    name: str = ""
    version: int = 1
    type: str | None = None
    executor_class: str = ""
    required_packages: str = ""
    parameters: dict[str, TemplateParameter] = Field(default_factory=dict)


class Node(_Model):
    pk: int
    ip: str
    index: int
    cpu_mem: int | None = None
    gpu_mem: int | None = None
    driver_version: str | None = None
    hardware_generation: int | None = None
    current_job: int | None = None
    last_seen: datetime | None = None
