from pathlib import Path

import pytest

from graphs.core.errors import ConfigError
from graphs.settings import FaultSpec, Settings


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert s.home == Path(".interlock")
    assert s.model == "rules"
    assert s.carrier_url is None and s.payments_url is None
    assert s.auto_approve_cents == 5000
    assert s.deadline_s == 30.0
    assert s.store_path == Path(".interlock/store.db")


def test_reads_every_contract_variable() -> None:
    s = Settings.from_env({
        "INTERLOCK_HOME": "/tmp/x", "INTERLOCK_MODEL": "openai:gpt-4o-mini",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k",
        "INTERLOCK_CARRIER_URL": "http://127.0.0.1:8001/", "INTERLOCK_PAYMENTS_URL":
        "https://pay.example", "INTERLOCK_AUTO_APPROVE_CENTS": "100",
        "INTERLOCK_DEADLINE_S": "2.5"})
    assert s.home == Path("/tmp/x")
    assert s.model == "openai:gpt-4o-mini"
    assert s.openai_base_url == "http://127.0.0.1:9/v1"
    assert s.carrier_url == "http://127.0.0.1:8001"
    assert s.payments_url == "https://pay.example"
    assert (s.auto_approve_cents, s.deadline_s) == (100, 2.5)


def test_faults_and_dependency_policies_parse() -> None:
    s = Settings.from_env({"INTERLOCK_FAULTS_CARRIER": "fail=1.0,latency=0.5",
                           "INTERLOCK_DEP_PAYMENTS": "timeout=1.5,attempts=5,fail_max=2"})
    assert s.fault("carrier") == FaultSpec(fail=1.0, latency=0.5)
    assert not s.fault("payments").active
    assert s.policy("payments").timeout == 1.5
    assert s.policy("payments").attempts == 5
    assert s.policy("payments").fail_max == 2
    assert s.policy("carrier").timeout == 2.0


@pytest.mark.parametrize(("variable", "value"), [
    ("INTERLOCK_MODEL", "gpt-4"),
    ("INTERLOCK_MODEL", "openai:"),
    ("INTERLOCK_AUTO_APPROVE_CENTS", "ten"),
    ("INTERLOCK_AUTO_APPROVE_CENTS", "-1"),
    ("INTERLOCK_DEADLINE_S", "0"),
    ("INTERLOCK_CARRIER_URL", "ftp://x"),
    ("INTERLOCK_FAULTS_CARRIER", "fail=2"),
    ("INTERLOCK_FAULTS_CARRIER", "explode=1"),
    ("INTERLOCK_DEP_MODEL", "timeout=fast"),
    ("INTERLOCK_SQLITE_SYNCHRONOUS", "OFF"),
    ("INTERLOCK_DEADLINE_S", "nan"),
    ("INTERLOCK_DEADLINE_S", "inf"),
    ("INTERLOCK_DEP_CARRIER", "timeout=0"),
    ("INTERLOCK_DEP_CARRIER", "timeout=nan"),
    ("INTERLOCK_DEP_PAYMENTS", "attempts=0"),
    ("INTERLOCK_DEP_PAYMENTS", "max_concurrency=0"),
    ("INTERLOCK_DEP_MODEL", "fail_max=0"),
    ("INTERLOCK_FAULTS_CARRIER", "latency=inf"),
    ("INTERLOCK_FACT_TTL", "shipment=inf"),
    ("INTERLOCK_LIMITS_CUSTOMER", "runs_in_flight=0"),
    ("INTERLOCK_LIMITS_STAFF", "bursts=3"),
    ("INTERLOCK_MAX_BODY_BYTES", "100"),
    ("INTERLOCK_MAX_INPUT_MESSAGES", "0"),
    ("INTERLOCK_APPROVAL_WINDOW_S", "-1"),
    ("INTERLOCK_AUTO_APPROVE_ORDER_CENTS", "lots"),
    ("INTERLOCK_EXTENSIONS", "no_such_module_here"),
    ("INTERLOCK_EXTENSIONS", "json"),  # declares nothing
    ("INTERLOCK_EXTENSIONS", "tests.extension.broken"),  # raises as it loads
])
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)
