"""A URL's password is hidden wherever dlforge shows or writes it, and frozen configs
keep the interpolation that gives it (dlforge.core.urls, dlforge.core.secrets)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dlforge.core import secrets
from dlforge.core.config import compose
from dlforge.core.errors import DlforgeError
from dlforge.core.urls import has_password, hide_passwords, redact

PLANTED = "Pl4nted/p@ss:w%rd"  # as it reaches the database
ESCAPED = "Pl4nted%2Fp%40ss%3Aw%25rd"  # as a URL carries it


@pytest.fixture(autouse=True)
def _secret_variables(monkeypatch):
    """Restore the variables the code under test sets."""
    for key in ("hpo.storage", "tracking.tracking_uri", "callbacks.pruning.storage", "db.url"):
        monkeypatch.setenv(secrets.env_name(key), "")
        monkeypatch.delenv(secrets.env_name(key))


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pa/ss@db/optuna", "postgresql://u:***@db/optuna"),
    ("postgresql://u:p@ss@db:5432/optuna", "postgresql://u:***@db:5432/optuna"),
    ("postgresql+psycopg2://u:a:b@db/optuna", "postgresql+psycopg2://u:***@db/optuna"),
    (f"postgresql://u:{ESCAPED}@db/optuna", "postgresql://u:***@db/optuna"),
    ("postgresql://db/optuna?password=s3cret&sslmode=require",
     "postgresql://db/optuna?password=***&sslmode=require"),
    ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("http://user:s3cret@mlflow:5000", "http://user:***@mlflow:5000"),
])
def test_redact_hides_the_password_as_sqlalchemy_reads_it(url, shown):
    assert redact(url) == shown
    assert has_password(url)


@pytest.mark.parametrize("text", [
    "postgresql://user@db:5432/optuna", "http://mlflow:5000", "sqlite:///mlruns/mlflow.db",
    "/tmp/study.journal", "outputs/intent/sweep/study.journal", "not a url", "",
])
def test_redact_leaves_what_has_no_password_unchanged(text):
    assert redact(text) == text
    assert not has_password(text)


def test_a_drivers_message_loses_the_password_in_every_form():
    url = f"postgresql://u:{ESCAPED}@db/optuna"
    message = hide_passwords(f"auth failed for {PLANTED} ({ESCAPED})", url)
    assert message == "auth failed for *** (***)"


def test_a_password_on_the_command_line_moves_to_the_environment():
    url = f"postgresql://u:{ESCAPED}@db/optuna"
    given = ["experiment=intent", f"hpo.storage={url}", "hpo/sampler=random", "~hpo.space",
             "--cfg", "job", f"+db.url='{url}'"]
    moved = secrets.to_environment(given)
    assert moved == ["experiment=intent", "hpo.storage=${oc.env:DLFORGE_SECRET_HPO_STORAGE}",
                     "hpo/sampler=random", "~hpo.space", "--cfg", "job",
                     "+db.url=${oc.env:DLFORGE_SECRET_DB_URL}"]
    cfg = compose("sweep", ["experiment=intent", *moved[1:4], moved[-1]])
    assert cfg.hpo.storage == cfg.db.url == url  # resolved in this process and its children


def freeze_train(*overrides: str, resolve: bool = True) -> tuple[dict, str]:
    cfg = compose("train", ["experiment=intent", *overrides])
    frozen = secrets.freeze(cfg, resolve=resolve)
    return frozen, OmegaConf.to_yaml(OmegaConf.create(frozen))


@pytest.mark.parametrize("resolve", [True, False])
def test_a_frozen_config_holds_no_literal_password_and_still_resolves_it(resolve):
    url = f"postgresql://u:{ESCAPED}@db/optuna"
    frozen, text = freeze_train(f"hpo.storage={url}", "+callbacks.pruning.storage=${hpo.storage}",
                                resolve=resolve)
    assert PLANTED not in text and ESCAPED not in text
    assert frozen["hpo"]["storage"] == "${oc.env:DLFORGE_SECRET_HPO_STORAGE}"
    assert frozen["callbacks"]["pruning"]["storage"] == "${hpo.storage}"  # kept as given
    read = OmegaConf.create(OmegaConf.to_yaml(OmegaConf.create(frozen)))
    assert read.hpo.storage == read.callbacks.pruning.storage == url
    assert (frozen["paths"]["train_dir"] == "${paths.exp_dir}/train") is not resolve


def test_an_environment_variable_of_the_users_stays_in_the_frozen_config(monkeypatch):
    url = f"postgresql://u:{ESCAPED}@db/optuna"
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("optuna", "mlflow"))
    frozen, text = freeze_train("hpo.storage=${oc.env:OPTUNA_STORAGE}")
    assert frozen["hpo"]["storage"] == "${oc.env:OPTUNA_STORAGE}"
    assert frozen["tracking"]["tracking_uri"].startswith("${oc.env:MLFLOW_TRACKING_URI,")
    assert ESCAPED not in text and PLANTED not in text


def test_a_default_that_quotes_a_password_is_not_kept():
    url = f"postgresql://u:{ESCAPED}@db/optuna"
    frozen, text = freeze_train(f"hpo.storage='${{oc.env:NO_SUCH_VARIABLE,\"{url}\"}}'")
    assert frozen["hpo"]["storage"] == "${oc.env:DLFORGE_SECRET_HPO_STORAGE}"
    assert ESCAPED not in text


def test_params_leave_out_the_connection_keys_and_hide_other_passwords():
    flat = {"tracking.tracking_uri": "sqlite:///x.db", "hpo.storage": "/tmp/j",
            "callbacks.pruning.storage": "/tmp/j", "optimizer.lr": "0.01",
            "callbacks.upload.url": "http://u:s3cret@host/"}
    assert secrets.params(flat) == {"optimizer.lr": "0.01",
                                    "callbacks.upload.url": "http://u:***@host/"}
    assert set(secrets.CONNECTION_KEYS) <= set(flat)


def test_a_missing_variable_names_the_key_and_the_fix():
    node = OmegaConf.create({"tracking_uri": "${oc.env:DLFORGE_SECRET_TRACKING_TRACKING_URI}"})
    with pytest.raises(DlforgeError, match=r"tracking.tracking_uri cannot be resolved here .*"
                                           r"DLFORGE_SECRET_TRACKING_TRACKING_URI.*Fix: "):
        secrets.resolved(node, "tracking_uri", "tracking.tracking_uri")


def test_a_config_that_does_not_compose_hides_the_overrides_passwords():
    with pytest.raises(DlforgeError) as raised:
        compose("train", ["experiment=intent", "hpo.storag=postgresql://u:s3cret@db/optuna"])
    assert "hpo.storag" in str(raised.value) and "s3cret" not in str(raised.value)
