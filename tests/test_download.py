"""MovieLens-1M download, offline: a local HTTP server on 127.0.0.1 serves a zip in GroupLens' layout."""

import functools
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from lightning_rec.cli import main
from lightning_rec.data.synthetic import EMBEDDED_DIR
from lightning_rec.data_modules import MovieLens1MDataModule


@pytest.fixture
def grouplens(tmp_path):
    """The URL of ``ml-1m.zip`` (the embedded data in the real archive's layout) on a local server."""
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "ml-1m.zip", "w") as archive:
        for name in ("movies.dat", "ratings.dat", "users.dat"):
            archive.write(EMBEDDED_DIR / name, f"ml-1m/{name}")
        archive.writestr("ml-1m/README", "MovieLens 1M (test copy)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    server.shutdown()


def test_the_sizes_read_before_prepare_data_download_first(grouplens, tmp_path):
    dm = MovieLens1MDataModule(data_dir=str(tmp_path / "ml-1m"), download=True, url=grouplens)
    assert dm.num_users == 400  # the README's own script reads the sizes before any Trainer exists
    assert (tmp_path / "ml-1m" / "ratings.dat").read_bytes() == (EMBEDDED_DIR / "ratings.dat").read_bytes()


def test_the_cli_downloads_where_it_links_the_sizes(grouplens, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", "--config", "neumf.yaml", "--data.init_args.data_dir", "ml-1m", "--data.init_args.download",
                "true", "--data.init_args.url", grouplens, "--trainer.fast_dev_run", "1"])  # fmt: skip
    assert cli.model.num_users == 400 and (tmp_path / "ml-1m" / "movies.dat").is_file()


def test_a_failed_download_names_the_url(tmp_path):
    dm = MovieLens1MDataModule(data_dir=str(tmp_path / "ml-1m"), download=True, url="http://127.0.0.1:9/ml-1m.zip")
    with pytest.raises(FileNotFoundError, match=r"could not download http://127.0.0.1:9/ml-1m.zip"):
        dm.num_users  # noqa: B018
    assert not list(Path(tmp_path / "ml-1m").glob("*.zip*"))
