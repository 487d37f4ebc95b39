import csv
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_rec.cli import CONFIG_DIR, RecommenderCLI, main, resolve_config_paths
from lightning_rec.models import Recommender

CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


def test_config_names_resolve_to_the_configs_folder():
    assert resolve_config_paths(["fit", "--config", "neumf.yaml"]) == [
        "fit",
        "--config",
        str(CONFIG_DIR / "neumf.yaml"),
    ]
    assert resolve_config_paths(["fit", "--config=neumf.yaml"]) == ["fit", f"--config={CONFIG_DIR / 'neumf.yaml'}"]
    assert resolve_config_paths(["fit", "-c", "missing.yaml"]) == ["fit", "-c", "missing.yaml"]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses_and_links_sizes(config):
    cli = RecommenderCLI(
        subclass_mode_model=True, subclass_mode_data=True, run=False,
        args=["--config", str(CONFIG_DIR / config), "--trainer.logger", "false"],
    )  # fmt: skip
    assert cli.model.num_items == cli.datamodule.num_items
    if isinstance(cli.model, Recommender):  # GPT4Rec has no user parameters
        assert cli.model.num_users == cli.datamodule.num_users


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_fits_and_tests_a_batch(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints, logs and predictions of the configs land here
    cli = main(["fit", "--config", config, "--trainer.fast_dev_run", "1", "--trainer.logger", "false"])
    assert cli.trainer.state.finished and cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1


def test_wrong_config_key_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", "neumf.yaml", "--model.init_args.factr", "8"])
    assert "factr" in capsys.readouterr().err


def test_fit_then_predict_writes_unseen_top_k_with_titles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "top.csv"
    overrides = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    cli = main(["fit", "--config", "neumf.yaml", *overrides])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    assert Path(checkpoint).is_file()
    writer = "lightning_rec.callbacks.TopKPredictionWriter"
    main(["predict", "--config", "neumf.yaml", "--ckpt_path", checkpoint, *overrides,
          f"--trainer.callbacks+={writer}", f"--trainer.callbacks.output_path={out}"])  # fmt: skip
    rows = list(csv.DictReader(open(out)))
    dm = cli.datamodule
    assert len(rows) == dm.num_users * 10
    assert rows[0].keys() == {"user_id", "rank", "item_id", "title", "score"}
    titles = dict(zip(dm.item_table["item_id"], dm.item_table["title"]))
    assert all(titles[r["item_id"]] == r["title"] for r in rows)
    # Nothing the user already has (train, validation or test) is recommended.
    index = {raw: i for i, raw in enumerate(dm.user_ids)}
    item_index = {raw: i for i, raw in enumerate(dm.item_table["item_id"])}
    known = set(zip(*(t.tolist() for t in dm.data.history("predict"))))
    assert not any((index[r["user_id"]], item_index[r["item_id"]]) in known for r in rows)


REPO = Path(__file__).resolve().parent.parent


def test_the_command_line_shows_our_lines_not_warnings_about_our_code(tmp_path):
    command = [sys.executable, str(REPO / "cli.py"), "fit", "--config", "gpt2.yaml", "--trainer.max_epochs", "1",
               "--trainer.logger", "false"]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "INFO lightning_rec.data.datamodule: ml-1m: 400 users, 240 items" in run.stderr
    for noise in ("args parameter is intended", "not writable", "smaller than the logging interval",
                  "has `__len__` defined", "Tip:", "litlogger", "Map:", "LeafSpec"):  # fmt: skip
        assert noise not in run.stderr


def test_a_users_own_callbacks_module_does_not_shadow_ours(tmp_path):
    (tmp_path / "callbacks.py").write_text("MY_CALLBACKS = True\n")
    (tmp_path / "data_modules").mkdir()
    (tmp_path / "data_modules" / "__init__.py").write_text("")
    script = ("from lightning_rec.callbacks import MetadataCacheCallback, TopKPredictionWriter\n"
              "from lightning_rec.data_modules import MovieLens1MDataModule\n"
              "import callbacks\nassert callbacks.MY_CALLBACKS\n")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_sizes_typed_in_the_configuration_must_match_the_data(capsys):
    line = error_line(capsys, ["fit", "--config", "neumf.yaml", "--model.init_args.num_users", "5",
                               "--trainer.fast_dev_run", "1"])  # fmt: skip
    assert line.startswith("error: model.init_args.num_users is 5 in the configuration, but the data module has")


def test_predict_without_a_checkpoint_is_an_error(capsys):
    line = error_line(capsys, ["predict", "--config", "neumf.yaml"])
    assert line.startswith("error: predict without --ckpt_path would rank items with an untrained model")


def test_a_backbone_that_cannot_load_is_one_line_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = error_line(capsys, ["fit", "--config", "enhanced.yaml", "--model.init_args.backbone", "gpt-9000",
                               "--model.init_args.pretrained", "true", "--trainer.fast_dev_run", "1"])  # fmt: skip
    assert line.startswith("error: could not load backbone 'gpt-9000': no network and not in the local cache")
    # --debug keeps the traceback: the error itself is raised.
    with pytest.raises(ValueError, match="could not load backbone 'gpt-9000'"):
        main(["fit", "--config", "enhanced.yaml", "--model.init_args.backbone", "gpt-9000", "--debug",
              "--trainer.fast_dev_run", "1"])  # fmt: skip
