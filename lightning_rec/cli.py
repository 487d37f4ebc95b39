"""The lightning-rec command line: ``python cli.py fit --config neumf.yaml`` (or ``lightning-rec fit ...``).

A plain ``LightningCLI``: any model and data module by ``class_path``; the model's sizes are linked
from the data module so they are never typed twice. ``--config NAME.yaml`` also finds files in
``configs/``. After ``fit`` the best checkpoint (or the final weights) is tested.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from lightning_rec.errors import debug_requested, reported_errors

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SIZES = ("num_users", "num_items")


class RecommenderCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_users", "model.init_args.num_users", apply_on="instantiate")
        parser.link_arguments("data.num_items", "model.init_args.num_items", apply_on="instantiate")
        # Only models with an ``item_texts`` argument receive it; the others are left as they are.
        parser.link_arguments("data.item_texts", "model.init_args.item_texts", apply_on="instantiate")
        parser.link_arguments("data.item_categories", "model.init_args.item_categories", apply_on="instantiate")
        parser.link_arguments("data.item_titles", "model.init_args.item_titles", apply_on="instantiate")
        parser.link_arguments(
            "data.item_popularity", "model.init_args.item_popularity", compute_fn=lambda counts: counts.tolist(),
            apply_on="instantiate",
        )  # fmt: skip
        parser.add_argument("--predict_untrained", type=bool, default=False,
                            help="allow predict without --ckpt_path (from untrained weights)")  # fmt: skip

    def before_predict(self) -> None:
        config = self.config[self.subcommand]
        if config.get("ckpt_path") is None and not config.get("predict_untrained"):
            raise ValueError(
                "predict without --ckpt_path would rank items with an untrained model: pass --ckpt_path "
                "checkpoints/<model>/<best>.ckpt (or --predict_untrained true to do it anyway)"
            )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        init_args = config.get("model", {}).get("init_args") or {}
        self.typed_sizes = {size: init_args.get(size) for size in SIZES if init_args.get(size) is not None}

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # The link fills the sizes from the data module; a different typed value would otherwise vanish.
        for size, typed in self.typed_sizes.items():
            linked = getattr(self.datamodule, size, typed)
            if typed != linked:
                raise ValueError(
                    f"model.init_args.{size} is {typed} in the configuration, but the data module has {size}={linked}: "
                    "remove it from the configuration (sizes are linked from the data module)"
                )

    def _parse_ckpt_path(self) -> None:
        # The config defines the model (with sizes and item data linked from the data module); the
        # checkpoint only brings weights. Lightning's merge of checkpoint hparams into the config
        # cannot handle linked arguments, so it is skipped (a size mismatch still fails on load).
        return

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def resolve_config_paths(argv: list[str]) -> list[str]:
    """Maps ``--config X.yaml`` to ``configs/X.yaml`` when ``X.yaml`` is not an existing path."""
    resolved = list(argv)
    for i, arg in enumerate(resolved):
        flag, eq, value = arg.partition("=")
        if flag in ("--config", "-c") and not eq and i + 1 < len(resolved):
            i, value = i + 1, resolved[i + 1]
        elif not (flag == "--config" and eq):
            continue
        if not Path(value).exists() and (CONFIG_DIR / value).exists():
            resolved[i] = str(CONFIG_DIR / value) if not eq else f"--config={CONFIG_DIR / value}"
    return resolved


class DropTips(logging.Filter):
    """Drops Lightning's advertising tips (cloud loggers, model registries) from the first screen."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith("💡")


def show_library_logs(level: int = logging.INFO) -> None:
    """Our INFO lines (dropped counts, cache paths, splits) reach the terminal, like Lightning's own;
    Lightning's tips do not."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(DropTips())
    # Lightning's own use of a deprecated torch API, nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logger = logging.getLogger("lightning_rec")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def main(args: list[str] | None = None) -> RecommenderCLI:
    """Runs the CLI; our input errors end as one line, ``error: <message>`` (``--debug`` keeps the traceback)."""
    show_library_logs()
    if args is None:
        # Rewritten in place rather than passed as ``args``, which LightningCLI reserves for calls from Python.
        sys.argv[1:], debug = debug_requested(resolve_config_paths(sys.argv[1:]))
    else:
        args, debug = debug_requested(resolve_config_paths(args))
    with reported_errors(debug):
        # load_from_checkpoint_support=False: checkpoints keep what each model's __init__ received, not the
        # linked data (item titles, popularity, ...) that models without those arguments never took.
        # deterministic: with two threads some CPU kernels sum in a varying order, and the same command gave
        # test HR@10 0.5575 or 0.565 from run to run; with deterministic kernels it gives 0.560 every time.
        return RecommenderCLI(
            subclass_mode_model=True, subclass_mode_data=True, save_config_kwargs={"overwrite": True}, args=args,
            load_from_checkpoint_support=False, trainer_defaults={"deterministic": True},
        )  # fmt: skip


if __name__ == "__main__":
    main()
