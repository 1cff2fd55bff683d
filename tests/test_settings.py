"""Configuration: read from the environment in one place, documented in the README."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_variable_is_documented_in_the_readme():
    missing = [name for name in Settings.env_names() if f"`{name}`" not in README]
    assert missing == []


def test_values_come_from_the_environment_typed():
    s = Settings.from_env({"ACESTEP_CHECKPOINT_DIR": "/models", "ACESTEP_WARMUP": "false",
                           "ACESTEP_MAX_DURATION": "120", "BUCKET_URL_EXPIRY": "3600", "ACESTEP_API_PORT": "9000",
                           "BUCKET_SECRET_ACCESS_KEY": "s3cr3t-value", "UNRELATED": "x"})
    assert s.checkpoint_dir == Path("/models") and s.warmup is False and s.max_duration_s == 120.0
    assert s.bucket_url_expiry_s == 3600 and s.api_port == 9000
    assert "s3cr3t-value" not in repr(s)


def test_empty_variables_mean_the_default():
    s = Settings.from_env({"ACESTEP_DIT_MODEL": "", "BUCKET_PREFIX": "  "})
    assert s.dit_model == "acestep-v15-turbo" and s.bucket_prefix == "acestep"


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValidationError, match="BUCKET_URL_EXPIRY"):
        Settings.from_env({"BUCKET_URL_EXPIRY": "999999999"})


def test_env_bucket_needs_name_and_both_keys():
    assert not Settings.from_env({"BUCKET_NAME": "b", "BUCKET_ACCESS_KEY_ID": "k"}).env_bucket_configured
    assert Settings.from_env({"BUCKET_NAME": "b", "BUCKET_ACCESS_KEY_ID": "k",
                              "BUCKET_SECRET_ACCESS_KEY": "s"}).env_bucket_configured


def test_from_env_reads_the_process_environment_and_blank_variables_fall_back(monkeypatch):
    monkeypatch.setenv("ACESTEP_DIT_MODEL", "from-the-process")
    monkeypatch.setenv("ACESTEP_API_PORT", "9100")
    monkeypatch.setenv("BUCKET_PREFIX", " \t ")
    monkeypatch.setenv("ACESTEP_MAX_DURATION", "")
    monkeypatch.delenv("ACESTEP_WARMUP", raising=False)
    monkeypatch.setenv("acestep_warmup", "false")  # names are case-sensitive
    s = Settings.from_env()
    assert s.dit_model == "from-the-process" and s.api_port == 9100
    assert s.bucket_prefix == "acestep" and s.max_duration_s is None and s.warmup is True


def test_only_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("ACESTEP_DIT_MODEL", "from-the-process")
    monkeypatch.setenv("ACESTEP_WARMUP", "false")
    assert Settings.from_env({"ACESTEP_API_PORT": "9100"}).dit_model == "acestep-v15-turbo"  # the mapping only
    direct = Settings(ACESTEP_API_PORT=9100)  # given values, defaults for the rest
    assert direct.api_port == 9100 and direct.dit_model == "acestep-v15-turbo" and direct.warmup is True
    assert Settings(api_port=9100, UNRELATED="x").api_port == 9100  # by field name too; unknown names ignored


def test_a_fields_own_name_is_not_a_variable(monkeypatch):
    monkeypatch.setenv("warmup", "false")
    monkeypatch.setenv("api_port", "1")
    s = Settings.from_env()
    assert s.warmup is True and s.api_port == 8000
