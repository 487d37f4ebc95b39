import csv
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
