"""``python -m directanimator_core train``: a config file runs the trainer, --plot draws curves, and
mistakes come back as one-line errors."""

from __future__ import annotations

import json

from directanimator_core.cli import main


def test_train_cli_runs_a_config_and_plots_it(config_for, prepared_cache, tmp_path, capsys) -> None:
    config = config_for(tmp_path / "run", prepared_cache, run={"steps": 1})
    (tmp_path / "c.json").write_text(config.to_json())
    assert main(["train", str(tmp_path / "c.json"), "--no-prepare"]) == 0
    assert "done at step 1 of 1" in capsys.readouterr().out
    assert main(["train", "--plot", str(tmp_path / "run"), "--png", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_train_cli_mistakes_are_one_line_errors(tmp_path, capsys) -> None:
    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: train needs a CONFIG")
    (tmp_path / "bad.json").write_text(json.dumps({"run": {"stesp": 3}}))
    assert main(["train", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown fields ['stesp']" in err
    assert main(["train", "--plot", str(tmp_path / "nowhere")]) == 2
    assert "no loss log" in capsys.readouterr().err
