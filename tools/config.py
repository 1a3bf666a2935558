"""What the control plane reads of the settings (a protocol: the assembly's `Settings` fits it).

The control plane does not import the assembly's settings; it names what it needs, and any
object with these attributes will do (a team's own settings, a test's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tools.dependencies import Dependency
from tools.policy import DependencyPolicy, FaultSpec

__all__ = ["ToolSettings"]


class ToolSettings(Protocol):
    """The settings the toolbox, the governor and the simulators are built from."""

    @property
    def home(self) -> Path:
        """The data directory."""

    @property
    def model(self) -> str:
        """`rules` or `openai:<model>`."""

    @property
    def openai_base_url(self) -> str | None:
        """An OpenAI-compatible server's base URL."""

    @property
    def openai_api_key(self) -> str | None:
        """The key sent to it."""

    @property
    def resilience_store(self) -> str:
        """`memory`, or a redis:// URL shared by several processes."""

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        """Every registered dependency."""

    @property
    def store_path(self) -> Path:
        """The store database."""

    @property
    def effects_path(self) -> Path:
        """The effects journal (SQLite)."""

    @property
    def database_url(self) -> str | None:
        """A postgresql:// URL for the effects journal (None: SQLite at `effects_path`)."""

    def policy(self, dependency: str) -> DependencyPolicy:
        """A dependency's call policy."""

    def fault(self, dependency: str) -> FaultSpec:
        """The faults its simulator injects."""

    def url(self, dependency: str) -> str | None:
        """Its base URL (None: its simulator answers)."""
