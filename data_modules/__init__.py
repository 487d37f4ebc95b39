"""Lightning data modules, one file per dataset family."""

from lightning_rec.data_modules.amazon import AmazonDataModule
from lightning_rec.data_modules.custom import LogDataModule
from lightning_rec.data_modules.movielens_1m import MovieLens1MDataModule
from lightning_rec.data_modules.movielens_100k import MovieLens100KDataModule

__all__ = ["AmazonDataModule", "LogDataModule", "MovieLens100KDataModule", "MovieLens1MDataModule"]
