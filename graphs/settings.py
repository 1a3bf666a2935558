"""Settings: read from the environment once into one frozen object, then passed down."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graphs.core.errors import ConfigError
from tools.dependencies import DEFAULT_DEPENDENCIES, Dependency
from tools.policy import DependencyPolicy, FaultSpec

if TYPE_CHECKING:  # the settings stay light: the CLI reads them for `keys` without LangGraph
    from agents.base import WorkerSpec
    from agents.drafter import Drafter
    from guards.stages import GuardStage

__all__ = [
    "ActorLimits",
    "DependencyPolicy",
    "FaultSpec",
    "Settings",
    "settings_of",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorLimits:
    """Work one actor may ask of the server (`INTERLOCK_LIMITS_<CUSTOMER|STAFF>`).

    Enforced at the server's edge: a request over a limit is answered 429 with `Retry-After`
    (the client's to retry), before it costs the graph anything.
    """

    runs_per_minute: float = 20.0
    """Runs an actor may start per minute (a token bucket refilled at this rate)."""
    runs_burst: int = 5
    """Runs an actor may start at once before the rate applies (the bucket's size)."""
    runs_in_flight: int = 2
    """Runs of one actor executing at the same time."""
    requests_per_minute: float = 300.0
    """Requests of any kind per minute (reads, searches, thread creation)."""
    requests_burst: int = 60
    """Requests at once before that rate applies."""


_N = TypeVar("_N", int, float)
_D = TypeVar("_D", FaultSpec, DependencyPolicy, ActorLimits)

_DEFAULT_LIMITS: dict[str, ActorLimits] = {
    "customer": ActorLimits(),
    "staff": ActorLimits(runs_per_minute=600.0, runs_burst=60, runs_in_flight=32,
                         requests_per_minute=6000.0, requests_burst=600),
}



@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting of Interlock. Build with `Settings.from_env()`; never read env elsewhere."""

    home: Path = Path(".interlock")
    """INTERLOCK_HOME: data directory (store database, checkpoints, payments simulator)."""
    model: str = "rules"
    """INTERLOCK_MODEL: `rules` (no model) or `openai:<model>`."""
    openai_base_url: str | None = None
    """OPENAI_BASE_URL: any OpenAI-compatible server."""
    openai_api_key: str | None = None
    """OPENAI_API_KEY: the key sent to that server."""
    dependencies: tuple[Dependency, ...] = DEFAULT_DEPENDENCIES
    """Every dependency the graph may call (`tools.dependencies`): each gets its own settings
    (`INTERLOCK_DEP_<NAME>`, `INTERLOCK_FAULTS_<NAME>`, `INTERLOCK_<NAME>_URL`), breaker,
    budget and bulkhead."""
    workers: tuple[WorkerSpec, ...] = ()
    """More workers, from `INTERLOCK_EXTENSIONS` (the graph runs them beside its own)."""
    guards: tuple[GuardStage, ...] = ()
    """More guard stages, from `INTERLOCK_EXTENSIONS`."""
    drafters: tuple[Drafter, ...] = ()
    """A drafter that words the answers (`agents.drafter`), from `INTERLOCK_EXTENSIONS`
    (`DRAFTERS`; the last one declared is used)."""
    extensions: tuple[str, ...] = ()
    """INTERLOCK_EXTENSIONS: modules of a team's own, each with `DEPENDENCIES`, `WORKERS`
    and/or `GUARDS` lists, registered beside the reference domain's."""
    urls: Mapping[str, str] = field(default_factory=dict)
    """INTERLOCK_<NAME>_URL: a dependency's base URL (INTERLOCK_CARRIER_URL,
    INTERLOCK_PAYMENTS_URL, ...); unset = its in-process simulator."""
    auto_approve_cents: int = 5000
    """INTERLOCK_AUTO_APPROVE_CENTS: refunds above this wait for a human."""
    auto_approve_order_cents: int = 5000
    """INTERLOCK_AUTO_APPROVE_ORDER_CENTS: most refunded or proposed on one order within the
    approval window without a human; above it, a human decides."""
    auto_approve_customer_cents: int = 10000
    """INTERLOCK_AUTO_APPROVE_CUSTOMER_CENTS: the same, summed over one customer's orders."""
    approval_window_s: float = 86400.0
    """INTERLOCK_APPROVAL_WINDOW_S: the window those sums are counted over (a rolling day)."""
    duplicate_window_s: float = 86400.0
    """INTERLOCK_DUPLICATE_WINDOW_S: a refund of the same amount on the same order within this
    many seconds of another is a likely duplicate and asks a human (0: off)."""
    offer_ttl_s: float = 600.0
    """INTERLOCK_OFFER_TTL_S: how long an offer the desk made ("I can refund $39.00 on order
    1012") stands for a "yes" (it stands for the next message only, in any case)."""
    deadline_s: float = 30.0
    """INTERLOCK_DEADLINE_S: end-to-end deadline of one request."""
    max_steps: int = 8
    """INTERLOCK_MAX_STEPS: most steps a plan may have."""
    max_side_effects: int = 1
    """INTERLOCK_MAX_SIDE_EFFECTS: most side-effecting steps (refunds) in one request."""
    max_hops: int = 8
    """INTERLOCK_MAX_HOPS: most supervisor hops in one request; a runaway plan ends here."""
    max_input_messages: int = 4
    """INTERLOCK_MAX_INPUT_MESSAGES: most messages one request may carry."""
    max_input_bytes: int = 16384
    """INTERLOCK_MAX_INPUT_BYTES: most UTF-8 bytes of text all of a request's messages carry."""
    max_body_bytes: int = 65536
    """INTERLOCK_MAX_BODY_BYTES: largest HTTP request body the server reads (413 above)."""
    limits: Mapping[str, ActorLimits] = field(default_factory=lambda: dict(_DEFAULT_LIMITS))
    """INTERLOCK_LIMITS_<CUSTOMER|STAFF>: per-actor rate and concurrency limits."""
    resilience_store: str = "memory"
    """INTERLOCK_RESILIENCE_STORE: `memory`, or a redis:// URL shared by several processes."""
    database_url: str | None = None
    """INTERLOCK_DATABASE_URL: a postgresql:// URL for checkpoints and the effects journal
    (several replicas share it); unset: SQLite files under INTERLOCK_HOME."""
    sqlite_synchronous: str = "NORMAL"
    """INTERLOCK_SQLITE_SYNCHRONOUS: NORMAL (survives process crashes) or FULL (power loss too)."""
    policies: Mapping[str, DependencyPolicy] = field(default_factory=dict)
    """INTERLOCK_DEP_<DEP>: timeout, attempts and breaker tuning per dependency (one not named
    here has its registration's default)."""
    faults: Mapping[str, FaultSpec] = field(default_factory=dict)
    """INTERLOCK_FAULTS_<DEP>: faults the in-process simulators inject, per dependency."""
    api_keys_file: Path | None = None
    """INTERLOCK_API_KEYS_FILE: the server's API keys (hashed); default under INTERLOCK_HOME."""
    crash_after: tuple[str, int] | None = None
    """INTERLOCK_CRASH_AFTER: crash injection for recovery tests, `checkpoints=N` or `writes=N`:
    the process kills itself (SIGKILL) right after its N-th checkpoint or writes record."""
    fact_ttls: Mapping[str, float | None] = field(
        default_factory=lambda: {"shipment": 300.0, "order": 3600.0, "policy": None,
                                 "refund": None})
    """INTERLOCK_FACT_TTL: seconds a fact of each kind stays fresh (`shipment=300,order=3600`);
    None: until superseded (a policy, while its version is in effect; a refund's outcome)."""

    @property
    def store_path(self) -> Path:
        """The store database (orders, shipments, policies)."""
        return self.home / "store.db"

    @property
    def checkpoints_path(self) -> Path:
        """The SQLite checkpoint database."""
        return self.home / "checkpoints.db"

    @property
    def api_keys_path(self) -> Path:
        """Where the server's API keys (their SHA-256 digests, and whom they stand for) live."""
        return self.api_keys_file or self.home / "api-keys.json"

    @property
    def effects_path(self) -> Path:
        """The effects journal (side-effect attempts, written before they are made)."""
        return self.home / "effects.db"

    @property
    def payments_sim_path(self) -> Path:
        """Where the in-process payments simulator keeps its refunds."""
        return self.home / "payments-sim.db"

    def policy(self, dependency: str) -> DependencyPolicy:
        """The call policy of one dependency; ConfigError for one that is not registered."""
        if (policy := self.policies.get(dependency)) is not None:
            return policy
        if (registered := self.registered(dependency)) is not None:
            return registered.policy
        names = ", ".join(d.name for d in self.dependencies)
        raise ConfigError(f"no dependency {dependency!r} is registered (registered: {names})",
                          variable=f"INTERLOCK_DEP_{dependency.upper()}")

    def registered(self, dependency: str) -> Dependency | None:
        """The registration of a dependency, if it is registered."""
        return next((d for d in self.dependencies if d.name == dependency), None)

    def url(self, dependency: str) -> str | None:
        """A dependency's base URL (None: its in-process simulator answers)."""
        return self.urls.get(dependency)

    @property
    def carrier_url(self) -> str | None:
        """INTERLOCK_CARRIER_URL (see `url`)."""
        return self.url("carrier")

    @property
    def payments_url(self) -> str | None:
        """INTERLOCK_PAYMENTS_URL (see `url`)."""
        return self.url("payments")

    def with_url(self, dependency: str, url: str | None) -> Settings:
        """A copy with one dependency's base URL set (None: its simulator)."""
        urls = {k: v for k, v in self.urls.items() if k != dependency}
        return replace(self, urls={**urls, **({dependency: url} if url else {})})

    def with_dependencies(self, *extra: Dependency) -> Settings:
        """A copy with more dependencies registered (their defaults and simulators)."""
        names = {d.name for d in extra}
        kept = tuple(d for d in self.dependencies if d.name not in names)
        return replace(self, dependencies=(*kept, *extra))

    def fault(self, dependency: str) -> FaultSpec:
        """The faults configured for one dependency's simulator."""
        return self.faults.get(dependency, FaultSpec())

    def limits_for(self, kind: str) -> ActorLimits:
        """The limits of one kind of actor (`customer` or `staff`)."""
        return self.limits.get(kind, self.limits["customer"])

    def with_faults(self, dependency: str, spec: FaultSpec) -> Settings:
        """A copy with one dependency's simulated faults replaced."""
        return replace(self, faults={**self.faults, dependency: spec})

    def with_policy(self, dependency: str, **changes: Any) -> Settings:
        """A copy with fields of one dependency's call policy replaced."""
        policy = replace(self.policy(dependency), **changes)
        return replace(self, policies={**self.policies, dependency: policy})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 dependencies: tuple[Dependency, ...] | None = None) -> Settings:
        """Read every setting from `env` (default: the process environment) and validate it.

        `dependencies` are the registrations to read settings for (default: the reference
        domain's); each reads `INTERLOCK_DEP_<NAME>`, `INTERLOCK_FAULTS_<NAME>` and its URL.
        """
        env = os.environ if env is None else env
        defaults = cls()
        extensions = tuple(m.strip() for m in (env.get("INTERLOCK_EXTENSIONS") or "").split(",")
                           if m.strip())
        found = _extensions(extensions)
        registered = (*(dependencies or defaults.dependencies), *found[0])

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        model = text("INTERLOCK_MODEL") or defaults.model
        if model != "rules" and not (model.startswith("openai:") and len(model) > 7):
            raise ConfigError("expected `rules` or `openai:<model>`", variable="INTERLOCK_MODEL")
        synchronous = (text("INTERLOCK_SQLITE_SYNCHRONOUS") or defaults.sqlite_synchronous).upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("expected NORMAL or FULL", variable="INTERLOCK_SQLITE_SYNCHRONOUS")
        policies: dict[str, DependencyPolicy] = {}
        faults: dict[str, FaultSpec] = {}
        urls: dict[str, str] = {}
        for dep in registered:
            if raw := text(dep.policy_variable):
                policies[dep.name] = _parse_spec(dep.policy, raw, dep.policy_variable)
            if raw := text(dep.faults_variable):
                faults[dep.name] = _parse_spec(FaultSpec(), raw, dep.faults_variable)
            if dep.url_variable != "OPENAI_BASE_URL" and (
                    url := _url(text(dep.url_variable), dep.url_variable)):
                urls[dep.name] = url
            elif dep.client is not None and dep.simulator is None \
                    and dep.url_variable != "OPENAI_BASE_URL":
                raise ConfigError(f"{dep.name} has no simulator: set the base URL of its "
                                  f"server", variable=dep.url_variable)
        limits = dict(defaults.limits)
        for kind in ("customer", "staff"):
            var = f"INTERLOCK_LIMITS_{kind.upper()}"
            if raw := text(var):
                limits[kind] = _parse_spec(limits[kind], raw, var)
        return cls(
            home=Path(text("INTERLOCK_HOME") or defaults.home),
            model=model,
            openai_base_url=text("OPENAI_BASE_URL"),
            openai_api_key=text("OPENAI_API_KEY"),
            dependencies=tuple(registered),
            workers=found[1], guards=found[2], drafters=found[3], extensions=extensions,
            urls=urls,
            auto_approve_cents=_number(env, "INTERLOCK_AUTO_APPROVE_CENTS",
                                       defaults.auto_approve_cents, int, minimum=0),
            auto_approve_order_cents=_number(env, "INTERLOCK_AUTO_APPROVE_ORDER_CENTS",
                                             defaults.auto_approve_order_cents, int, minimum=0),
            auto_approve_customer_cents=_number(env, "INTERLOCK_AUTO_APPROVE_CUSTOMER_CENTS",
                                                defaults.auto_approve_customer_cents, int,
                                                minimum=0),
            approval_window_s=_number(env, "INTERLOCK_APPROVAL_WINDOW_S",
                                      defaults.approval_window_s, float, minimum=0.0),
            duplicate_window_s=_number(env, "INTERLOCK_DUPLICATE_WINDOW_S",
                                       defaults.duplicate_window_s, float, minimum=0.0),
            offer_ttl_s=_number(env, "INTERLOCK_OFFER_TTL_S", defaults.offer_ttl_s, float,
                                minimum=1.0),
            max_input_messages=_number(env, "INTERLOCK_MAX_INPUT_MESSAGES",
                                       defaults.max_input_messages, int, minimum=1),
            max_input_bytes=_number(env, "INTERLOCK_MAX_INPUT_BYTES", defaults.max_input_bytes,
                                    int, minimum=1),
            max_body_bytes=_number(env, "INTERLOCK_MAX_BODY_BYTES", defaults.max_body_bytes,
                                   int, minimum=1024),
            limits=limits,
            deadline_s=_number(env, "INTERLOCK_DEADLINE_S", defaults.deadline_s, float,
                               minimum=0.1),
            max_steps=_number(env, "INTERLOCK_MAX_STEPS", defaults.max_steps, int, minimum=1),
            max_side_effects=_number(env, "INTERLOCK_MAX_SIDE_EFFECTS",
                                     defaults.max_side_effects, int, minimum=0),
            max_hops=_number(env, "INTERLOCK_MAX_HOPS", defaults.max_hops, int, minimum=1),
            sqlite_synchronous=synchronous,
            resilience_store=_store(text("INTERLOCK_RESILIENCE_STORE")),
            database_url=_database(text("INTERLOCK_DATABASE_URL")),
            policies=policies,
            faults=faults,
            fact_ttls=_ttls(defaults.fact_ttls, text("INTERLOCK_FACT_TTL")),
            crash_after=_crash(text("INTERLOCK_CRASH_AFTER")),
            api_keys_file=Path(keys) if (keys := text("INTERLOCK_API_KEYS_FILE")) else None,
        )


def _ttls(base: Mapping[str, float | None], raw: str | None) -> dict[str, float | None]:
    ttls = dict(base)
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        kind, sep, value = part.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not sep or not kind.strip() or not 0 <= seconds < math.inf:
            raise ConfigError(f"expected kind=seconds pairs, got {part!r}",
                              variable="INTERLOCK_FACT_TTL")
        ttls[kind.strip()] = seconds
    return ttls


def _crash(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    what, sep, count = value.partition("=")
    if what not in ("checkpoints", "writes") or not sep or not count.isdigit() or not int(count):
        raise ConfigError(f"expected checkpoints=N or writes=N, got {value!r}",
                          variable="INTERLOCK_CRASH_AFTER")
    return what, int(count)


def _database(value: str | None) -> str | None:
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError("expected a postgresql:// URL (unset: SQLite under INTERLOCK_HOME), "
                          f"got {value.split('@')[-1]!r}", variable="INTERLOCK_DATABASE_URL")
    return value


def _store(value: str | None) -> str:
    if value is None or value == "memory":
        return "memory"
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"expected `memory` or a redis:// URL, got {value!r}",
                          variable="INTERLOCK_RESILIENCE_STORE")
    return value


def _url(value: str | None, variable: str) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"expected an http(s) URL, got {value!r}", variable=variable)
    return value.rstrip("/")


def _number(
    env: Mapping[str, str], variable: str, default: _N, kind: type[_N], *, minimum: _N
) -> _N:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"expected a number, got {raw!r}", variable=variable) from None
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {raw!r}", variable=variable)
    if value < minimum:
        raise ConfigError(f"must be at least {minimum}, got {raw}", variable=variable)
    return value


# Policy fields that must be positive: zero would make every call fail or never reset.
_POSITIVE: dict[str, float] = {"timeout": 0.001, "attempts": 1, "fail_max": 1,
                               "success_threshold": 1, "max_concurrency": 1,
                               "retry_window": 0.001, "runs_per_minute": 0.001, "runs_burst": 1,
                               "runs_in_flight": 1, "requests_per_minute": 0.001,
                               "requests_burst": 1, "health_window": 1,
                               "degraded_window": 1}


def _parse_spec(base: _D, raw: str, variable: str) -> _D:
    """Parse `key=value,key=value` into a copy of `base` with those fields replaced."""
    known = {f.name: f for f in fields(base)}
    changes: dict[str, Any] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(f"expected key=value pairs with keys {names}; got {part!r}",
                              variable=variable)
        kind = int if known[key].type in ("int", int) else float
        try:
            number = kind(value.strip())
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}", variable=variable) from None
        low = _POSITIVE.get(key, 0)
        if (not math.isfinite(number) or number < low
                or (isinstance(base, FaultSpec) and key in ("fail", "throttle", "lose")
                    and number > 1)
                or (key in ("down_rate", "degraded_below") and number > 1)):
            raise ConfigError(f"{key}={value.strip()} is out of range"
                              + (f" (must be at least {low})" if low else ""),
                              variable=variable)
        changes[key] = number
    return replace(base, **changes)


def settings_of(settings: Settings | None, toolbox_settings: object | None = None) -> Settings:
    """The settings to build with: given, else a toolbox's, else the environment's."""
    if settings is not None:
        return settings
    if isinstance(toolbox_settings, Settings):
        return toolbox_settings
    return Settings.from_env()


def _extensions(modules: tuple[str, ...]
                ) -> tuple[tuple[Dependency, ...], tuple[WorkerSpec, ...],
                           tuple[GuardStage, ...], tuple[Drafter, ...]]:
    """The dependencies, workers, guard stages and drafters the extension modules declare."""
    import importlib

    dependencies: list[Dependency] = []
    workers: list[WorkerSpec] = []
    guards: list[GuardStage] = []
    drafters: list[Drafter] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {name!r}: {exc}",
                              variable="INTERLOCK_EXTENSIONS") from None
        except Exception as exc:  # the team's module failed as it loaded: say where
            raise ConfigError(f"importing {name!r} failed: {type(exc).__name__}: {exc}",
                              variable="INTERLOCK_EXTENSIONS") from exc
        dependencies.extend(getattr(module, "DEPENDENCIES", ()))
        workers.extend(getattr(module, "WORKERS", ()))
        guards.extend(getattr(module, "GUARDS", ()))
        drafters.extend(getattr(module, "DRAFTERS", ()))
        if not any(hasattr(module, a) for a in ("DEPENDENCIES", "WORKERS", "GUARDS",
                                                 "DRAFTERS")):
            raise ConfigError(f"{name!r} declares no DEPENDENCIES, WORKERS, GUARDS or DRAFTERS",
                              variable="INTERLOCK_EXTENSIONS")
    return tuple(dependencies), tuple(workers), tuple(guards), tuple(drafters)
